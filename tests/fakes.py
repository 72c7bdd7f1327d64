"""Fakes of v-secure's own ports, for fast unit tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib.audit.events import GENESIS_HASH, AuditDraft, AuditEvent
from chalicelib.audit.stream import TransactionCancelled
from chalicelib.errors import DecryptionFailed
from chalicelib.ports import DataKey
from chalicelib.vault.records import SecretRecord, VersionRecord
from chalicelib.vault.storage import StaleRecord


class FakeKeyProvider:
    """A local master key with the same contract as KMS: context-bound wrapping, counted calls."""

    name = "fake"

    def __init__(self, key_name: str = "k1") -> None:
        self._master = hashlib.sha256(key_name.encode()).digest()
        self.kid = f"fake:{key_name}"
        self.generated = 0
        self.decrypted = 0

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        self.generated += 1
        plaintext = os.urandom(32)
        nonce = os.urandom(12)
        wrapped = nonce + AESGCM(self._master).encrypt(nonce, plaintext, _aad(context))
        return DataKey(plaintext, wrapped, self.kid)

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        self.decrypted += 1
        if kid != self.kid:
            raise DecryptionFailed("unknown key")
        try:
            return AESGCM(self._master).decrypt(wrapped[:12], wrapped[12:], _aad(context))
        except InvalidTag:
            raise DecryptionFailed("wrapped data key failed authentication") from None

    def check_health(self) -> None:
        return None


def _aad(context: Mapping[str, str]) -> bytes:
    return "&".join(f"{k}={v}" for k, v in sorted(context.items())).encode()


class FakeRepository:
    """In-memory SecretRepository with the same conditional-write semantics as the DynamoDB one."""

    def __init__(self) -> None:
        self.records: dict[str, SecretRecord] = {}
        self.versions: dict[tuple[str, int], VersionRecord] = {}
        self.events: list[AuditEvent] = []
        self.fail_audit = False
        self.counters: dict[str, int] = {}

    def get(self, secret_id: str, *, consistent: bool = True) -> SecretRecord | None:
        return self.records.get(secret_id)

    def get_version(self, secret_id: str, version: int) -> VersionRecord | None:
        return self.versions.get((secret_id, version))

    def list_versions(self, secret_id: str) -> list[VersionRecord]:
        return sorted((v for (s, _), v in self.versions.items() if s == secret_id), key=lambda v: v.version)

    def list_secrets(self, *, prefix: str | None, limit: int,
                     next_token: str | None) -> tuple[list[SecretRecord], str | None]:
        ids = sorted(i for i in self.records if not prefix or i.startswith(prefix))
        start = ids.index(next_token) + 1 if next_token else 0
        page = ids[start:start + limit]
        more = start + limit < len(ids)
        return [self.records[i] for i in page], (page[-1] if more and page else None)

    def scheduled(self, kind: str, until: str, limit: int = 100) -> list[SecretRecord]:
        return [r for r in self.records.values() if r.sched_pk == kind and (r.sched_at or "") <= until][:limit]

    def commit(self, draft: AuditDraft, *, record: SecretRecord, expected_rev: int | None,
               new_version: VersionRecord | None = None, destroy_versions: tuple[int, ...] = (),
               extra_items: tuple[dict[str, Any], ...] = ()) -> AuditEvent:
        current = self.records.get(record.secret_id)
        if (expected_rev is None and current is not None) or (
                expected_rev is not None and (current is None or current.rev != expected_rev)):
            raise StaleRecord(record.secret_id)
        if new_version is not None and (record.secret_id, new_version.version) in self.versions:
            raise StaleRecord(record.secret_id)
        event = self._event(draft)
        self.records[record.secret_id] = record
        if new_version is not None:
            self.versions[(record.secret_id, new_version.version)] = new_version
        for version in destroy_versions:
            self._destroy(record.secret_id, version)
        return event

    def record_event(self, draft: AuditDraft, extra_items: tuple[dict[str, Any], ...] = ()) -> AuditEvent:
        for item in extra_items:
            self._count(item)
        return self._event(draft)

    def destroy_versions(self, secret_id: str, versions: list[int], when: Any) -> None:
        for version in versions:
            self._destroy(secret_id, version)

    def _destroy(self, secret_id: str, version: int) -> None:
        found = self.versions.get((secret_id, version))
        if found is not None:
            self.versions[(secret_id, version)] = found.model_copy(update={"envelope": None})

    def _count(self, item: dict[str, Any]) -> None:
        update = item["Update"]
        key = update["Key"]["pk"]["S"] + update["Key"]["sk"]["S"]
        limit = int(update["ExpressionAttributeValues"][":limit"]["N"])
        if self.counters.get(key, 0) >= limit:
            raise TransactionCancelled(["ConditionalCheckFailed"])
        self.counters[key] = self.counters.get(key, 0) + 1

    def _event(self, draft: AuditDraft) -> AuditEvent:
        if self.fail_audit:
            from chalicelib.errors import AuditUnavailable

            raise AuditUnavailable()
        prev = self.events[-1].hash if self.events else GENESIS_HASH
        event = AuditEvent(**draft.model_dump(), event_id=f"evt_{len(self.events) + 1}",
                           timestamp="2026-01-15T10:30:00.000000Z", stream_id="fake", seq=len(self.events) + 1,
                           prev_hash=prev)
        event = event.model_copy(update={"hash": event.computed_hash()})
        self.events.append(event)
        return event


