"""The compliance report: the spec's fields, the control list, and what the formats draw from.

``status`` is ``compliant`` only if every applicable control passes (``not_applicable`` ones do
not count either way). The spec's figures:

- ``totalSecrets``: live secrets in scope (a secret scheduled for deletion still holds data);
- ``encrypted``: of those, the ones whose every stored envelope passed the encryption check;
- ``rotatedSecrets``: secrets in scope rotated in the period;
- ``accessViolations``: refused requests (status ``denied``) on secrets in scope in the period.
  They show the controls working and are listed for review; they do not fail a control;
- ``violations``: one entry per failed control, with its findings and what to do.

A report never contains a secret value, whatever ``includeSecrets`` says: ``includeSecrets=true``
adds the per-secret inventory (type, state, envelope and rotation facts); ``maskIds=true``
replaces secret ids everywhere by a keyed hash (the audit HMAC key, so an auditor holding an id
can match it with ``v-secure audit hash``).

Example::

    report = generate_report("PCI-DSS", parse_period("monthly", now=now), generated_by="auditor")
    report.status, [c.control_id for c in report.controls if c.status == "fail"]
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import Field

from chalicelib.compliance import checks
from chalicelib.compliance.encryption_check import inspect_secret
from chalicelib.compliance.evidence import Evidence, EvidenceSource, Masker, gather
from chalicelib.compliance.model import ControlResult, Outcome, Period, ReportStatus, Standard
from chalicelib.compliance.validators import get_standard
from chalicelib.models import WireModel

MAX_VIOLATION_FINDINGS = 20
"""Findings repeated under ``violations`` (the control entry has them all, up to the check's cap)."""


# --- wire models ------------------------------------------------------------------------------


class FindingModel(WireModel):
    subject: str
    detail: str


class ControlReport(WireModel):
    control_id: str
    requirement: str
    title: str
    status: Outcome
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    findings: list[FindingModel] = Field(default_factory=list)
    remediation: str | None = None


class Violation(WireModel):
    control_id: str
    requirement: str
    title: str
    summary: str
    remediation: str | None = None
    findings: list[FindingModel] = Field(default_factory=list)
    finding_count: int = 0


class ActivityDay(WireModel):
    day: str
    accesses: int = 0
    rotations: int = 0


class ProcessingRecordModel(WireModel):
    actor: str
    actor_type: str
    secret_id: str
    action: str
    count: int
    denied: int
    first_at: str
    last_at: str


class SecretEntry(WireModel):
    """One secret in scope, with what was checked about it (never its value)."""

    secret_id: str
    type: str
    state: str
    envelopes_checked: int
    encrypted: bool
    last_rotated_at: datetime | None = None
    rotation_limit_days: float | None = None
    requires_mfa: bool = False
    wildcard_grant: bool = False


class ReportScope(WireModel):
    rule: str
    description: str
    prefix: str | None = None
    secrets: int


class ControlCounts(WireModel):
    passed: int
    failed: int
    not_applicable: int


class ComplianceReport(WireModel):
    """The spec's report (``standard, period, totalSecrets, encrypted, rotatedSecrets,
    accessViolations, status, violations``) plus the controls and the evidence behind them."""

    standard: str
    title: str
    period: str
    period_type: str
    start: datetime
    end: datetime
    as_of: datetime
    generated_at: datetime
    generated_by: str | None = None
    scope: ReportScope
    total_secrets: int
    encrypted: int
    rotated_secrets: int
    access_violations: int
    status: ReportStatus
    violations: list[Violation]
    controls: list[ControlReport]
    summary: ControlCounts
    activity: list[ActivityDay] = Field(default_factory=list)
    records_of_processing: list[ProcessingRecordModel] | None = None
    secrets: list[SecretEntry] | None = None
    evidence_reads: dict[str, int] = Field(default_factory=dict)
    """How the evidence was read (``dynamodb:Query`` -> count...): never a Scan."""


# --- building ---------------------------------------------------------------------------------


def build_report(evidence: Evidence, standard: Standard, *, generated_at: datetime, generated_by: str | None = None,
                 include_secrets: bool = False) -> ComplianceReport:
    """Run every control of ``standard`` on ``evidence`` and shape the report."""
    results = [control.evaluate(evidence, standard) for control in standard.controls]
    scope = checks.scope_of(evidence, standard)
    scope_ids = scope.ids
    period = evidence.period
    failed = [r for r in results if r.status is Outcome.FAIL]
    return ComplianceReport(
        standard=standard.name, title=standard.title, period=period.label, period_type=period.kind.value,
        start=period.start, end=period.end, as_of=period.as_of, generated_at=generated_at, generated_by=generated_by,
        scope=ReportScope(rule=scope.rule, description=scope.describe(), prefix=evidence.prefix,
                          secrets=len(scope.live)),
        total_secrets=len(scope.live), encrypted=checks.encrypted_count(evidence, scope),
        rotated_secrets=len(checks.rotated_in_period(evidence, scope)),
        access_violations=sum(1 for e in evidence.events if e.status == "denied" and e.secret_id in scope_ids),
        status=ReportStatus.NON_COMPLIANT if failed else ReportStatus.COMPLIANT,
        violations=[_violation(r) for r in failed], controls=[_control(r) for r in results],
        summary=ControlCounts(passed=sum(1 for r in results if r.status is Outcome.PASS), failed=len(failed),
                              not_applicable=sum(1 for r in results if r.status is Outcome.NOT_APPLICABLE)),
        activity=activity(evidence, scope_ids, period),
        records_of_processing=_records(evidence, scope) if "records_of_processing" in
        {c.control_id for c in standard.controls} else None,
        secrets=_inventory(evidence, standard, scope) if include_secrets else None,
        evidence_reads=dict(sorted(evidence.operations.items())),
    )


def _control(result: ControlResult) -> ControlReport:
    return ControlReport(control_id=result.control_id, requirement=result.requirement, title=result.title,
                         status=result.status, summary=result.summary, evidence=result.evidence,
                         findings=[FindingModel(subject=f.subject, detail=f.detail) for f in result.findings],
                         remediation=result.remediation)


def _violation(result: ControlResult) -> Violation:
    return Violation(control_id=result.control_id, requirement=result.requirement, title=result.title,
                     summary=result.summary, remediation=result.remediation,
                     findings=[FindingModel(subject=f.subject, detail=f.detail)
                               for f in result.findings[:MAX_VIOLATION_FINDINGS]],
                     finding_count=len(result.findings))


def activity(evidence: Evidence, scope_ids: frozenset[str], period: Period) -> list[ActivityDay]:
    """Accesses and completed rotations of secrets in scope, per day of the period (the PDF's chart)."""
    accesses: Counter[str] = Counter()
    rotations: Counter[str] = Counter()
    for event in evidence.events:
        if event.secret_id not in scope_ids:
            continue
        if event.action in checks.ACCESS_ACTIONS:
            accesses[event.day] += 1
        elif event.action in checks.ROTATION_ACTIONS and event.status == "success":
            rotations[event.day] += 1
    return [ActivityDay(day=day.isoformat(), accesses=accesses[day.isoformat()], rotations=rotations[day.isoformat()])
            for day in period.days()]


def _records(evidence: Evidence, scope: checks.Scope) -> list[ProcessingRecordModel]:
    return [ProcessingRecordModel(actor=r.actor, actor_type=r.actor_type, secret_id=r.secret_id, action=r.action,
                                  count=r.count, denied=r.denied, first_at=r.first_at, last_at=r.last_at)
            for r in checks.processing_records(evidence, scope)]


def _inventory(evidence: Evidence, standard: Standard, scope: checks.Scope) -> list[SecretEntry]:
    entries = []
    for secret in scope.secrets:
        encryption = inspect_secret(secret, evidence.key_providers)
        limit = checks.rotation_limit(secret, standard, evidence.rotation_grace_seconds) if secret.active else None
        state = "destroyed" if secret.destroyed else "deleted" if secret.deleted else "active"
        wildcard = bool(secret.access.get(checks.WILDCARD)) or any(
            p.covers(secret.secret_id) and p.allow.get(checks.WILDCARD) for p in evidence.policies)
        entries.append(SecretEntry(
            secret_id=evidence.show(secret.secret_id), type=secret.type, state=state,
            envelopes_checked=encryption.envelopes, encrypted=encryption.ok and not secret.destroyed,
            last_rotated_at=secret.last_rotated_at() if secret.live else None,
            rotation_limit_days=round(limit.seconds / 86400, 2) if limit else None,
            requires_mfa=evidence.require_mfa or secret.requires_mfa(), wildcard_grant=wildcard))
    return entries


# --- generating -------------------------------------------------------------------------------


def digest_masker(key: bytes = b"") -> Masker:
    """Masks ids as ``id-<16 hex>`` of HMAC-SHA256 under ``key`` (tests; the API uses the audit key)."""
    import hmac

    def mask(secret_id: str) -> str:
        return "id-" + hmac.new(key, secret_id.encode(), hashlib.sha256).hexdigest()[:16]

    return mask


def audit_key_masker() -> Masker:
    """Masks ids with the audit HMAC key: ``id-<first 16 hex>`` of what ``v-secure audit hash`` prints."""
    from chalicelib.audit.hashing import PREFIX, get_audit_hasher

    hasher = get_audit_hasher()
    cache: dict[str, str] = {}

    def mask(secret_id: str) -> str:
        if secret_id not in cache:
            cache[secret_id] = "id-" + hasher.hash(secret_id).removeprefix(PREFIX)[:16]
        return cache[secret_id]

    return mask


def generate_report(standard_name: str, period: Period, *, source: EvidenceSource | None = None,
                    prefix: str | None = None, include_secrets: bool = False, mask_ids: bool = False,
                    masker: Callable[[], Masker] = audit_key_masker, generated_by: str | None = None,
                    now: datetime | None = None) -> ComplianceReport:
    """Gather the evidence once and build the report for ``standard_name`` over ``period``."""
    from datetime import UTC

    standard = get_standard(standard_name)
    evidence = gather(source or EvidenceSource.from_settings(), period, inactive_days=standard.inactive_days,
                      prefix=prefix, show=masker() if mask_ids else _plain)
    return build_report(evidence, standard, generated_at=now or datetime.now(UTC), generated_by=generated_by,
                        include_secrets=include_secrets)


def _plain(secret_id: str) -> str:
    return secret_id
