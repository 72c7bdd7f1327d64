"""The checks behind the controls, shared by the standards (each standard binds them to its
requirements and parameters in ``validators/<standard>.py``).

Which secrets are *in scope* for a standard: the secrets whose ``compliance`` list names it
(``"compliance": ["PCI-DSS"]`` when stored; names are compared case-insensitively, ``PCI`` and
``PCI_DSS`` mean ``PCI-DSS``). When no live secret names the standard, every secret is in scope:
a vault nobody has tagged is assessed as a whole rather than passing with nothing checked. With
a ``prefix``, only secrets whose id starts with it are considered at all. Checks on the
deployment rather than on secrets (principals, the audit log) are not narrowed by scope; checks
on audit events look at the events of in-scope secrets.

Example::

    verdict = encryption_at_rest(evidence, standard)
    verdict.status, verdict.evidence["envelopesChecked"]
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from chalicelib.compliance.encryption_check import inspect_secret
from chalicelib.compliance.evidence import SYSTEM_ACTOR, EventFact, Evidence, SecretFacts, as_time
from chalicelib.compliance.model import Finding, Outcome, Standard, Verdict

ROOT_PRINCIPAL = "root"
WILDCARD = "*"
ROUTINE_CHANGES = frozenset({
    "secret_store", "secret_rollback", "secret_delete", "secret_destroy", "secret_restore",
    "secret_configure", "secret_rotate", "secret_switch", "access_grant", "access_revoke",
})
"""Day-to-day changes to secrets, which must be made by named principals (not by root)."""
ACCESS_ACTIONS = frozenset({"secret_read", "secret_describe", "secret_versions", "access_read"})
ROTATION_ACTIONS = frozenset({"rotation_completed"})
NOT_ROTATED_TYPES = frozenset({"configuration"})
"""Types whose values are settings, not credentials: checked only when they have an interval of their own."""
ERASURE_GRACE = timedelta(days=1)
"""A secret past its recovery window is destroyed by the hourly purge job; later than this is overdue."""
UNAUDITED_MARGIN = timedelta(seconds=5)
MAX_FINDINGS = 200
"""Per control; the rest are counted in the evidence."""


# --- scope ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The secrets a standard applies to, and why (``tagged`` or ``all``)."""

    rule: str
    secrets: tuple[SecretFacts, ...]

    @property
    def live(self) -> list[SecretFacts]:
        return [s for s in self.secrets if s.live]

    @property
    def active(self) -> list[SecretFacts]:
        return [s for s in self.secrets if s.active]

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(s.secret_id for s in self.secrets)

    def describe(self) -> str:
        if self.rule == "tagged":
            return "secrets tagged for the standard"
        return "every secret (none is tagged for the standard)"


def scope_of(evidence: Evidence, standard: Standard) -> Scope:
    tagged = tuple(s for s in evidence.secrets if s.tagged_for(standard.name))
    if any(s.live for s in tagged):
        return Scope("tagged", tagged)
    return Scope("all", tuple(evidence.secrets))


def scope_events(evidence: Evidence, scope: Scope) -> list[EventFact]:
    ids = scope.ids
    return [e for e in evidence.events if e.secret_id is not None and e.secret_id in ids]


def _capped(findings: list[Finding]) -> tuple[Finding, ...]:
    return tuple(findings[:MAX_FINDINGS])


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# --- encryption at rest -----------------------------------------------------------------------


def encryption_at_rest(evidence: Evidence, standard: Standard) -> Verdict:
    scope = scope_of(evidence, standard)
    secrets = scope.live
    if not secrets:
        return Verdict(Outcome.NOT_APPLICABLE, "no secrets in scope")
    results = [inspect_secret(secret, evidence.key_providers) for secret in secrets]
    failing = [r for r in results if not r.ok]
    findings = [Finding(f"{evidence.show(r.secret_id)} {p.location}",
                        ("PLAINTEXT-LOOKING: " if p.plaintext else "") + p.problem)
                for r in failing for p in r.problems]
    facts = {"scope": scope.rule, "secretsChecked": len(results), "envelopesChecked": sum(r.envelopes for r in results),
             "secretsWithProblems": len(failing), "plaintextLooking": sum(1 for r in failing if r.plaintext),
             "problems": len(findings), "keyProviders": sorted(evidence.key_providers)}
    if not failing:
        return Verdict(Outcome.PASS, f"{facts['envelopesChecked']} stored envelopes of {len(results)} secrets are "
                                     "AES-256-GCM envelopes with a wrapped data key", facts)
    return Verdict(Outcome.FAIL, f"{len(failing)} of {len(results)} secrets hold envelopes that are not sound "
                                 f"({facts['plaintextLooking']} plaintext-looking)", facts, _capped(findings),
                   "Store a new value through v-secure for each listed secret (it seals with AES-256-GCM under a "
                   "fresh wrapped data key), destroy the damaged versions, and find out how the item was written "
                   "outside the service: only v-secure's role may write the secrets table.")


def encrypted_count(evidence: Evidence, scope: Scope) -> int:
    return sum(1 for s in scope.live if inspect_secret(s, evidence.key_providers).ok)


# --- rotation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationLimit:
    seconds: int
    source: str


def rotation_limit(secret: SecretFacts, standard: Standard, grace_seconds: int) -> RotationLimit | None:
    """The secret's own interval when rotation is on for it (plus the scheduler's cadence and the
    rollout), else the standard's maximum, else None (nothing to check against)."""
    from chalicelib.rotation.config import Strategy, load

    if secret.rotation:
        try:
            config = load(dict(secret.rotation))
        except (ValidationError, ValueError):
            config = None
        if config is not None and config.enabled and config.interval_seconds:
            rollout = 0 if config.effective_strategy() in (Strategy.IMMEDIATE, Strategy.BLUE_GREEN) \
                else int(config.rollout_duration_hours * 3600)
            return RotationLimit(config.interval_seconds + grace_seconds + rollout,
                                 f"rotation.interval {config.interval}")
    if standard.rotation_max_days is not None and secret.type not in NOT_ROTATED_TYPES:
        return RotationLimit(standard.rotation_max_days * 86400, f"{standard.title} maximum")
    return None


def rotated_in_period(evidence: Evidence, scope: Scope) -> set[str]:
    """Secrets whose value was rotated in the period (a completed rotation, or ``rotated_at`` in it)."""
    ids = scope.ids
    rotated = {e.secret_id for e in evidence.events if e.action in ROTATION_ACTIONS and e.status == "success"
               and e.secret_id in ids}
    start, end = evidence.period.start, evidence.period.as_of
    rotated |= {s.secret_id for s in scope.secrets if s.rotated_at is not None and start <= s.rotated_at <= end}
    return {r for r in rotated if r is not None}


def rotation(evidence: Evidence, standard: Standard) -> Verdict:
    scope = scope_of(evidence, standard)
    as_of = evidence.period.as_of
    checked = overdue = own = 0
    without = 0
    findings: list[Finding] = []
    for secret in scope.active:
        limit = rotation_limit(secret, standard, evidence.rotation_grace_seconds)
        if limit is None:
            without += 1
            continue
        checked += 1
        own += limit.source.startswith("rotation.")
        last = secret.last_rotated_at()
        age = (as_of - last).total_seconds() if last is not None else float("inf")
        if age > limit.seconds:
            overdue += 1
            findings.append(Finding(evidence.show(secret.secret_id),
                                    f"last rotated {_iso(last) or 'never'} ({int(age // 86400)} days ago); "
                                    f"limit {limit.seconds / 86400:g} days ({limit.source})"))
    facts: dict[str, Any] = {"scope": scope.rule, "checked": checked, "overdue": overdue, "withOwnInterval": own,
                             "withoutRotationPeriod": without, "defaultMaxDays": standard.rotation_max_days,
                             "rotatedInPeriod": len(rotated_in_period(evidence, scope)), "asOf": as_of.isoformat()}
    if checked == 0:
        return Verdict(Outcome.NOT_APPLICABLE, "no secret in scope has a rotation period (configure rotation "
                                               "with an interval)", facts)
    if overdue == 0:
        return Verdict(Outcome.PASS, f"all {checked} secrets with a rotation period were rotated within it", facts)
    return Verdict(Outcome.FAIL, f"{overdue} of {checked} secrets are overdue for rotation", facts, _capped(findings),
                   "Rotate each listed secret now (v-secure secret rotate --secret-id ...) and configure rotation "
                   "with an interval within the limit (v-secure secret configure --secret-id ... --interval 30d) so "
                   "the scheduler keeps rotating it.")


# --- access -----------------------------------------------------------------------------------


def no_wildcard_grants(evidence: Evidence, standard: Standard) -> Verdict:
    scope = scope_of(evidence, standard)
    secrets = scope.active
    if not secrets:
        return Verdict(Outcome.NOT_APPLICABLE, "no secrets in scope")
    findings: list[Finding] = []
    affected: set[str] = set()
    for secret in secrets:
        if secret.access.get(WILDCARD):
            affected.add(secret.secret_id)
            findings.append(Finding(evidence.show(secret.secret_id),
                                    f"the secret's access grants {', '.join(secret.access[WILDCARD])} to '*'"))
        for policy in evidence.policies:
            if policy.covers(secret.secret_id) and policy.allow.get(WILDCARD):
                affected.add(secret.secret_id)
                findings.append(Finding(evidence.show(secret.secret_id),
                                        f"prefix policy '{policy.name}' ({policy.pattern}) grants "
                                        f"{', '.join(policy.allow[WILDCARD])} to '*'"))
    facts = {"scope": scope.rule, "checked": len(secrets), "secretsWithWildcardGrants": len(affected),
             "wildcardGrants": len(findings), "policiesChecked": len(evidence.policies)}
    if not findings:
        return Verdict(Outcome.PASS, f"no '*' grant on any of the {len(secrets)} secrets in scope", facts)
    return Verdict(Outcome.FAIL, f"{len(affected)} secrets in scope are granted to '*' (every principal)", facts,
                   _capped(findings),
                   "Replace each '*' grant with the principals or groups that need it (v-secure access revoke "
                   "--secret-id ... --from '*', then v-secure access grant ... --to <group>) and narrow prefix "
                   "policies that allow '*'.")


def mfa_required(evidence: Evidence, standard: Standard) -> Verdict:
    scope = scope_of(evidence, standard)
    secrets = scope.active
    if not secrets:
        return Verdict(Outcome.NOT_APPLICABLE, "no secrets in scope")
    enrolled = sum(1 for p in evidence.principals if p.mfa_active and not p.disabled)
    if evidence.require_mfa:
        return Verdict(Outcome.PASS, "every read needs an MFA code (V_SECURE_REQUIRE_MFA)",
                       {"scope": scope.rule, "global": True, "checked": len(secrets), "principalsEnrolled": enrolled})
    missing = [s for s in secrets if not s.requires_mfa()]
    facts = {"scope": scope.rule, "global": False, "checked": len(secrets), "withoutMfa": len(missing),
             "principalsEnrolled": enrolled}
    if not missing:
        return Verdict(Outcome.PASS, f"all {len(secrets)} secrets in scope require MFA (constraints.require_mfa)",
                       facts)
    findings = [Finding(evidence.show(s.secret_id), "reads do not require MFA") for s in missing]
    return Verdict(Outcome.FAIL, f"{len(missing)} of {len(secrets)} secrets in scope can be read without MFA", facts,
                   _capped(findings),
                   "Require MFA on each listed secret (v-secure access constraints --secret-id ... --require-mfa) "
                   "or on every read (V_SECURE_REQUIRE_MFA=true), and enrol the principals that read them "
                   "(v-secure auth mfa setup).")


def no_inactive_principals(evidence: Evidence, standard: Standard) -> Verdict:
    if not evidence.principals:
        return Verdict(Outcome.NOT_APPLICABLE, "no principals")
    since = evidence.period.as_of - timedelta(days=standard.inactive_days)
    enabled = [p for p in evidence.principals if not p.disabled]
    candidates = [p for p in enabled if p.created_at is not None and p.created_at <= since]
    inactive = [p for p in candidates if p.principal_id not in evidence.last_use]
    facts = {"principals": len(evidence.principals), "enabled": len(enabled), "inactiveDays": standard.inactive_days,
             "olderThanWindow": len(candidates), "inactive": len(inactive), "windowStart": since.isoformat()}
    if not inactive:
        return Verdict(Outcome.PASS, f"every enabled principal older than {standard.inactive_days} days was used "
                                     "in that time", facts)
    findings = [Finding(p.principal_id, f"no audit event since {since.date().isoformat()} (created "
                                        f"{_iso(p.created_at)})") for p in inactive]
    return Verdict(Outcome.FAIL, f"{len(inactive)} enabled principals were not used for {standard.inactive_days} "
                                 "days", facts, _capped(findings),
                   "Disable each listed principal (v-secure principal disable --principal-id ...) or confirm it is "
                   "still needed; revoke the tokens of those that are not.")


def attributable_changes(evidence: Evidence, standard: Standard) -> Verdict:
    scope = scope_of(evidence, standard)
    if not scope.secrets:
        return Verdict(Outcome.NOT_APPLICABLE, "no secrets in scope")
    changes = [e for e in scope_events(evidence, scope) if e.action in ROUTINE_CHANGES and e.status == "success"]
    by_root = [e for e in changes if e.actor == ROOT_PRINCIPAL]
    unknown = [e for e in changes if e.actor not in (ROOT_PRINCIPAL, SYSTEM_ACTOR)
               and evidence.principal(e.actor) is None]
    facts = {"scope": scope.rule, "changes": len(changes), "byRoot": len(by_root), "byUnknownActors": len(unknown),
             "actors": len({e.actor for e in changes})}
    if not by_root and not unknown:
        return Verdict(Outcome.PASS, f"all {len(changes)} changes to secrets in scope were made by named principals "
                                     "or by v-secure itself", facts)
    findings = [Finding(e.actor, f"{e.action} of {evidence.show(e.secret_id or '')} at {e.timestamp}"
                        + (" (the shared root principal)" if e.actor == ROOT_PRINCIPAL else " (not a known principal)"))
                for e in [*by_root, *unknown]]
    return Verdict(Outcome.FAIL, f"{len(by_root) + len(unknown)} changes to secrets in scope were not made by a named "
                                 "principal", facts, _capped(findings),
                   "Make routine changes with a named principal per person or service (v-secure principal create "
                   "...); keep root for break-glass use with its token stored offline, and review each listed change.")


# --- audit ------------------------------------------------------------------------------------


def audit_enabled(evidence: Evidence, standard: Standard) -> Verdict:
    scope = scope_of(evidence, standard)
    start, cutoff = evidence.period.start, evidence.period.as_of - UNAUDITED_MARGIN
    audited = {e.secret_id for e in scope_events(evidence, scope)}
    changed = [s for s in scope.secrets if s.updated_at is not None and start <= s.updated_at <= cutoff]
    unaudited = [s for s in changed if s.secret_id not in audited]
    facts = {"scope": scope.rule, "eventsInPeriod": len(evidence.events), "secretsChangedInPeriod": len(changed),
             "changesWithoutAuditRecord": len(unaudited), "auditTableReadBy": "by_day index"}
    if not unaudited:
        return Verdict(Outcome.PASS, f"audit is on: {len(evidence.events)} events in the period, every change to a "
                                     "secret in scope has its audit record", facts)
    findings = [Finding(evidence.show(s.secret_id), f"changed at {_iso(s.updated_at)} with no audit event in the "
                                                    "period") for s in unaudited]
    return Verdict(Outcome.FAIL, f"{len(unaudited)} secrets in scope changed without an audit record", facts,
                   _capped(findings),
                   "The listed items were written outside v-secure (every change through it is audited in the same "
                   "transaction): restrict writes to the secrets table to v-secure's role, investigate, and store "
                   "the values again through the API.")


def audit_retention(evidence: Evidence, standard: Standard) -> Verdict:
    required = standard.audit_retention_days
    lock = evidence.object_lock
    if required is None:
        return Verdict(Outcome.NOT_APPLICABLE, f"{standard.title} sets no minimum retention")
    if lock is None:
        return Verdict(Outcome.FAIL, "the audit bucket's Object Lock configuration was not read",
                       {"requiredDays": required}, (), _retention_remediation(required))
    digest = evidence.newest_digest
    facts: dict[str, Any] = {"bucket": lock.bucket, "objectLockEnabled": lock.enabled, "mode": lock.mode,
                             "defaultRetentionDays": lock.retention_days, "requiredDays": required}
    problems: list[str] = []
    if lock.problem:
        problems.append(lock.problem)
    elif not lock.enabled:
        problems.append("Object Lock is not enabled on the audit bucket")
    else:
        if lock.mode != "COMPLIANCE":
            problems.append(f"default retention mode is {lock.mode or 'not set'}, not COMPLIANCE")
        if (lock.retention_days or 0) < required:
            problems.append(f"default retention is {lock.retention_days or 0} days, less than {required}")
    if digest is not None and digest.found:
        facts.update(newestDigest=digest.key, newestDigestMode=digest.lock_mode,
                     newestDigestRetentionDays=digest.retention_days)
        if digest.lock_mode != "COMPLIANCE" or (digest.retention_days or 0) < required:
            problems.append(f"the newest sealed digest {digest.key} is locked {digest.lock_mode or 'not at all'} "
                            f"for {digest.retention_days or 0} days, less than {required} in COMPLIANCE mode")
    if not problems:
        return Verdict(Outcome.PASS, f"audit log under Object Lock COMPLIANCE for {lock.retention_days} days "
                                     f"(at least {required})", facts)
    return Verdict(Outcome.FAIL, "; ".join(problems), facts, tuple(Finding(lock.bucket, p) for p in problems),
                   _retention_remediation(required))


def _retention_remediation(required: int) -> str:
    return (f"Give the audit bucket a default retention of at least {required} days in COMPLIANCE mode (the "
            f"stack's Object Lock rule, and V_SECURE_RETENTION_DAYS={required} for what the sealer writes). "
            "COMPLIANCE retention can be lengthened but never shortened: objects already sealed keep theirs.")


def audit_integrity(evidence: Evidence, standard: Standard) -> Verdict:
    verify = evidence.verify
    if verify is None:
        return Verdict(Outcome.NOT_APPLICABLE, "audit verification is not installed")
    facts = {"ok": verify.ok, "problems": len(verify.problems), **dict(verify.counts)}
    if verify.ok:
        return Verdict(Outcome.PASS, f"audit verify over the period is clean ({verify.counts.get('digests', 0)} "
                                     f"digests, {verify.counts.get('segments', 0)} segments, "
                                     f"{verify.counts.get('events', 0)} events)", facts)
    findings = [Finding("audit log", problem) for problem in verify.problems]
    return Verdict(Outcome.FAIL, f"audit verify found {len(verify.problems)} problems", facts, _capped(findings),
                   "Run v-secure audit verify --start <period start> to see every problem; restore altered or "
                   "removed segments from the version Object Lock kept, find out who changed them, and seal pending "
                   "events (v-secure audit seal).")


# --- GDPR -------------------------------------------------------------------------------------


def crypto_shredding(evidence: Evidence, standard: Standard) -> Verdict:
    scope = scope_of(evidence, standard)
    as_of = evidence.period.as_of
    findings: list[Finding] = []
    destroyed = [s for s in scope.secrets if s.destroyed]
    destroyed_versions = 0
    for secret in destroyed:
        left = _envelopes_left(secret)
        destroyed_versions += sum(1 for v in secret.versions if v.present)
        if left:
            findings.append(Finding(evidence.show(secret.secret_id), f"destroyed at {_iso(secret.destroyed_at)} but "
                                                                     f"still holds {', '.join(left)}"))
    for secret in scope.live:
        for version in secret.versions:
            if version.destroyed_at is None:
                continue
            destroyed_versions += 1
            if version.envelope is not None:
                findings.append(Finding(evidence.show(secret.secret_id), f"version {version.version} destroyed at "
                                        f"{_iso(version.destroyed_at)} still holds its envelope"))
    overdue = [s for s in scope.live if s.deleted and _erasure_overdue(s, as_of)]
    findings.extend(Finding(evidence.show(s.secret_id), f"deletion requested; erasure was due at "
                                                        f"{_iso(_destroy_after(s))} and has not happened")
                    for s in overdue)
    facts = {"scope": scope.rule, "mechanism": "destroy removes each version's ciphertext and wrapped data key",
             "destroyedSecrets": len(destroyed), "destroyedVersions": destroyed_versions,
             "pendingDeletion": sum(1 for s in scope.live if s.deleted), "erasureOverdue": len(overdue),
             "envelopesLeft": len(findings) - len(overdue)}
    if not findings:
        return Verdict(Outcome.PASS, f"crypto-shredding available; {len(destroyed)} destroyed secrets and "
                                     f"{destroyed_versions} destroyed versions hold no envelope", facts)
    return Verdict(Outcome.FAIL, f"{len(findings)} erasures are incomplete or overdue", facts, _capped(findings),
                   "Run the purge job (it destroys secrets whose recovery window passed) and destroy the listed "
                   "secrets or versions again (v-secure secret delete --secret-id ... --force); a destroyed version "
                   "must keep no ciphertext and no wrapped data key.")


def _envelopes_left(secret: SecretFacts) -> list[str]:
    left = []
    if secret.current_envelope is not None:
        left.append("its current envelope")
    if secret.staged:
        left.append(f"staged envelopes ({', '.join(sorted(secret.staged))})")
    left.extend(f"the envelope of version {v.version}" for v in secret.versions if v.envelope is not None)
    return left


def _destroy_after(secret: SecretFacts) -> datetime | None:
    return as_time((secret.deletion or {}).get("destroy_after"))


def _erasure_overdue(secret: SecretFacts, as_of: datetime) -> bool:
    due = _destroy_after(secret)
    return due is not None and due + ERASURE_GRACE < as_of


@dataclass(frozen=True)
class ProcessingRecord:
    """Who did what to which secret in the period (GDPR Art. 30 record of processing)."""

    actor: str
    actor_type: str
    secret_id: str
    action: str
    count: int
    denied: int
    first_at: str
    last_at: str


def processing_records(evidence: Evidence, scope: Scope) -> list[ProcessingRecord]:
    grouped: dict[tuple[str, str, str], list[EventFact]] = defaultdict(list)
    for event in scope_events(evidence, scope):
        grouped[(event.actor, event.secret_id or "", event.action)].append(event)
    records = []
    for (actor, secret_id, action), events in sorted(grouped.items()):
        principal = evidence.principal(actor)
        actor_type = principal.type if principal else ("system" if actor == SYSTEM_ACTOR else "unknown")
        records.append(ProcessingRecord(actor, actor_type, evidence.show(secret_id), action, len(events),
                                        sum(1 for e in events if e.status == "denied"),
                                        events[0].timestamp, events[-1].timestamp))
    return records


def records_of_processing(evidence: Evidence, standard: Standard) -> Verdict:
    scope = scope_of(evidence, standard)
    if not scope.secrets:
        return Verdict(Outcome.NOT_APPLICABLE, "no secrets in scope")
    records = processing_records(evidence, scope)
    unknown = sorted({r.actor for r in records if r.actor_type == "unknown"})
    facts = {"scope": scope.rule, "records": len(records), "events": sum(r.count for r in records),
             "actors": len({r.actor for r in records}), "secrets": len({r.secret_id for r in records}),
             "accesses": sum(r.count for r in records if r.action in ACCESS_ACTIONS),
             "unidentifiedActors": len(unknown)}
    if not unknown:
        return Verdict(Outcome.PASS, f"{len(records)} records of processing (who did what to which secret) compiled "
                                     "from the audit trail; every actor is identified", facts)
    findings = [Finding(actor, "events on secrets in scope by an actor that is not a known principal")
                for actor in unknown]
    return Verdict(Outcome.FAIL, f"{len(unknown)} actors in the records of processing are not identified", facts,
                   _capped(findings),
                   "Every processing record must name who acted: find out how events with unknown actors were "
                   "written (only v-secure may write the audit table) and account for them.")

