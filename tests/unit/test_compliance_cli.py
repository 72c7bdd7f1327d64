"""``v-secure compliance report`` through click's CliRunner, against an ``httpx.MockTransport``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from chalicelib.cli.context import CliState
from chalicelib.cli.main import cli
from chalicelib.compliance.report import ComplianceReport
from chalicelib.compliance.reporters import render
from chalicelib.compliance.validators import get_standard
from tests.unit.test_compliance_support import BREAKS, compliant_evidence, report_for

COMPLIANT = report_for(compliant_evidence("PCI-DSS"), "PCI-DSS")
BROKEN = report_for(BREAKS["mfa_required"](compliant_evidence("PCI-DSS"), get_standard("PCI-DSS"))[0], "PCI-DSS")


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("V_SECURE_ENDPOINT", "V_SECURE_TOKEN", "V_SECURE_PROFILE", "V_SECURE_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("V_SECURE_CONFIG_DIR", str(tmp_path))


class Api:
    """Answers ``/compliance/report`` like the server: JSON, or the rendered format."""

    def __init__(self, report: ComplianceReport = COMPLIANT, status: int = 200) -> None:
        self.report, self.status = report, status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, json={"code": "access_denied", "message": "compliance reports need "
                                                     "global admin or 'audit:read' on every secret"})
        fmt = request.url.params.get("format", "json")
        if fmt == "json":
            return httpx.Response(200, json=self.report.wire())
        body, content_type = render(self.report, fmt)
        return httpx.Response(200, content=body, headers={"Content-Type": content_type})


def run(api: Api, *args: str) -> Result:
    state = CliState(transport=httpx.MockTransport(api))
    return CliRunner().invoke(cli, ["--endpoint-url", "http://vsecure.test", "--token", "vs_x", *args], obj=state)


def test_json_report_with_the_spec_fields() -> None:
    api = Api()
    result = run(api, "compliance", "report", "--standard", "PCI-DSS", "--period", "quarterly", "--mask-ids")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["standard"], data["status"], data["totalSecrets"]) == ("PCI-DSS", "compliant", 4)
    params = api.requests[0].url.params
    assert (params["standard"], params["period"], params["maskIds"]) == ("PCI-DSS", "quarterly", "true")
    assert "format" not in params


def test_pdf_goes_to_the_out_file_with_a_pdf_accept_header(tmp_path: Path) -> None:
    api = Api()
    out = tmp_path / "report.pdf"
    result = run(api, "compliance", "report", "--standard", "PCI-DSS", "--format", "pdf", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-")
    assert api.requests[0].headers["accept"] == "application/pdf"
    assert api.requests[0].url.params["format"] == "pdf"


def test_pdf_without_out_is_refused_before_any_request() -> None:
    api = Api()
    result = run(api, "compliance", "report", "--standard", "PCI-DSS", "--format", "pdf")
    assert result.exit_code == 2 and "--out" in result.output and api.requests == []


def test_csv_to_stdout_and_custom_period() -> None:
    api = Api(BROKEN)
    result = run(api, "compliance", "report", "--standard", "pci", "--period", "custom", "--start", "2026-03-01",
                 "--end", "2026-03-20", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "control,mfa_required,PCI DSS v4.0.1 Req. 8.4.2" in result.stdout
    params = api.requests[0].url.params
    assert (params["start"], params["end"], params["format"]) == ("2026-03-01", "2026-03-20", "csv")


def test_fail_on_violation_exits_1_when_not_compliant() -> None:
    assert run(Api(BROKEN), "compliance", "report", "--standard", "PCI-DSS", "--fail-on-violation").exit_code == 1
    assert run(Api(), "compliance", "report", "--standard", "PCI-DSS", "--fail-on-violation").exit_code == 0


def test_a_refusal_is_reported_with_a_nonzero_exit() -> None:
    result = run(Api(status=403), "compliance", "report", "--standard", "SOX")
    assert result.exit_code != 0
    assert "audit:read" in result.output
