"""``GET /compliance/report`` over real HTTP on the shared local stack.

Each test works under its own id prefix (``prefix=``), so the secrets other tests store are out of
its scope. For every standard: a compliant report first, then one stored fact broken through the
API (or, for a plaintext envelope, written directly to the table) and the report fails exactly
that control. Also: who may ask, the audit event, CSV and PDF answers, the CLI, the monthly job.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from chalicelib.aws import client
from chalicelib.cli.main import cli
from chalicelib.vault.storage import secret_pk, version_sk
from tests.integration.helpers import Api, secret_url, unique

VALUE = "sk_live_" + "a1b2c3d4e5f6" * 3
TODAY = datetime.now(UTC).date().isoformat()


@dataclass
class Team:
    root: Api
    alice: Api
    alice_id: str
    alice_token: str


@pytest.fixture(scope="module")
def team(api_server: str, root_token: str) -> Team:
    root = Api(api_server, root_token)
    alice_id, token = root.new_principal(unique("alice"), admin=True)
    return Team(root, Api(api_server, token), alice_id, token)


def store(api: Api, secret_id: str, standard: str, **fields: Any) -> None:
    body = {"type": "api_key", "compliance": [standard], "constraints": {"require_mfa": True}, **fields}
    answer = api.store(secret_id, VALUE, **body)
    assert answer.status_code == 201, answer.text


def report(api: Api, standard: str, start: str, prefix: str, **params: Any) -> httpx.Response:
    return api.get("/compliance/report", standard=standard, period="custom", start=start, end=TODAY, prefix=prefix,
                   **params)


def failed(body: dict[str, Any]) -> list[str]:
    return [c["controlId"] for c in body["controls"] if c["status"] == "fail"]


def control(body: dict[str, Any], control_id: str) -> dict[str, Any]:
    return next(c for c in body["controls"] if c["controlId"] == control_id)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def compliant_state(team: Team, standard: str, *, mfa: bool = True) -> tuple[str, str, list[str]]:
    """Two tagged secrets (MFA-protected unless ``mfa`` is False) stored by a named admin; the audit log sealed."""
    start, prefix = now_iso(), f"{unique('cmp')}/"
    ids = [f"{prefix}payments-key", f"{prefix}db-password"]
    for secret_id in ids:
        store(team.alice, secret_id, standard, **({} if mfa else {"constraints": {}}))
    sealed = team.root.post("/audit/seal")
    assert sealed.status_code == 200, sealed.text
    return start, prefix, ids


def write_plaintext_envelope(secret_id: str) -> None:
    """What the encryption check must catch: a version's ciphertext replaced by a readable value."""
    from chalicelib.config import get_settings

    client("dynamodb").update_item(
        TableName=get_settings().secrets_table,
        Key={"pk": {"S": secret_pk(secret_id)}, "sk": {"S": version_sk(1)}},
        UpdateExpression="SET envelope.ct = :ct",
        ExpressionAttributeValues={":ct": {"B": b"postgres://app:correct-horse-battery-staple@db/app"}})


def break_for(team: Team, standard: str, prefix: str, ids: list[str]) -> tuple[str, str]:
    """One broken fact per standard; returns (control that must fail, what its finding must name).

    The breaks leave nothing behind that other tests could trip on: the '*' grant is a prefix policy
    on this test's prefix (deleted afterwards), the plaintext envelope is destroyed afterwards.
    """
    if standard == "PCI-DSS":
        policy = team.root.http.put(f"/policies/{prefix.rstrip('/')}-everyone",
                                    json={"pattern": f"{prefix}*", "allow": {"*": ["read"]}})
        assert policy.status_code in (200, 201), policy.text
        return "no_wildcard_grants", f"prefix policy '{prefix.rstrip('/')}-everyone'"
    if standard == "HIPAA":
        secret_id = f"{prefix}no-mfa"
        store(team.alice, secret_id, standard, constraints={})
        return "mfa_required", secret_id
    if standard == "SOX":
        store(team.root, f"{prefix}by-root", standard)
        return "attributable_changes", "root"
    write_plaintext_envelope(ids[0])
    return "encryption_at_rest", f"{ids[0]} version 1"


def clean_up(team: Team, standard: str, prefix: str, ids: list[str]) -> None:
    if standard == "PCI-DSS":
        team.root.delete(f"/policies/{prefix.rstrip('/')}-everyone")
    if standard == "GDPR":
        assert team.alice.delete(secret_url(ids[0]), force="true").status_code == 200


@pytest.mark.parametrize("standard", ["PCI-DSS", "HIPAA", "SOX", "GDPR"])
def test_compliant_then_one_control_broken(team: Team, standard: str) -> None:
    # GDPR asks no MFA; without it the broken secret can be destroyed afterwards.
    start, prefix, ids = compliant_state(team, standard, mfa=standard != "GDPR")
    answer = report(team.alice, standard, start, prefix)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "compliant", [(v["controlId"], v["summary"]) for v in body["violations"]]
    assert (body["standard"], body["totalSecrets"], body["encrypted"], body["scope"]["rule"]) == (
        standard, 2, 2, "tagged")
    assert {c["status"] for c in body["controls"]} <= {"pass", "not_applicable"}
    assert control(body, "encryption_at_rest")["status"] == "pass"
    assert control(body, "audit_integrity")["status"] == "pass"
    assert body["evidenceReads"]["dynamodb:Query"] > 0 and not any("Scan" in k for k in body["evidenceReads"])

    broken, named = break_for(team, standard, prefix, ids)
    try:
        after = report(team.alice, standard, start, prefix).json()
    finally:
        clean_up(team, standard, prefix, ids)
    assert after["status"] == "non_compliant"
    assert failed(after) == [broken]
    findings = control(after, broken)["findings"]
    assert any(named in f"{f['subject']} {f['detail']}" for f in findings), findings
    assert [v["controlId"] for v in after["violations"]] == [broken]


def test_gdpr_records_and_crypto_shredding_through_the_api(team: Team) -> None:
    start, prefix, ids = compliant_state(team, "GDPR", mfa=False)  # GDPR asks no MFA; destroying needs none here
    destroyed = team.alice.delete(secret_url(ids[1]), force="true")
    assert destroyed.status_code == 200, destroyed.text
    body = report(team.alice, "GDPR", start, prefix).json()
    assert body["status"] == "compliant", body["violations"]
    shredding = control(body, "crypto_shredding")
    assert (shredding["status"], shredding["evidence"]["destroyedSecrets"]) == ("pass", 1)
    records = {(r["actor"], r["secretId"], r["action"]) for r in body["recordsOfProcessing"]}
    assert (team.alice_id, ids[0], "secret_store") in records
    assert (team.alice_id, ids[1], "secret_destroy") in records


def test_only_admins_and_global_auditors_get_reports(team: Team, api_server: str) -> None:
    group = unique("auditors")
    bob_id, bob_token = team.root.new_principal(unique("bob"), groups=[group])
    bob = Api(api_server, bob_token)
    refused = bob.get("/compliance/report", standard="SOX")
    assert refused.status_code == 403
    assert refused.json()["code"] == "access_denied" and "audit:read" in refused.json()["message"]
    # A policy on one prefix is not enough: a report covers the whole vault.
    narrow = team.root.http.put(f"/policies/{group}-narrow", json={"pattern": "prod/*",
                                                                   "allow": {group: ["audit:read"]}})
    assert narrow.status_code in (200, 201), narrow.text
    assert bob.get("/compliance/report", standard="SOX").status_code == 403
    wide = team.root.http.put(f"/policies/{group}", json={"pattern": "*", "allow": {group: ["audit:read"]}})
    assert wide.status_code in (200, 201), wide.text
    try:
        allowed = bob.get("/compliance/report", standard="SOX", prefix=f"{unique('none')}/")
        assert allowed.status_code == 200, allowed.text
    finally:
        team.root.delete(f"/policies/{group}")
        team.root.delete(f"/policies/{group}-narrow")
    trail = team.root.get("/audit", actor=bob_id, action="compliance_report").json()["entries"]
    assert [e["status"] for e in trail] == ["success", "denied", "denied"]
    assert trail[0]["details"]["standard"] == "SOX" and trail[0]["complianceStandards"] == ["SOX"]
    assert trail[-1]["denyReason"] == "permission_denied"


def test_generating_a_report_is_audited(team: Team) -> None:
    start, prefix, _ids = compliant_state(team, "HIPAA")
    assert report(team.alice, "HIPAA", start, prefix, maskIds="true").status_code == 200
    entries = team.root.get("/audit", actor=team.alice_id, action="compliance_report").json()["entries"]
    details = entries[0]["details"]
    assert (details["standard"], details["status"], details["format"], details["maskIds"]) == (
        "HIPAA", "compliant", "json", True)
    assert details["failedControls"] == []


def test_masked_ids_and_bad_requests(team: Team) -> None:
    start, prefix, ids = compliant_state(team, "PCI-DSS")
    masked = report(team.alice, "PCI-DSS", start, prefix, maskIds="true", includeSecrets="true")
    assert masked.status_code == 200
    shown = masked.json()
    assert shown["scope"]["prefix"] == prefix  # the caller's own filter is echoed; no id is
    assert not any(secret_id in masked.text for secret_id in ids)
    assert all(s["secretId"].startswith("id-") for s in shown["secrets"]) and len(shown["secrets"]) == 2
    assert VALUE not in masked.text
    for params, message in (({"standard": "ISO27001"}, "unknown standard"), ({"standard": "SOX", "period": "daily"},
                            "period must be one of"), ({"standard": "SOX", "format": "xlsx"}, "format must be one of"),
                            ({"standard": "SOX", "period": "custom", "start": "2026-01-01"}, "needs start and end")):
        bad = team.alice.get("/compliance/report", **params)
        assert bad.status_code == 400 and message in bad.json()["message"], bad.text


def test_csv_and_pdf_answers(team: Team, tmp_path: Path) -> None:
    start, prefix, _ids = compliant_state(team, "SOX")
    params = {"standard": "SOX", "period": "custom", "start": start, "end": TODAY, "prefix": prefix}
    as_csv = team.alice.get("/compliance/report", format="csv", **params)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {r["control_id"] for r in rows if r["section"] == "control"} >= {"attributable_changes", "audit_integrity"}
    refused = team.alice.http.get("/compliance/report", params={**params, "format": "pdf"},
                                  headers={"Accept": "application/json"})
    assert refused.status_code == 400 and "Accept: application/pdf" in refused.json()["message"]
    as_pdf = team.alice.http.get("/compliance/report", params={**params, "format": "pdf"},
                                 headers={"Accept": "application/pdf"})
    assert as_pdf.status_code == 200, as_pdf.text
    assert as_pdf.headers["content-type"] == "application/pdf"
    assert as_pdf.content.startswith(b"%PDF-") and b"attachment" in as_pdf.headers["content-disposition"].encode()
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("service unavailable: pdftotext not installed (apt-get install poppler-utils)")
    (tmp_path / "sox.pdf").write_bytes(as_pdf.content)
    text = subprocess.run([pdftotext, str(tmp_path / "sox.pdf"), "-"], check=True, capture_output=True,
                          timeout=60).stdout.decode()
    flat = " ".join(text.split())  # table cells wrap over lines
    assert "SOX IT general controls compliance report" in flat and "Status: COMPLIANT" in flat
    assert "attributable_changes" in flat and "SOX ITGC: change management" in flat


def test_cli_writes_the_pdf(team: Team, api_server: str, tmp_path: Path) -> None:
    start, prefix, _ids = compliant_state(team, "PCI-DSS")
    out = tmp_path / "report.pdf"
    common = ["--endpoint-url", api_server, "--token", team.alice_token, "compliance", "report", "--standard",
              "PCI-DSS", "--period", "custom", "--start", start, "--end", TODAY, "--prefix", prefix]
    result = CliRunner().invoke(cli, [*common, "--format", "pdf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-")
    as_json = CliRunner().invoke(cli, [*common, "--fail-on-violation"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["status"] == "compliant"


def test_monthly_job_writes_last_months_reports_once(local_aws: str) -> None:
    from chalicelib.compliance.scheduled import monthly_reports
    from chalicelib.config import get_settings

    settings = get_settings()
    first = monthly_reports()
    assert first["errors"] == {}
    month = first["written"][0].rsplit("/", 1)[-1] if first["written"] else first["existing"][0].rsplit("/", 1)[-1]
    keys = [f"reports/{s}/{month}" for s in ("PCI-DSS", "HIPAA", "SOX", "GDPR")]
    assert sorted(first["written"] + first["existing"]) == sorted(keys)
    again = monthly_reports()
    assert again["written"] == [] and sorted(again["existing"]) == sorted(keys)
    stored = client("s3").get_object(Bucket=settings.audit_bucket, Key=keys[0])
    body = json.loads(stored["Body"].read())
    assert body["standard"] == "PCI-DSS" and body["periodType"] == "monthly" and body["generatedBy"] == "v-secure"
    assert stored.get("ObjectLockMode") == "COMPLIANCE"
    from chalicelib.audit.query import AuditFilters, AuditQuery

    trail = AuditQuery(client("dynamodb"), settings.audit_table).search(
        AuditFilters(actor="v-secure", actions=("compliance_report",)), limit=100).entries
    written = {e.details.get("key") for e in trail}
    assert set(first["written"]) <= written
