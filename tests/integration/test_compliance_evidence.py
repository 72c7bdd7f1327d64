"""Evidence read from real storage (moto): a compliant isolated vault, then stored facts broken one at a
time by writing items, events and S3 objects directly, and the report fails exactly that control.

What only real storage shows: the envelope check reads the item as DynamoDB returns it, ``rotated_at``
and grants come from the META item, the last use of a principal from the ``by_actor`` index, the
retention from the bucket's Object Lock configuration and the newest digest, and ``audit verify``
finds a segment altered in S3.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.audit.events import GENESIS_HASH, Action, AuditEvent, Status
from chalicelib.audit.sealer import SEGMENT_PREFIX
from chalicelib.audit.stream import event_item
from chalicelib.aws import client
from chalicelib.clock import isoformat
from chalicelib.compliance.report import ComplianceReport
from chalicelib.vault.storage import secret_pk, to_attributes, version_sk
from tests.integration.test_audit_support import batch_put, registry_item
from tests.integration.test_compliance_support import READER, WRITER, IsolatedVault


@pytest.fixture(scope="module")
def vault(local_aws: str) -> IsolatedVault:
    vault = IsolatedVault.create()
    vault.add_principals(WRITER, READER)
    vault.add_secrets(20, "PCI-DSS")
    vault.add_reads(200, over=timedelta(days=1))
    vault.seal()
    return vault


def failed(report: ComplianceReport) -> list[str]:
    return [c.control_id for c in report.controls if c.status.value == "fail"]


def control(report: ComplianceReport, control_id: str) -> Any:
    return next(c for c in report.controls if c.control_id == control_id)


def key(secret_id: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": secret_pk(secret_id)}, "sk": {"S": sk}}


def update(vault: IsolatedVault, secret_id: str, sk: str, expression: str, **values: Any) -> None:
    kwargs: dict[str, Any] = {"TableName": vault.secrets_table, "Key": key(secret_id, sk),
                              "UpdateExpression": expression}
    names = {k: v for k, v in values.items() if k.startswith("#")}
    attributes = {k: v for k, v in values.items() if k.startswith(":")}
    if names:
        kwargs["ExpressionAttributeNames"] = names
    if attributes:
        kwargs["ExpressionAttributeValues"] = attributes
    client("dynamodb").update_item(**kwargs)


@pytest.fixture
def restored(vault: IsolatedVault) -> Iterator[None]:
    """Put back the first secret's items after a test that changed them."""
    dynamodb = client("dynamodb")
    secret_id = vault.secret_ids[0]
    saved = [dynamodb.get_item(TableName=vault.secrets_table, Key=key(secret_id, sk))["Item"]
             for sk in ("META", version_sk(1))]
    yield
    batch_put(vault.secrets_table, saved)


def test_the_isolated_vault_is_compliant(vault: IsolatedVault) -> None:
    report = vault.report("PCI-DSS")
    assert report.status.value == "compliant", [(v.control_id, v.summary) for v in report.violations]
    integrity = control(report, "audit_integrity")
    assert integrity.evidence["digests"] >= 1 and integrity.evidence["events"] == 200
    retention = control(report, "audit_retention")
    assert retention.evidence["defaultRetentionDays"] == 2555
    assert retention.evidence["newestDigestRetentionDays"] >= 2555
    assert control(report, "encryption_at_rest").evidence["envelopesChecked"] == 40


def test_plaintext_envelope_written_directly(vault: IsolatedVault, restored: None) -> None:
    secret_id = vault.secret_ids[0]
    update(vault, secret_id, version_sk(1), "SET envelope = :text", **{":text": {"S": "sk_live_in_the_clear"}})
    report = vault.report("PCI-DSS")
    assert failed(report) == ["encryption_at_rest"]
    finding = control(report, "encryption_at_rest").findings[0]
    assert (finding.subject, finding.detail) == (
        f"{secret_id} version 1", "PLAINTEXT-LOOKING: the envelope is stored as text, not as an encrypted map")


def test_wrong_key_provider_and_short_nonce_on_the_meta_copy(vault: IsolatedVault, restored: None) -> None:
    secret_id = vault.secret_ids[0]
    update(vault, secret_id, "META", "SET #c.kid = :kid, #c.iv = :iv", **{
        "#c": "current", ":kid": {"S": "local:dev-key"}, ":iv": {"B": b"12345678"}})
    report = vault.report("PCI-DSS")
    assert failed(report) == ["encryption_at_rest"]
    details = {f.detail for f in control(report, "encryption_at_rest").findings}
    assert details == {"iv is 8 bytes, expected 12",
                       "kid names key provider 'local', which this deployment does not read with (kms)"}


def test_overdue_rotation_from_the_stored_rotated_at(vault: IsolatedVault, restored: None) -> None:
    secret_id = vault.secret_ids[0]
    long_ago = isoformat(vault.now - timedelta(days=100))
    update(vault, secret_id, "META", "SET rotated_at = :t", **{":t": {"S": long_ago}})
    report = vault.report("PCI-DSS")
    assert failed(report) == ["rotation"]
    result = control(report, "rotation")
    assert result.evidence["overdue"] == 1 and result.findings[0].subject == secret_id
    assert "(100 days ago); limit 90 days" in result.findings[0].detail


def test_wildcard_grant_in_the_stored_access_map(vault: IsolatedVault, restored: None) -> None:
    secret_id = vault.secret_ids[0]
    update(vault, secret_id, "META", "SET #a.#star = :p", **{"#a": "access", "#star": "*",
                                                             ":p": {"L": [{"S": "read"}]}})
    report = vault.report("PCI-DSS")
    assert failed(report) == ["no_wildcard_grants"]
    assert control(report, "no_wildcard_grants").findings[0].subject == secret_id


def test_mfa_requirement_removed(vault: IsolatedVault, restored: None) -> None:
    secret_id = vault.secret_ids[0]
    update(vault, secret_id, "META", "REMOVE #c.require_mfa", **{"#c": "constraints"})
    report = vault.report("PCI-DSS")
    assert failed(report) == ["mfa_required"]
    assert [f.subject for f in control(report, "mfa_required").findings] == [secret_id]


def test_inactive_principal_found_through_the_actor_index(vault: IsolatedVault) -> None:
    """``carol`` (idle since creation) fails the control; ``dave`` acted 30 days ago (outside the
    period, inside the 90-day window): only the ``by_actor`` Query can know."""
    created = vault.now - timedelta(days=200)
    items = [{"pk": {"S": "PRINCIPALS"}, "sk": {"S": p}, **to_attributes({
        "principal_id": p, "type": "user", "created_at": created, "created_by": "root"})} for p in ("carol", "dave")]
    batch_put(vault.secrets_table, items)
    stream = f"20260101T000000-{'d' * 16}"
    event = AuditEvent(action=Action.PRINCIPAL_READ, actor="dave", actor_type="user", status=Status.SUCCESS,
                       event_id="evt_dave", timestamp=isoformat(vault.now - timedelta(days=30)), stream_id=stream,
                       seq=1, prev_hash=GENESIS_HASH)
    batch_put(vault.audit_table, [registry_item(stream, 1), event_item(event.model_copy(
        update={"hash": event.computed_hash()}))])
    try:
        report = vault.report("PCI-DSS")
        assert failed(report) == ["no_inactive_principals"]
        result = control(report, "no_inactive_principals")
        assert [f.subject for f in result.findings] == ["carol"]
        assert result.evidence["olderThanWindow"] == 2
    finally:
        batch_disable(vault, "carol", "dave", created=created)


def batch_disable(vault: IsolatedVault, *principals: str, created: Any) -> None:
    batch_put(vault.secrets_table, [{"pk": {"S": "PRINCIPALS"}, "sk": {"S": p}, **to_attributes({
        "principal_id": p, "type": "user", "created_at": created, "created_by": "root", "disabled": True})}
        for p in principals])


def test_tampered_segment_fails_audit_integrity_only(vault: IsolatedVault) -> None:
    segment = vault.log.keys(SEGMENT_PREFIX)[0]
    original = vault.log.get(segment)
    lines = original.decode().splitlines()
    lines[3] = lines[3].replace(READER, "someone-else")
    vault.log.put_new_version(segment, ("\n".join(lines) + "\n").encode())
    try:
        report = vault.report("HIPAA")
        assert failed(report) == ["audit_integrity"]
        problems = [f.detail for f in control(report, "audit_integrity").findings]
        assert any(p.startswith(f"segment {segment} modified") for p in problems), problems
    finally:
        vault.log.put_new_version(segment, original)
    assert vault.report("HIPAA").status.value == "compliant"


def test_root_change_recorded_in_the_audit_table(vault: IsolatedVault) -> None:
    """Runs after the others: the event stays in this vault's audit table."""
    stream = f"20260102T000000-{'e' * 16}"
    event = AuditEvent(action=Action.SECRET_STORE, actor="root", actor_type="user", status=Status.SUCCESS,
                       secret_id=vault.secret_ids[1], version=2, event_id="evt_root",
                       timestamp=isoformat(vault.now - timedelta(seconds=30)), stream_id=stream, seq=1,
                       prev_hash=GENESIS_HASH)
    batch_put(vault.audit_table, [registry_item(stream, 2), event_item(event.model_copy(
        update={"hash": event.computed_hash()}))])
    report = vault.report("SOX")
    assert failed(report) == ["attributable_changes"]
    finding = control(report, "attributable_changes").findings[0]
    assert finding.subject == "root" and f"secret_store of {vault.secret_ids[1]}" in finding.detail


def test_retention_too_short_for_every_standard(local_aws: str) -> None:
    short = IsolatedVault.create(retention_days=30)
    short.add_principals(WRITER, READER)
    short.add_secrets(3, "PCI-DSS", compliance=["PCI-DSS", "HIPAA", "SOX", "GDPR"])
    short.add_reads(20, over=timedelta(hours=6))
    short.seal()
    for standard, required in (("PCI-DSS", 365), ("HIPAA", 2190), ("SOX", 2555)):
        report = short.report(standard)
        assert failed(report) == ["audit_retention"], standard
        evidence = control(report, "audit_retention").evidence
        assert (evidence["defaultRetentionDays"], evidence["requiredDays"], evidence["mode"]) == (
            30, required, "COMPLIANCE")
        assert evidence["newestDigestRetentionDays"] == 30
    assert short.report("GDPR").status.value == "compliant"
