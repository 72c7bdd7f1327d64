"""Builders for the compliance unit tests (no tests here): a compliant evidence set, and one
function per control that breaks exactly that control.

The compliant state, for any standard: four live secrets tagged for it (stored and changed by
the named principal ``alice``, read by ``backend``, MFA required, no ``*`` grant, real
AES-256-GCM envelopes from :func:`chalicelib.vault.encryption.seal`, one expired version
crypto-shredded, one secret with its own 30-day rotation interval), one destroyed secret with
no envelope left, an untagged secret that is out of scope, three principals all used in the last
90 days, the audit bucket under Object Lock COMPLIANCE for 2555 days, and a clean ``audit verify``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.access_control.rbac import PrefixPolicy
from chalicelib.clock import isoformat
from chalicelib.compliance.evidence import (
    DigestFacts,
    EventFact,
    Evidence,
    ObjectLockFacts,
    PrincipalFacts,
    SecretFacts,
    VerifyFacts,
    VersionFacts,
)
from chalicelib.compliance.model import Period, PeriodKind, Standard, calendar_period
from chalicelib.compliance.report import ComplianceReport, build_report
from chalicelib.compliance.validators import get_standard
from chalicelib.ports import DataKey
from chalicelib.vault.encryption import EnvelopeContext, seal

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
KMS_KID = "kms:arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
LONG_AGO = NOW - timedelta(days=400)


class KmsLikeKeys:
    """Data keys whose ``kid`` looks like the KMS provider's (wrapping is irrelevant here)."""

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        return DataKey(os.urandom(32), os.urandom(184), KMS_KID)

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        raise NotImplementedError


def envelope(secret_id: str, version: int, secret_type: str = "api_key",
             value: bytes = b"s3cr3t-value") -> dict[str, Any]:
    """A real stored envelope, as DynamoDB gives it back."""
    sealed = seal(value, EnvelopeContext(secret_id=secret_id, version=version, type=secret_type), KmsLikeKeys())
    return sealed.to_item()


def month_period(now: datetime = NOW) -> Period:
    start, end = calendar_period(PeriodKind.MONTHLY, now)
    return Period(PeriodKind.MONTHLY, start, end, min(end, now))


def ts(moment: datetime, n: int = 0) -> str:
    return f"{isoformat(moment)}#evt_{n:08d}"


def secret(secret_id: str, standard: str | None, *, secret_type: str = "api_key", stored: datetime,
           versions: int = 1, rotation: dict[str, Any] | None = None, **overrides: Any) -> SecretFacts:
    """A live, sound secret whose CURRENT version ``versions`` was stored at ``stored``."""
    facts = [VersionFacts(version=n, created_at=stored - timedelta(days=versions - n),
                          envelope=envelope(secret_id, n, secret_type),
                          attributes=frozenset({"pk", "sk", "secret_id", "version", "created_at", "envelope"}))
             for n in range(1, versions + 1)]
    fields: dict[str, Any] = dict(
        secret_id=secret_id, type=secret_type, compliance=(standard,) if standard else (),
        access={"alice": ("admin",), "backend-team": ("read",)}, constraints={"require_mfa": True},
        rotation=rotation, labels={"CURRENT": versions, **({"PREVIOUS": versions - 1} if versions > 1 else {})},
        current_version=versions, latest_version=versions, created_at=stored - timedelta(days=versions - 1),
        updated_at=stored, current_envelope=envelope(secret_id, versions, secret_type),
        attributes=frozenset({"pk", "sk", "secret_id", "type", "current", "labels"}), versions=tuple(facts))
    fields.update(overrides)
    return SecretFacts(**fields)


def compliant_evidence(standard_name: str) -> Evidence:
    standard = get_standard(standard_name)
    name = standard.name
    shredded_version = dataclasses.replace(
        secret(f"{name}/payments-key", name, stored=NOW - timedelta(days=5), versions=2).versions[0],
        envelope=None, destroyed_at=NOW - timedelta(days=5))
    payments = secret(f"{name}/payments-key", name, stored=NOW - timedelta(days=5), versions=2)
    payments = dataclasses.replace(payments, versions=(shredded_version, payments.versions[1]))
    secrets = [
        payments,
        secret(f"{name}/db-password", name, secret_type="database_credential", stored=NOW - timedelta(days=40),
               rotated_at=NOW - timedelta(days=40), updated_at=NOW - timedelta(days=40)),
        secret(f"{name}/signing-key", name, secret_type="jwt_token", stored=NOW - timedelta(days=10),
               rotation={"enabled": True, "interval": "30d", "strategy": "immediate"},
               rotated_at=NOW - timedelta(days=10)),
        secret(f"{name}/app-config", name, secret_type="configuration", stored=NOW - timedelta(days=3)),
        SecretFacts(secret_id=f"{name}/old-token", type="oauth_token", compliance=(name,), current_version=0,
                    latest_version=1, created_at=LONG_AGO, updated_at=NOW - timedelta(days=60),
                    destroyed_at=NOW - timedelta(days=60),
                    versions=(VersionFacts(version=1, created_at=LONG_AGO, destroyed_at=NOW - timedelta(days=60)),)),
        # Out of scope (not tagged): never counted, whatever its state.
        secret("untagged/legacy", None, stored=LONG_AGO, access={"*": ("read",)}, constraints={}),
    ]
    principals = [
        PrincipalFacts("root", admin=True, created_at=LONG_AGO),
        PrincipalFacts("alice", admin=True, created_at=LONG_AGO, mfa_active=True),
        PrincipalFacts("backend", type="service_account", created_at=LONG_AGO, groups=("backend-team",),
                       mfa_active=True),
    ]
    events = [
        EventFact(ts(NOW - timedelta(days=5), 1), "alice", "secret_store", "success", f"{name}/payments-key"),
        EventFact(ts(NOW - timedelta(days=3), 2), "alice", "secret_store", "success", f"{name}/app-config"),
        EventFact(ts(NOW - timedelta(days=2), 3), "backend", "secret_read", "success", f"{name}/payments-key"),
        EventFact(ts(NOW - timedelta(days=2), 4), "backend", "secret_read", "success", f"{name}/db-password"),
        EventFact(ts(NOW - timedelta(days=1), 5), "backend", "secret_read", "denied", f"{name}/signing-key"),
        EventFact(ts(NOW - timedelta(days=10), 6), "v-secure", "rotation_completed", "success",
                  f"{name}/signing-key"),
        EventFact(ts(NOW - timedelta(days=10), 7), "v-secure", "secret_store", "success", f"{name}/signing-key"),
        EventFact(ts(NOW - timedelta(days=1), 8), "root", "principal_create", "success", None),
        EventFact(ts(NOW - timedelta(days=1), 9), "root", "secret_store", "success", "untagged/legacy"),
    ]
    return Evidence(
        period=month_period(), secrets=secrets, principals=principals,
        policies=[PrefixPolicy("auditors", "*", allow={"auditors": ["audit:read"]})], events=events,
        last_use={"root": events[7].ts, "alice": events[0].ts, "backend": events[2].ts},
        object_lock=ObjectLockFacts("v-secure-audit-123456789012-us-east-1", enabled=True, mode="COMPLIANCE",
                                    retention_days=2555),
        newest_digest=DigestFacts("digests/20260320T115500Z-000000000042.json",
                                  sealed_at=NOW - timedelta(minutes=5), found=True, lock_mode="COMPLIANCE",
                                  retain_until=NOW - timedelta(minutes=5) + timedelta(days=2555)),
        verify=VerifyFacts(ok=True, counts={"digests": 42, "segments": 90, "events": 4100, "streams": 3,
                                            "pending": 2}),
        key_providers=frozenset({"kms"}), rotation_grace_seconds=3600)


def report_for(evidence: Evidence, standard_name: str, **kwargs: Any) -> ComplianceReport:
    return build_report(evidence, get_standard(standard_name), generated_at=NOW, generated_by="auditor", **kwargs)


def failed(report: ComplianceReport) -> list[str]:
    return [c.control_id for c in report.controls if c.status.value == "fail"]


def control(report: ComplianceReport, control_id: str) -> Any:
    return next(c for c in report.controls if c.control_id == control_id)


def _with_secret(evidence: Evidence, secret_id: str, **changes: Any) -> Evidence:
    secrets = [dataclasses.replace(s, **changes) if s.secret_id == secret_id else s for s in evidence.secrets]
    return dataclasses.replace(evidence, secrets=secrets)


# --- one break per control: each returns (broken evidence, what the failing control must name) ----------------


Break = Callable[[Evidence, Standard], tuple[Evidence, str]]


def break_encryption(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    """Version 1 of the db password written directly with its value in the clear."""
    secret_id = f"{standard.name}/db-password"
    original = next(s for s in evidence.secrets if s.secret_id == secret_id)
    bad = {"v": 1, "alg": "AES-256-GCM", "kid": KMS_KID, "edk": os.urandom(184), "iv": os.urandom(12),
           "ct": b"postgres://app:correct-horse-battery-staple@db:5432/app", "tag": os.urandom(16),
           "ctx": {"secret_id": secret_id, "version": 1, "type": "database_credential"}}
    versions = (dataclasses.replace(original.versions[0], envelope=bad),)
    return _with_secret(evidence, secret_id, versions=versions), secret_id


def break_rotation(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    """The signing key (own 30-day interval) last rotated 45 days ago."""
    secret_id = f"{standard.name}/signing-key"
    return _with_secret(evidence, secret_id, rotated_at=NOW - timedelta(days=45)), secret_id


def break_wildcard(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    secret_id = f"{standard.name}/payments-key"
    access = {"alice": ("admin",), "*": ("read",)}
    return _with_secret(evidence, secret_id, access=access), secret_id


def break_mfa(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    secret_id = f"{standard.name}/app-config"
    return _with_secret(evidence, secret_id, constraints={"require_mfa": False}), secret_id


def break_inactive(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    """``carol``: enabled, created 400 days ago, no event in the last 90 days."""
    principals = [*evidence.principals, PrincipalFacts("carol", created_at=LONG_AGO)]
    return dataclasses.replace(evidence, principals=principals), "carol"


def break_attribution(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    """root stores a new value of an in-scope secret (a routine change)."""
    event = EventFact(ts(NOW - timedelta(hours=6), 99), "root", "secret_store", "success",
                      f"{standard.name}/payments-key")
    return dataclasses.replace(evidence, events=[*evidence.events, event]), "root"


def break_audit_enabled(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    """A sound, tagged secret written in the period with no audit event for it."""
    secret_id = f"{standard.name}/written-directly"
    extra = secret(secret_id, standard.name, stored=NOW - timedelta(days=1))
    return dataclasses.replace(evidence, secrets=[*evidence.secrets, extra]), secret_id


def break_retention(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    lock = dataclasses.replace(evidence.object_lock, retention_days=30)  # type: ignore[type-var]
    return dataclasses.replace(evidence, object_lock=lock), "30 days"


def break_integrity(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    problem = "segment segments/20260320T100000-ab12/000000000011-000000000020.jsonl modified"
    verify = VerifyFacts(ok=False, problems=(problem, "stream 20260320T100000-ab12 hash chain broken at seq 15"),
                         counts={"digests": 42, "segments": 90, "events": 4100, "streams": 3, "pending": 0})
    return dataclasses.replace(evidence, verify=verify), problem


def break_shredding(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    """The destroyed token's version 1 still holds its envelope."""
    secret_id = f"{standard.name}/old-token"
    original = next(s for s in evidence.secrets if s.secret_id == secret_id)
    versions = (dataclasses.replace(original.versions[0], envelope=envelope(secret_id, 1, "oauth_token")),)
    return _with_secret(evidence, secret_id, versions=versions), secret_id


def break_records(evidence: Evidence, standard: Standard) -> tuple[Evidence, str]:
    """A read of an in-scope secret by an actor no principal record names."""
    event = EventFact(ts(NOW - timedelta(hours=3), 98), "ghost", "secret_read", "success",
                      f"{standard.name}/payments-key")
    return dataclasses.replace(evidence, events=[*evidence.events, event]), "ghost"


BREAKS: dict[str, Break] = {
    "encryption_at_rest": break_encryption, "rotation": break_rotation, "no_wildcard_grants": break_wildcard,
    "mfa_required": break_mfa, "no_inactive_principals": break_inactive, "attributable_changes": break_attribution,
    "audit_enabled": break_audit_enabled, "audit_retention": break_retention, "audit_integrity": break_integrity,
    "crypto_shredding": break_shredding, "records_of_processing": break_records,
}
