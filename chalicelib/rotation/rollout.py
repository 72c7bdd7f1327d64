"""Which version a requester is served while a rollout is in progress.

A requester's bucket is ``SHA-256(secret id, principal) mod 100``: the same caller always
lands in the same bucket, so each caller sees one version consistently while the share of
callers served the new version grows. A requester is served the new version when its bucket
is below the rollout's percentage.

The META item's ``rollout`` block is::

    {"old_version": 2, "new_version": 3, "percent": 5, "strategy": "canary",
     "started_at": "2026-01-15T10:30:00.000000Z", "duration_hours": 4.0}

For ``rolling`` the percentage is also computed from the clock (linear over ``duration_hours``),
so it grows smoothly between scheduler runs; the stored ``percent`` is a floor.

Example::

    version = choose_version(record, "payment-service")
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.vault.records import SecretRecord

ROLLING = "rolling"


def bucket(secret_id: str, principal_id: str) -> int:
    digest = hashlib.sha256(f"{secret_id}\x00{principal_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def linear_percent(started: datetime, now: datetime, hours: float) -> int:
    """0 at ``started``, 100 after ``hours``, linear in between (rounded down)."""
    if hours <= 0:
        return 100
    share = (now - started) / timedelta(hours=hours)
    return max(0, min(100, int(share * 100)))


def effective_percent(rollout: dict[str, Any], now: datetime | None = None) -> int:
    """The share served the new version at ``now``."""
    percent = int(rollout.get("percent", 0))
    if rollout.get("strategy") == ROLLING and rollout.get("started_at") and rollout.get("duration_hours"):
        started = datetime.fromisoformat(str(rollout["started_at"]))
        moment = now or datetime.now(UTC)
        percent = max(percent, linear_percent(started, moment, float(rollout["duration_hours"])))
    return percent


def choose_version(record: SecretRecord, principal_id: str, *, now: datetime | None = None) -> int:
    """The version to serve ``principal_id`` when no version or stage was asked for."""
    rollout = record.rollout
    if not rollout:
        return record.current_version
    if bucket(record.secret_id, principal_id) < effective_percent(rollout, now):
        return int(rollout["new_version"])
    return int(rollout.get("old_version", record.current_version))
