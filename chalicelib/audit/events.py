"""Audit events: the spec's fields plus what makes them verifiable.

An event is written once and never changed. ``hash`` chains it to the previous event of
its stream: ``hash = SHA-256(prev_hash || canonical(event without hash))``.

Example::

    draft = AuditDraft(action=Action.SECRET_READ, secret_id="db_password", actor="app",
                       actor_type="service_account", status=Status.SUCCESS)
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

GENESIS_HASH = "0" * 64
_ADDED_FIELDS = ("authorized_by",)


class Action(StrEnum):
    SECRET_STORE = "secret_store"
    SECRET_READ = "secret_read"
    SECRET_DESCRIBE = "secret_describe"
    SECRET_LIST = "secret_list"
    SECRET_VERSIONS = "secret_versions"
    SECRET_ROLLBACK = "secret_rollback"
    SECRET_DELETE = "secret_delete"
    SECRET_DESTROY = "secret_destroy"
    SECRET_RESTORE = "secret_restore"
    SECRET_CONFIGURE = "secret_configure"
    SECRET_ROTATE = "secret_rotate"
    SECRET_SWITCH = "secret_switch"
    ACCESS_GRANT = "access_grant"
    ACCESS_REVOKE = "access_revoke"
    ACCESS_READ = "access_read"
    POLICY_CHANGE = "policy_change"
    POLICY_READ = "policy_read"
    PRINCIPAL_CREATE = "principal_create"
    PRINCIPAL_DISABLE = "principal_disable"
    PRINCIPAL_ENABLE = "principal_enable"
    PRINCIPAL_READ = "principal_read"
    GROUP_CHANGE = "group_change"
    GROUP_READ = "group_read"
    TOKEN_CREATE = "token_create"
    TOKEN_REVOKE = "token_revoke"
    AUTH_FAILED = "auth_failed"
    MFA_FAILED = "mfa_failed"
    MFA_ENROLL = "mfa_enroll"
    MFA_DISABLE = "mfa_disable"
    RATE_LIMITED = "rate_limited"
    ROTATION_STARTED = "rotation_started"
    ROTATION_STEP = "rotation_step"
    ROTATION_COMPLETED = "rotation_completed"
    ROTATION_FAILED = "rotation_failed"
    ROTATION_ROLLED_BACK = "rotation_rolled_back"
    AUDIT_READ = "audit_read"
    AUDIT_SEAL = "audit_seal"
    AUDIT_HASH = "audit_hash"
    AUDIT_VERIFY = "audit_verify"
    KEY_ROTATE = "key_rotate"
    KEY_REWRAP = "key_rewrap"
    COMPLIANCE_REPORT = "compliance_report"
    SYSTEM_BOOTSTRAP = "system_bootstrap"


class Status(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


class AuditDraft(BaseModel):
    """What the caller knows about an event; the stream adds id, time, sequence and hashes."""

    model_config = ConfigDict(frozen=True)

    action: Action
    actor: str
    actor_type: str
    status: Status = Status.SUCCESS
    secret_id: str | None = None
    version: int | None = None
    source_ip: str | None = None
    reason: str | None = None
    deny_reason: str | None = None
    authorized_by: str | None = None
    """Why the caller was allowed (``global_admin``, ``self``, ``secret_grant:<key>``, ``policy:<name>``)."""
    request_id: str | None = None
    compliance_standards: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    """Non-secret facts (request fields that could hold secrets must be HMAC'd first)."""


class AuditEvent(AuditDraft):
    event_id: str
    timestamp: str
    stream_id: str
    seq: int
    prev_hash: str
    hash: str = ""

    def canonical(self) -> bytes:
        """The bytes that are hashed: every field but ``hash``, sorted keys, no spaces.

        Fields added after the first release (``authorized_by``) are left out while unset, so
        events written before them still verify.
        """
        body = self.model_dump(mode="json", exclude={"hash"})
        for added in _ADDED_FIELDS:
            if body.get(added) is None:
                body.pop(added, None)
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def computed_hash(self) -> str:
        return chain_hash(self.prev_hash, self.canonical())


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()
