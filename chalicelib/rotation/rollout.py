"""Which version a requester is served while a rollout is in progress.

A requester's bucket is ``SHA-256(secret id, principal) mod 100``: the same caller always
lands in the same bucket, so each caller sees one version consistently while the share of
callers served the new version grows.

Example::

    version = choose_version(record, "payment-service")
"""

from __future__ import annotations

import hashlib

from chalicelib.vault.records import SecretRecord


def bucket(secret_id: str, principal_id: str) -> int:
    digest = hashlib.sha256(f"{secret_id}\x00{principal_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def choose_version(record: SecretRecord, principal_id: str) -> int:
    """The version to serve ``principal_id`` when no version or stage was asked for."""
    rollout = record.rollout
    if not rollout:
        return record.current_version
    percent = int(rollout.get("percent", 0))
    if bucket(record.secret_id, principal_id) < percent:
        return int(rollout["new_version"])
    return int(rollout.get("old_version", record.current_version))
