"""Secret use cases: store, retrieve, describe, versions, rollback, delete, restore, list.

Each use case authorizes the caller (RBAC, then constraints), does its work through the
repository, and records exactly one audit event — in the same transaction as the change,
or, for a denied request, on its own before the error is raised.

Example::

    service = get_vault_service()
    answer = service.store(caller, StoreSecretRequest(secret_id="db", value="s3cr3t", type="api_key"))
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from chalicelib.access_control.context import Caller, system_draft
from chalicelib.access_control.gate import require_authenticated
from chalicelib.access_control.policies import constraint_refusal, enforce, retry_after, validate_constraints
from chalicelib.access_control.rbac import PrefixPolicy, decide
from chalicelib.audit.events import Action, AuditEvent, Status
from chalicelib.audit.request_audit import note_authorized
from chalicelib.audit.stream import TransactionCancelled
from chalicelib.clock import Clock, SystemClock
from chalicelib.config import Settings, get_settings
from chalicelib.errors import (
    AccessDenied,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    RotationInProgress,
    SecretDeleted,
    SecretNotFound,
    VersionConflict,
    VersionNotFound,
)
from chalicelib.models import (
    Constraints,
    DeleteSecretResponse,
    DeletionState,
    ListSecretsResponse,
    Permission,
    RestoreSecretResponse,
    RetrieveSecretResponse,
    RollbackRequest,
    RollbackResponse,
    SecretMetadata,
    SecretSummary,
    SecretType,
    StoreSecretRequest,
    StoreSecretResponse,
    VersionInfo,
    VersionsResponse,
    valid_secret_id,
)
from chalicelib.ports import KeyProvider
from chalicelib.secret_types import validate_value
from chalicelib.singleton import ProcessSingleton
from chalicelib.vault.encryption import EnvelopeContext, seal
from chalicelib.vault.records import CURRENT, PREVIOUS, SecretRecord, VersionRecord, version_status
from chalicelib.vault.retrieval import decrypt_value
from chalicelib.vault.storage import DynamoSecretRepository, StaleRecord

MAX_WRITE_ATTEMPTS = 8
PURGE = "PURGE"
_META_CACHE_TTL = 30.0


class _RecordCache:
    """Recently seen META records, so a warm store skips its read.

    Safe because every write is conditioned on the record's revision: a stale entry makes the
    write fail (and the record is read again), it can never let a write through.
    """

    def __init__(self, max_entries: int = 1000) -> None:
        self._entries: OrderedDict[str, tuple[float, SecretRecord]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, secret_id: str) -> SecretRecord | None:
        with self._lock:
            found = self._entries.get(secret_id)
            if found is None or time.monotonic() - found[0] > _META_CACHE_TTL:
                return None
            return found[1]

    def put(self, record: SecretRecord) -> None:
        with self._lock:
            self._entries[record.secret_id] = (time.monotonic(), record)
            self._entries.move_to_end(record.secret_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def forget(self, secret_id: str) -> None:
        with self._lock:
            self._entries.pop(secret_id, None)


class VaultService:
    def __init__(self, repo: DynamoSecretRepository, keys: KeyProvider, *, settings: Settings | None = None,
                 clock: Clock | None = None,
                 policies: Callable[[], Iterable[PrefixPolicy]] = lambda: (),
                 field_hasher: Callable[[Mapping[str, str]], dict[str, str]] | None = None) -> None:
        self.repo = repo
        self.keys = keys
        self.settings = settings or get_settings()
        self.clock = clock or SystemClock()
        self._policies = policies
        self._hash_fields = field_hasher
        self._records = _RecordCache()

    # --- store -------------------------------------------------------------------------

    def store(self, caller: Caller, request: StoreSecretRequest) -> StoreSecretResponse:
        secret_id = _checked_id(request.secret_id)
        value = request.value.get_secret_value()
        if len(value.encode()) > self.settings.max_value_bytes:
            raise PayloadTooLarge(f"secret values are limited to {self.settings.max_value_bytes} bytes")
        validate_constraints(request.constraints.model_dump(exclude_none=True) if request.constraints else None)
        record = self._cached_for_write(caller, secret_id) or self.repo.get(secret_id)
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            try:
                return self._store_once(caller, request, record, value)
            except StaleRecord:
                self._records.forget(secret_id)
                record = self.repo.get(secret_id)
        raise VersionConflict(f"'{secret_id}' is being written by others; try again")

    def _metadata_details(self, metadata: Mapping[str, str]) -> dict[str, Any]:
        """Metadata may hold sensitive strings: the audit event gets their HMACs, as Vault's audit devices do."""
        if self._hash_fields is None:
            return {"metadata_keys": sorted(metadata)}
        return {"metadata": self._hash_fields(metadata)}

    def _cached_for_write(self, caller: Caller, secret_id: str) -> SecretRecord | None:
        """The cached record, but only when it already lets ``caller`` write.

        A cached record that allows the write is safe (the write is conditioned on its revision);
        one that denies it may predate a grant, so the caller gets a fresh read instead.
        """
        cached = self._records.get(secret_id)
        if cached is None or cached.destroyed:
            return None
        allowed = decide(caller.subject, Permission.WRITE, secret_id, cached.access, cached.deny,
                         self._policies()).allowed
        return cached if allowed else None

    def _store_once(self, caller: Caller, request: StoreSecretRequest, record: SecretRecord | None,
                    value: str) -> StoreSecretResponse:
        secret_id = request.secret_id
        live = record if record is not None and not record.destroyed else None
        self._authorize(caller, Action.SECRET_STORE, Permission.WRITE, secret_id, live)
        if live is not None and live.deleted:
            raise SecretDeleted(f"'{secret_id}' is scheduled for deletion; restore it first")
        if live is not None and (live.rotation_run or {}).get("phase") == "rotating":
            raise RotationInProgress(f"'{secret_id}' is being rotated; roll the rotation back or wait for it",
                                     details={"rotationId": (live.rotation_run or {}).get("id")})
        self._check_expected(request.expected_version, live)
        secret_type = self._resolve_type(request.type, live)
        value_schema = request.value_schema or (live.value_schema if live else None)
        facts = validate_value(secret_type, value, value_schema=value_schema)
        now = self.clock.now()
        version = (record.latest_version if record else 0) + 1
        envelope = seal(value.encode(), EnvelopeContext(secret_id=secret_id, version=version, type=secret_type),
                        self.keys)
        new_record = self._next_record(caller, request, record, live, secret_type, version, envelope, now)
        new_version = VersionRecord(secret_id=secret_id, version=version, created_at=now,
                                    created_by=caller.principal_id, envelope=envelope,
                                    facts=facts.as_facts())
        draft = caller.draft(Action.SECRET_STORE, secret_id=secret_id, version=version,
                             reason=request.reason, compliance_standards=new_record.compliance,
                             details={"type": secret_type, **self._metadata_details(request.metadata),
                                      "tags": request.tags})
        self.repo.commit(draft, record=new_record, expected_rev=record.rev if record else None,
                         new_version=new_version, destroy_versions=self.expired_versions(new_record))
        self._records.put(new_record)
        return StoreSecretResponse(secret_id=secret_id, version=version, created_at=now)

    def _next_record(self, caller: Caller, request: StoreSecretRequest, record: SecretRecord | None,
                     live: SecretRecord | None, secret_type: str, version: int, envelope: Any,
                     now: datetime) -> SecretRecord:
        labels = dict(live.labels) if live else {}
        if CURRENT in labels:
            labels[PREVIOUS] = labels[CURRENT]
        labels[CURRENT] = version
        base: dict[str, Any] = live.model_dump() if live else {
            "secret_id": request.secret_id, "created_at": now, "created_by": caller.principal_id,
            "access": {caller.principal_id: [Permission.ADMIN.value]},
        }
        base.update(
            type=secret_type, current_version=version, latest_version=version, labels=labels,
            updated_at=now, current=envelope, rev=(record.rev if record else 0) + 1, destroyed_at=None,
            deletion=None, staged={},
        )
        self._apply_request_fields(base, request)
        return SecretRecord.model_validate(base)

    @staticmethod
    def _apply_request_fields(base: dict[str, Any], request: StoreSecretRequest) -> None:
        if request.metadata:
            base["metadata"] = request.metadata
        if request.tags:
            base["tags"] = request.tags
        if request.description is not None:
            base["description"] = request.description
        if request.access is not None:
            base["access"] = {k: [p.value for p in v] for k, v in request.access.items()}
        if request.constraints is not None:
            base["constraints"] = request.constraints.model_dump(exclude_none=True)
        if request.compliance is not None:
            base["compliance"] = request.compliance
        if request.value_schema is not None:
            base["value_schema"] = request.value_schema
        if request.expires_at is not None:
            base["expires_at"] = request.expires_at

    def _resolve_type(self, requested: SecretType | None, live: SecretRecord | None) -> str:
        if live is None:
            if requested is None:
                raise InvalidRequest("type is required when creating a secret "
                                     f"({', '.join(t.value for t in SecretType)})")
            return requested.value
        if requested is not None and requested.value != live.type:
            raise InvalidRequest(f"'{live.secret_id}' is a {live.type}; its type cannot change to {requested.value}")
        return live.type

    @staticmethod
    def _check_expected(expected: int | None, live: SecretRecord | None) -> None:
        if expected is None:
            return
        current = live.latest_version if live else 0
        if expected != current:
            raise VersionConflict(f"expected version {expected} but the latest version is {current}",
                                  details={"expectedVersion": expected, "latestVersion": current})

    def expired_versions(self, record: SecretRecord) -> tuple[int, ...]:
        """The version that falls out of ``V_SECURE_MAX_VERSIONS`` with ``record``'s newest (unless labelled)."""
        oldest_kept = record.latest_version - self.settings.max_versions
        if oldest_kept < 1 or record.labels_of(oldest_kept):
            return ()
        return (oldest_kept,)

    # --- retrieve ----------------------------------------------------------------------

    def retrieve(self, caller: Caller, secret_id: str, *, version: int | None = None, stage: str | None = None,
                 reason: str | None = None) -> RetrieveSecretResponse:
        record = self._readable(caller, Action.SECRET_READ, Permission.READ, secret_id, count_rate=True)
        served, envelope = self._select(caller, record.record, version, stage)
        value = decrypt_value(envelope, secret_id, served, record.record.type, self.keys)
        draft = caller.draft(Action.SECRET_READ, secret_id=secret_id, version=served, reason=reason,
                             compliance_standards=record.record.compliance)
        event = self._record_read(caller, draft, record.rate_items, record.record)
        return RetrieveSecretResponse(
            secret_id=secret_id, value=value, version=served, type=SecretType(record.record.type),
            labels=record.record.labels_of(served), rotated_at=record.record.rotated_at or record.record.updated_at,
            expires_at=record.record.expires_at or _rotation_due(record.record), audit=event.event_id,
        )

    def _select(self, caller: Caller, record: SecretRecord, version: int | None,
                stage: str | None) -> tuple[int, Any]:
        if version is not None and stage is not None:
            raise InvalidRequest("give either version or stage, not both")
        if stage is not None:
            if stage not in record.labels:
                raise VersionNotFound(f"'{record.secret_id}' has no version labelled {stage}")
            version = record.labels[stage]
        if version is None:
            from chalicelib.rotation.rollout import choose_version

            version = choose_version(record, caller.principal_id)
        if version == record.current_version and record.current is not None:
            return version, record.current
        for envelope in record.staged.values():
            if envelope.ctx.version == version:
                return version, envelope
        stored = self.repo.get_version(record.secret_id, version)
        if stored is None:
            raise VersionNotFound(f"'{record.secret_id}' has no version {version}")
        return version, stored.envelope

    def _record_read(self, caller: Caller, draft: Any, rate_items: list[dict[str, Any]],
                     record: SecretRecord) -> AuditEvent:
        try:
            return self.repo.record_event(draft, tuple(rate_items))
        except TransactionCancelled as cancelled:
            refused = constraint_refusal(caller, rate_items, cancelled.reasons)
            if refused is not None:  # the MFA code was replayed (maybe in another process)
                self._audit_denied(caller, Action.MFA_FAILED, record.secret_id, refused.reason, record.compliance)
                raise refused from None
            limit = (record.constraints or {}).get("rate_limit") or self.settings.rate_limit or "1/s"
            self._audit_denied(caller, Action.RATE_LIMITED, record.secret_id, "rate_limited",
                               record.compliance)
            raise RateLimited(f"rate limit {limit} exceeded for this secret",
                              headers={"Retry-After": str(retry_after(limit))}) from None

    # --- describe, versions, list ------------------------------------------------------

    def describe(self, caller: Caller, secret_id: str) -> SecretMetadata:
        record = self._readable(caller, Action.SECRET_DESCRIBE, Permission.READ, secret_id,
                                allow_deleted=True).record
        self.repo.record_event(caller.draft(Action.SECRET_DESCRIBE, secret_id=secret_id,
                                            compliance_standards=record.compliance))
        return to_metadata(record)

    def versions(self, caller: Caller, secret_id: str) -> VersionsResponse:
        record = self._readable(caller, Action.SECRET_VERSIONS, Permission.READ, secret_id,
                                allow_deleted=True).record
        versions = self.repo.list_versions(secret_id)
        self.repo.record_event(caller.draft(Action.SECRET_VERSIONS, secret_id=secret_id,
                                            compliance_standards=record.compliance))
        return VersionsResponse(secret_id=secret_id, versions=[
            VersionInfo(version=v.version, status=version_status(record, v), labels=record.labels_of(v.version),
                        created_at=v.created_at, created_by=v.created_by, source=v.source)
            for v in versions])

    def list_secrets(self, caller: Caller, *, secret_type: str | None = None, tag: str | None = None,
             prefix: str | None = None, limit: int = 50, next_token: str | None = None,
             include_deleted: bool = False) -> ListSecretsResponse:
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100")
        require_authenticated(caller, Action.SECRET_LIST, audit=self.repo.record_event,
                              details={"prefix": prefix, "type": secret_type, "tag": tag})
        records, token = self.repo.list_secrets(prefix=prefix, limit=limit, next_token=next_token)
        visible = [r for r in records if self._lists(caller, r, secret_type, tag, include_deleted)]
        self.repo.record_event(caller.draft(Action.SECRET_LIST, details={
            "prefix": prefix, "type": secret_type, "tag": tag, "count": len(visible)}))
        return ListSecretsResponse(next_token=token, secrets=[
            SecretSummary(secret_id=r.secret_id, type=SecretType(r.type), current_version=r.current_version,
                          tags=r.tags, updated_at=r.updated_at, deleted=r.deleted) for r in visible])

    def _lists(self, caller: Caller, record: SecretRecord, secret_type: str | None, tag: str | None,
               include_deleted: bool) -> bool:
        if record.destroyed or (record.deleted and not include_deleted):
            return False
        if (secret_type and record.type != secret_type) or (tag and tag not in record.tags):
            return False
        return any(decide(caller.subject, p, record.secret_id, record.access, record.deny, self._policies()).allowed
                   for p in (Permission.READ, Permission.WRITE, Permission.ADMIN))

    # --- rollback, delete, restore -----------------------------------------------------

    def rollback(self, caller: Caller, secret_id: str, request: RollbackRequest) -> RollbackResponse:
        found = self.repo.get(secret_id) if valid_secret_id(secret_id) else None
        if found is not None and (found.rotation_run or {}).get("phase") in ("rotating", "retiring"):
            from chalicelib.rotation.service import get_rotation_service  # the rotation is undone with it

            return get_rotation_service().rollback_to_version(caller, secret_id, request)

        def change(record: SecretRecord) -> tuple[SecretRecord, Any]:
            if record.deleted:
                raise SecretDeleted(f"'{secret_id}' is scheduled for deletion; restore it first")
            target = self.repo.get_version(secret_id, request.version)
            if target is None or target.envelope is None:
                raise VersionNotFound(f"'{secret_id}' has no readable version {request.version}")
            labels = {k: v for k, v in record.labels.items() if k not in (CURRENT, PREVIOUS)}
            labels.update({CURRENT: request.version, PREVIOUS: record.current_version})
            updated = record.model_copy(update={
                "labels": labels, "current_version": request.version, "current": target.envelope,
                "rollout": None, "staged": {}, "updated_at": self.clock.now(), "rev": record.rev + 1})
            return updated, caller.draft(Action.SECRET_ROLLBACK, secret_id=secret_id, version=request.version,
                                         reason=request.reason, compliance_standards=record.compliance,
                                         details={"from_version": record.current_version})

        before, _after = self._change(caller, Action.SECRET_ROLLBACK, Permission.WRITE, secret_id, change)
        return RollbackResponse(secret_id=secret_id, version=request.version,
                                previous_version=before.current_version)

    def delete(self, caller: Caller, secret_id: str, *, recovery_window_days: int | None = None,
               force: bool = False) -> DeleteSecretResponse:
        if force and recovery_window_days is not None:
            raise InvalidRequest("give either a recovery window or force, not both")
        days = 30 if recovery_window_days is None else recovery_window_days
        if not force and not 7 <= days <= 30:
            raise InvalidRequest("the recovery window must be 7 to 30 days (or force a destroy)")
        now = self.clock.now()

        def change(record: SecretRecord) -> tuple[SecretRecord, Any]:
            if record.deleted and not force:
                raise SecretDeleted(f"'{secret_id}' is already scheduled for deletion")
            destroy_after = now if force else now + timedelta(days=days)
            deletion = DeletionState(deleted_at=now, destroy_after=destroy_after, deleted_by=caller.principal_id)
            update: dict[str, Any] = {"deletion": deletion.model_dump(), "updated_at": now, "rev": record.rev + 1,
                                      "sched_pk": PURGE, "sched_at": destroy_after.isoformat()}
            if force:
                update.update(destroyed_at=now, current=None, staged={}, sched_pk=None, sched_at=None)
            action = Action.SECRET_DESTROY if force else Action.SECRET_DELETE
            return record.model_copy(update=update), caller.draft(
                action, secret_id=secret_id, compliance_standards=record.compliance,
                details={"recovery_window_days": 0 if force else days})

        _before, after = self._change(caller, Action.SECRET_DELETE, Permission.DELETE, secret_id, change,
                                      allow_deleted=force)
        if force:
            self.repo.destroy_versions(secret_id, list(range(1, after.latest_version + 1)), now)
        return DeleteSecretResponse(secret_id=secret_id, destroyed=force, deleted_at=now,
                                    destroy_after=None if force else now + timedelta(days=days))

    def restore(self, caller: Caller, secret_id: str) -> RestoreSecretResponse:
        def change(record: SecretRecord) -> tuple[SecretRecord, Any]:
            if not record.deleted:
                raise InvalidRequest(f"'{secret_id}' is not scheduled for deletion")
            from chalicelib.rotation.config import schedule_fields  # a deleted secret's rotation was paused

            now = self.clock.now()
            schedule = schedule_fields(record.rotation, base=record.rotated_at or record.created_at, now=now,
                                       expires_at=record.expires_at)
            updated = record.model_copy(update={"deletion": None, **schedule, "updated_at": now,
                                                "rev": record.rev + 1})
            return updated, caller.draft(Action.SECRET_RESTORE, secret_id=secret_id,
                                         compliance_standards=record.compliance)

        _before, after = self._change(caller, Action.SECRET_RESTORE, Permission.DELETE, secret_id, change,
                                      allow_deleted=True)
        return RestoreSecretResponse(secret_id=secret_id, version=after.current_version)

    def purge_due(self, limit: int = 100) -> list[str]:
        """Destroy secrets whose recovery window has passed (scheduled job). Returns their ids."""
        now = self.clock.now()
        purged = []
        for record in self.repo.scheduled(PURGE, now.isoformat(), limit):
            if not record.deleted or record.destroyed:
                continue
            updated = record.model_copy(update={"destroyed_at": now, "current": None, "staged": {},
                                                "sched_pk": None, "sched_at": None, "rev": record.rev + 1})
            try:
                self.repo.commit(system_draft(Action.SECRET_DESTROY, secret_id=record.secret_id,
                                              compliance_standards=record.compliance),
                                 record=updated, expected_rev=record.rev)
            except StaleRecord:
                continue
            self.repo.destroy_versions(record.secret_id, list(range(1, record.latest_version + 1)), now)
            purged.append(record.secret_id)
        return purged

    # --- for use cases outside this module (access control, rotation) ------------------

    def read_for_system(self, secret_id: str, *, reason: str) -> str:
        """The CURRENT value of ``secret_id`` for work v-secure does itself (a rotator reading a master
        credential); audited as a read by the system, refused (fail closed) if the audit write fails."""
        record = self.repo.get(_checked_id(secret_id))
        if record is None or record.destroyed or record.deleted:
            raise SecretNotFound(f"secret '{secret_id}' not found")
        value = decrypt_value(record.current, secret_id, record.current_version, record.type, self.keys)
        self.repo.record_event(system_draft(Action.SECRET_READ, secret_id=secret_id, version=record.current_version,
                                            reason=reason, compliance_standards=record.compliance))
        return value

    def authorized(self, caller: Caller, action: Action, permission: Permission, secret_id: str) -> SecretRecord:
        """The secret, once ``caller`` passed RBAC and constraints for ``permission`` (denials audited)."""
        return self._readable(caller, action, permission, secret_id, allow_deleted=True).record

    def change(self, caller: Caller, action: Action, permission: Permission, secret_id: str,
               change: Callable[[SecretRecord], tuple[SecretRecord, Any]]) -> tuple[SecretRecord, SecretRecord]:
        """Authorize, apply ``change`` (-> new record, audit draft) and commit it guarded by ``rev``."""
        return self._change(caller, action, permission, secret_id, change, allow_deleted=True)

    # --- shared steps ------------------------------------------------------------------

    def _change(self, caller: Caller, action: Action, permission: Permission, secret_id: str,
                change: Callable[[SecretRecord], tuple[SecretRecord, Any]],
                allow_deleted: bool = False) -> tuple[SecretRecord, SecretRecord]:
        """Read, authorize, apply ``change`` and commit with its event, retrying on a lost race."""
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            record = self._readable(caller, action, permission, secret_id, allow_deleted=True).record
            if record.deleted and not allow_deleted and permission is not Permission.DELETE:
                raise SecretDeleted(f"'{secret_id}' is scheduled for deletion; restore it first")
            updated, draft = change(record)
            try:
                self.repo.commit(draft, record=updated, expected_rev=record.rev)
            except StaleRecord:
                continue
            self._records.forget(secret_id)
            return record, updated
        raise VersionConflict(f"'{secret_id}' is being written by others; try again")

    def _readable(self, caller: Caller, action: Action, permission: Permission, secret_id: str, *,
                  allow_deleted: bool = False, count_rate: bool = False) -> _Authorized:
        _checked_id(secret_id)
        found = self.repo.get(secret_id)
        record = found if found is not None and not found.destroyed else None
        rate_items = self._authorize(caller, action, permission, secret_id, record, count_rate=count_rate)
        if record is None:
            raise SecretNotFound(f"secret '{secret_id}' not found")
        if record.deleted and not allow_deleted:
            raise SecretDeleted(f"'{secret_id}' is scheduled for deletion; restore it first")
        return _Authorized(record, rate_items)

    def _authorize(self, caller: Caller, action: Action, permission: Permission, secret_id: str,
                   record: SecretRecord | None, *, count_rate: bool = False) -> list[dict[str, Any]]:
        """RBAC, then constraints; a denial is audited before it is raised."""
        compliance = record.compliance if record else []
        decision = decide(caller.subject, permission, secret_id, record.access if record else None,
                          record.deny if record else None, self._policies())
        if not decision.allowed:
            self._audit_denied(caller, action, secret_id, decision.reason, compliance)
            raise AccessDenied(decision.message, reason=decision.reason)
        if record is None:  # a new secret (store), or a 404 that names no reason to refuse
            note_authorized(action, decision.reason, secret_id=secret_id)
            return []
        try:
            items = enforce(caller, record.constraints, secret_id=secret_id,
                            table=self.settings.secrets_table, defer_mfa=count_rate)
        except AccessDenied as denied:
            failed = Action.MFA_FAILED if denied.reason == "mfa_invalid" else action
            self._audit_denied(caller, failed, secret_id, denied.reason, compliance)
            raise
        note_authorized(action, decision.reason, secret_id=secret_id)
        return items if count_rate else []

    def _audit_denied(self, caller: Caller, action: Action, secret_id: str, reason: str,
                      compliance: list[str]) -> None:
        self.repo.record_event(caller.draft(action, status=Status.DENIED, secret_id=secret_id,
                                            deny_reason=reason, compliance_standards=compliance))


class _Authorized:
    __slots__ = ("rate_items", "record")

    def __init__(self, record: SecretRecord, rate_items: list[dict[str, Any]]) -> None:
        self.record = record
        self.rate_items = rate_items


def _checked_id(secret_id: str) -> str:
    if not valid_secret_id(secret_id):
        raise InvalidRequest("secret ids are 1-256 characters of A-Z a-z 0-9 _ . / - (no '..' segments)")
    return secret_id


def _rotation_due(record: SecretRecord) -> datetime | None:
    if record.sched_pk == "ROTATION" and record.sched_at:
        return datetime.fromisoformat(record.sched_at)
    return None


def to_metadata(record: SecretRecord) -> SecretMetadata:
    return SecretMetadata(
        secret_id=record.secret_id, type=SecretType(record.type), current_version=record.current_version,
        latest_version=record.latest_version, labels=record.labels, tags=record.tags, metadata=record.metadata,
        description=record.description, access={k: [Permission(p) for p in v] for k, v in record.access.items()},
        constraints=Constraints.model_validate(record.constraints) if record.constraints else None,
        compliance=record.compliance, rotation=record.rotation, value_schema=record.value_schema,
        created_at=record.created_at, created_by=record.created_by, updated_at=record.updated_at,
        rotated_at=record.rotated_at, expires_at=record.expires_at,
        deletion=DeletionState.model_validate(record.deletion) if record.deletion else None,
    )


def _build_vault_service() -> VaultService:
    from chalicelib.access_control.policy_store import cached_policies
    from chalicelib.audit.hashing import get_audit_hasher
    from chalicelib.audit.stream import get_audit_writer
    from chalicelib.aws import client
    from chalicelib.vault.keys import get_keyring

    settings = get_settings()
    repo = DynamoSecretRepository(client("dynamodb"), settings.secrets_table, get_audit_writer())
    return VaultService(repo, get_keyring(), settings=settings, policies=cached_policies,
                        field_hasher=lambda fields: get_audit_hasher().hash_fields(fields))


_service = ProcessSingleton(_build_vault_service)


def get_vault_service() -> VaultService:
    return _service.get()


def reset_vault_service() -> None:
    _service.reset()
