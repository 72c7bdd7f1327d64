"""Every control of every standard: compliant state first, then each control broken on its own.

The evidence is built directly (``test_compliance_support``); each break changes one stored fact
and the report must fail exactly that control, naming what was broken in its findings and
counting it in its evidence.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from chalicelib.access_control.rbac import PrefixPolicy
from chalicelib.compliance.evidence import EventFact, ObjectLockFacts
from chalicelib.compliance.model import Outcome
from chalicelib.compliance.report import digest_masker
from chalicelib.compliance.validators import get_standard, standards
from tests.unit.test_compliance_support import (
    BREAKS,
    NOW,
    compliant_evidence,
    control,
    failed,
    report_for,
    secret,
    ts,
)

STANDARDS = ["PCI-DSS", "HIPAA", "SOX", "GDPR"]
CASES = [(name, c.control_id) for name in STANDARDS for c in get_standard(name).controls]


@pytest.mark.parametrize("standard", STANDARDS)
def test_compliant_state_passes_every_control(standard: str) -> None:
    report = report_for(compliant_evidence(standard), standard)
    assert report.status.value == "compliant"
    assert {c.control_id: c.status.value for c in report.controls} == {
        c.control_id: "pass" for c in get_standard(standard).controls}
    assert report.violations == []
    assert (report.total_secrets, report.encrypted, report.rotated_secrets, report.access_violations) == (4, 4, 1, 1)


@pytest.mark.parametrize(("standard", "control_id"), CASES)
def test_breaking_one_control_fails_exactly_that_control(standard: str, control_id: str) -> None:
    evidence, named = BREAKS[control_id](compliant_evidence(standard), get_standard(standard))
    report = report_for(evidence, standard)
    assert report.status.value == "non_compliant"
    assert failed(report) == [control_id]
    result = control(report, control_id)
    assert result.remediation
    assert any(named in f"{f.subject} {f.detail}" for f in result.findings), result.findings
    assert [v.control_id for v in report.violations] == [control_id]
    assert report.violations[0].finding_count == len(result.findings)


def test_every_standard_names_current_requirements() -> None:
    requirements = {name: [c.requirement for c in s.controls] for name, s in standards().items()}
    assert all(r.startswith("PCI DSS v4.0.1 Req. ") for r in requirements["PCI-DSS"])
    assert "HIPAA §164.312(a)(2)(iv)" in requirements["HIPAA"]
    assert all(r.startswith("SOX ITGC: ") for r in requirements["SOX"])
    assert "SOX ITGC: change management" in requirements["SOX"]
    assert {"GDPR Art. 32(1)(a)", "GDPR Art. 30(1)"} <= set(requirements["GDPR"])
    assert any(r.startswith("GDPR Art. 17") for r in requirements["GDPR"])
    assert any(r.startswith("GDPR Art. 5") for r in requirements["GDPR"])


# --- the evidence each failure carries ------------------------------------------------------------------


def test_plaintext_envelope_is_named_with_its_version() -> None:
    evidence, secret_id = BREAKS["encryption_at_rest"](compliant_evidence("PCI-DSS"), get_standard("PCI-DSS"))
    result = control(report_for(evidence, "PCI-DSS"), "encryption_at_rest")
    assert result.evidence["secretsWithProblems"] == 1 and result.evidence["plaintextLooking"] == 1
    assert [(f.subject, f.detail) for f in result.findings] == [
        (f"{secret_id} version 1", "PLAINTEXT-LOOKING: the ciphertext reads as text")]
    assert report_for(evidence, "PCI-DSS").encrypted == 3


def test_overdue_rotation_lists_age_and_limit() -> None:
    evidence, secret_id = BREAKS["rotation"](compliant_evidence("PCI-DSS"), get_standard("PCI-DSS"))
    result = control(report_for(evidence, "PCI-DSS"), "rotation")
    assert result.evidence["overdue"] == 1 and result.evidence["checked"] == 3
    assert result.findings[0].subject == secret_id
    assert "45 days ago" in result.findings[0].detail and "rotation.interval 30d" in result.findings[0].detail


def test_pci_default_is_90_days_without_an_interval_of_its_own() -> None:
    evidence = compliant_evidence("PCI-DSS")
    stale = [dataclasses.replace(s, rotated_at=NOW - timedelta(days=91)) if s.secret_id.endswith("db-password") else s
             for s in evidence.secrets]
    result = control(report_for(dataclasses.replace(evidence, secrets=stale), "PCI-DSS"), "rotation")
    assert result.status is Outcome.FAIL
    assert "limit 90 days (PCI DSS v4.0.1 maximum)" in result.findings[0].detail
    # 89 days is within the limit.
    fresh = [dataclasses.replace(s, rotated_at=NOW - timedelta(days=89)) if s.secret_id.endswith("db-password")
             else s for s in evidence.secrets]
    assert control(report_for(dataclasses.replace(evidence, secrets=fresh), "PCI-DSS"), "rotation").status \
        is Outcome.PASS


def test_hipaa_checks_only_secrets_with_their_own_interval() -> None:
    """HIPAA sets no period: a 200-day-old credential without an interval is not overdue there (it is for PCI)."""
    evidence = compliant_evidence("HIPAA")
    old = [dataclasses.replace(s, rotated_at=NOW - timedelta(days=200)) if s.secret_id.endswith("db-password")
           else s for s in evidence.secrets]
    result = control(report_for(dataclasses.replace(evidence, secrets=old), "HIPAA"), "rotation")
    assert result.status is Outcome.PASS
    assert result.evidence["checked"] == 1 and result.evidence["withoutRotationPeriod"] == 3


def test_rotation_without_any_period_is_not_applicable_and_does_not_count() -> None:
    evidence = compliant_evidence("SOX")
    plain = [dataclasses.replace(s, rotation=None) for s in evidence.secrets]
    report = report_for(dataclasses.replace(evidence, secrets=plain), "SOX")
    assert control(report, "rotation").status is Outcome.NOT_APPLICABLE
    assert report.status.value == "compliant" and report.summary.not_applicable == 1


def test_last_rotation_falls_back_to_when_the_current_version_was_stored() -> None:
    """No ``rotated_at``: the age counts from the CURRENT version's ``created_at`` (as the scheduler does)."""
    evidence = compliant_evidence("PCI-DSS")
    old = secret("PCI-DSS/never-rotated", "PCI-DSS", stored=NOW - timedelta(days=120))
    report = report_for(dataclasses.replace(evidence, secrets=[*evidence.secrets, old]), "PCI-DSS")
    result = control(report, "rotation")
    assert [f.subject for f in result.findings] == ["PCI-DSS/never-rotated"]
    assert "120 days ago" in result.findings[0].detail


def test_wildcard_from_a_prefix_policy_counts_too() -> None:
    evidence = compliant_evidence("SOX")
    policy = PrefixPolicy("everyone-reads-sox", "SOX/*", allow={"*": ["read"]})
    result = control(report_for(dataclasses.replace(evidence, policies=[*evidence.policies, policy]), "SOX"),
                     "no_wildcard_grants")
    assert result.status is Outcome.FAIL
    assert result.evidence["secretsWithWildcardGrants"] == 4
    assert "prefix policy 'everyone-reads-sox' (SOX/*) grants read to '*'" in result.findings[0].detail


def test_global_mfa_setting_satisfies_the_mfa_control() -> None:
    evidence, _ = BREAKS["mfa_required"](compliant_evidence("PCI-DSS"), get_standard("PCI-DSS"))
    result = control(report_for(dataclasses.replace(evidence, require_mfa=True), "PCI-DSS"), "mfa_required")
    assert result.status is Outcome.PASS and result.evidence["global"] is True


def test_missing_mfa_names_the_secret_and_counts() -> None:
    evidence, secret_id = BREAKS["mfa_required"](compliant_evidence("HIPAA"), get_standard("HIPAA"))
    result = control(report_for(evidence, "HIPAA"), "mfa_required")
    assert result.evidence["withoutMfa"] == 1 and result.evidence["global"] is False
    assert [f.subject for f in result.findings] == [secret_id]


def test_inactive_principal_evidence_and_recent_principals_exempt() -> None:
    evidence, _ = BREAKS["no_inactive_principals"](compliant_evidence("PCI-DSS"), get_standard("PCI-DSS"))
    result = control(report_for(evidence, "PCI-DSS"), "no_inactive_principals")
    assert result.evidence["inactive"] == 1 and result.evidence["inactiveDays"] == 90
    # Created 10 days ago: cannot have been idle for 90 days; disabled: not a risk.
    fresh = [dataclasses.replace(p, created_at=NOW - timedelta(days=10)) if p.principal_id == "carol" else p
             for p in evidence.principals]
    assert control(report_for(dataclasses.replace(evidence, principals=fresh), "PCI-DSS"),
                   "no_inactive_principals").status is Outcome.PASS
    disabled = [dataclasses.replace(p, disabled=True) if p.principal_id == "carol" else p for p in evidence.principals]
    assert control(report_for(dataclasses.replace(evidence, principals=disabled), "PCI-DSS"),
                   "no_inactive_principals").status is Outcome.PASS


def test_root_changes_fail_sox_but_root_administration_and_reads_do_not() -> None:
    evidence = compliant_evidence("SOX")
    harmless = [EventFact(ts(NOW - timedelta(hours=2), 90), "root", "principal_create", "success", None),
                EventFact(ts(NOW - timedelta(hours=2), 91), "root", "secret_read", "success", "SOX/payments-key"),
                EventFact(ts(NOW - timedelta(hours=2), 92), "root", "secret_store", "denied", "SOX/payments-key")]
    assert report_for(dataclasses.replace(evidence, events=[*evidence.events, *harmless]), "SOX").status.value \
        == "compliant"
    for action in ("secret_store", "secret_rollback", "secret_delete"):
        change = EventFact(ts(NOW - timedelta(hours=1), 93), "root", action, "success", "SOX/db-password")
        result = control(report_for(dataclasses.replace(evidence, events=[*evidence.events, change]), "SOX"),
                         "attributable_changes")
        assert result.status is Outcome.FAIL and result.evidence["byRoot"] == 1
        assert result.findings[0].subject == "root" and action in result.findings[0].detail


def test_change_by_an_unknown_actor_is_not_attributable() -> None:
    evidence = compliant_evidence("HIPAA")
    change = EventFact(ts(NOW - timedelta(hours=1), 94), "shared-ops", "secret_rollback", "success",
                       "HIPAA/payments-key")
    result = control(report_for(dataclasses.replace(evidence, events=[*evidence.events, change]), "HIPAA"),
                     "attributable_changes")
    assert result.evidence["byUnknownActors"] == 1 and "not a known principal" in result.findings[0].detail


def test_retention_shorter_than_each_standards_minimum() -> None:
    for standard, minimum in (("PCI-DSS", 365), ("HIPAA", 2190), ("SOX", 2555)):
        evidence = compliant_evidence(standard)
        just_enough = dataclasses.replace(evidence, object_lock=ObjectLockFacts("b", True, "COMPLIANCE", minimum))
        just_enough = dataclasses.replace(just_enough, newest_digest=None)
        assert control(report_for(just_enough, standard), "audit_retention").status is Outcome.PASS
        short = dataclasses.replace(just_enough, object_lock=ObjectLockFacts("b", True, "COMPLIANCE", minimum - 1))
        result = control(report_for(short, standard), "audit_retention")
        assert result.status is Outcome.FAIL
        assert result.evidence["requiredDays"] == minimum and result.evidence["defaultRetentionDays"] == minimum - 1


def test_retention_needs_compliance_mode_and_a_locked_newest_digest() -> None:
    evidence = compliant_evidence("PCI-DSS")
    governance = dataclasses.replace(evidence, object_lock=ObjectLockFacts("b", True, "GOVERNANCE", 3000))
    assert "not COMPLIANCE" in control(report_for(governance, "PCI-DSS"), "audit_retention").summary
    no_lock = dataclasses.replace(evidence, object_lock=ObjectLockFacts("b", problem="Object Lock is not configured "
                                                                                      "on the bucket"))
    assert control(report_for(no_lock, "PCI-DSS"), "audit_retention").status is Outcome.FAIL
    digest = dataclasses.replace(evidence.newest_digest, retain_until=NOW + timedelta(days=30))  # type: ignore[type-var]
    short_digest = dataclasses.replace(evidence, newest_digest=digest)
    result = control(report_for(short_digest, "PCI-DSS"), "audit_retention")
    assert result.status is Outcome.FAIL and result.evidence["newestDigestRetentionDays"] == 30


def test_retention_does_not_apply_to_gdpr() -> None:
    assert "audit_retention" not in {c.control_id for c in get_standard("GDPR").controls}


def test_tampered_audit_log_lists_verify_problems() -> None:
    evidence, problem = BREAKS["audit_integrity"](compliant_evidence("GDPR"), get_standard("GDPR"))
    result = control(report_for(evidence, "GDPR"), "audit_integrity")
    assert result.evidence["ok"] is False and result.evidence["problems"] == 2
    assert result.findings[0].detail == problem


def test_verify_not_installed_is_not_applicable() -> None:
    evidence = dataclasses.replace(compliant_evidence("PCI-DSS"), verify=None)
    assert control(report_for(evidence, "PCI-DSS"), "audit_integrity").status is Outcome.NOT_APPLICABLE


def test_overdue_erasure_fails_crypto_shredding() -> None:
    evidence = compliant_evidence("GDPR")
    pending = [dataclasses.replace(s, deletion={"deleted_at": (NOW - timedelta(days=40)).isoformat(),
                                                "destroy_after": (NOW - timedelta(days=10)).isoformat()})
               if s.secret_id == "GDPR/app-config" else s for s in evidence.secrets]
    result = control(report_for(dataclasses.replace(evidence, secrets=pending), "GDPR"), "crypto_shredding")
    assert result.status is Outcome.FAIL and result.evidence["erasureOverdue"] == 1
    assert "erasure was due" in result.findings[0].detail
    compliant = control(report_for(evidence, "GDPR"), "crypto_shredding")
    assert compliant.evidence["destroyedSecrets"] == 1 and compliant.evidence["destroyedVersions"] == 2


def test_records_of_processing_group_who_did_what_to_which_secret() -> None:
    report = report_for(compliant_evidence("GDPR"), "GDPR")
    records = {(r.actor, r.secret_id, r.action): (r.count, r.denied, r.actor_type)
               for r in report.records_of_processing or []}
    assert records[("backend", "GDPR/signing-key", "secret_read")] == (1, 1, "service_account")
    assert records[("alice", "GDPR/payments-key", "secret_store")] == (1, 0, "user")
    assert not any(secret_id.startswith("untagged/") for _a, secret_id, _x in records)
    assert report_for(compliant_evidence("SOX"), "SOX").records_of_processing is None


# --- scope, status and masking ----------------------------------------------------------------------------


def test_untagged_vault_puts_every_secret_in_scope() -> None:
    evidence = compliant_evidence("PCI-DSS")
    untagged = [dataclasses.replace(s, compliance=()) for s in evidence.secrets]
    report = report_for(dataclasses.replace(evidence, secrets=untagged), "PCI-DSS")
    assert report.scope.rule == "all" and report.total_secrets == 5
    # The legacy secret is now in scope: 400 days unrotated, granted to '*', no MFA, changed by root.
    assert failed(report) == ["rotation", "no_wildcard_grants", "mfa_required", "attributable_changes"]
    assert control(report, "no_wildcard_grants").findings[0].subject == "untagged/legacy"


def test_tagging_is_case_insensitive_and_scopes_per_standard() -> None:
    evidence = compliant_evidence("PCI-DSS")
    other = secret("HIPAA/patients-db", "hipaa", stored=NOW - timedelta(days=400), constraints={})
    lowered = [dataclasses.replace(s, compliance=("pci_dss",)) if s.compliance else s for s in evidence.secrets]
    report = report_for(dataclasses.replace(evidence, secrets=[*lowered, other]), "PCI-DSS")
    assert report.scope.rule == "tagged" and report.status.value == "compliant" and report.total_secrets == 4


def test_access_violations_are_counted_but_do_not_fail_a_control() -> None:
    evidence = compliant_evidence("PCI-DSS")
    denials = [EventFact(ts(NOW - timedelta(hours=n), 200 + n), "mallory", "secret_read", "denied",
                         "PCI-DSS/payments-key") for n in range(1, 4)]
    evidence = dataclasses.replace(evidence, events=[*evidence.events, *denials])
    report = report_for(evidence, "PCI-DSS")
    assert report.access_violations == 4 and report.status.value == "compliant"


def test_masked_ids_never_show_a_secret_id() -> None:
    evidence, _ = BREAKS["mfa_required"](compliant_evidence("GDPR"), get_standard("GDPR"))
    evidence = dataclasses.replace(evidence, show=digest_masker(b"k"))
    report = report_for(evidence, "GDPR", include_secrets=True)
    text = report.model_dump_json()
    assert "GDPR/" not in text
    assert all(r.secret_id.startswith("id-") for r in report.records_of_processing or [])
    assert all(s.secret_id.startswith("id-") for s in report.secrets or [])


def test_no_secret_in_scope_makes_secret_controls_not_applicable() -> None:
    evidence = dataclasses.replace(compliant_evidence("PCI-DSS"), secrets=[])
    report = report_for(evidence, "PCI-DSS")
    not_applicable = {c.control_id for c in report.controls if c.status is Outcome.NOT_APPLICABLE}
    assert {"encryption_at_rest", "rotation", "no_wildcard_grants", "mfa_required"} <= not_applicable
    assert report.status.value == "compliant" and report.total_secrets == 0
