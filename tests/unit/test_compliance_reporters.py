"""JSON, CSV and PDF renderings of a report: same facts, no values, PDF that opens and renders."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from chalicelib.compliance.report import ComplianceReport
from chalicelib.compliance.reporters import CONTENT_TYPES, filename, render
from chalicelib.compliance.reporters.csv_reporter import to_csv
from chalicelib.compliance.validators import get_standard
from tests.unit.test_compliance_support import BREAKS, compliant_evidence, report_for


def broken_gdpr_report() -> ComplianceReport:
    evidence, _ = BREAKS["encryption_at_rest"](compliant_evidence("GDPR"), get_standard("GDPR"))
    return report_for(evidence, "GDPR", include_secrets=True)


def test_json_has_the_spec_fields_in_camel_case() -> None:
    body, content_type = render(report_for(compliant_evidence("PCI-DSS"), "PCI-DSS"), "json")
    data = json.loads(body)
    assert content_type == "application/json"
    assert {"standard", "period", "totalSecrets", "encrypted", "rotatedSecrets", "accessViolations", "status",
            "violations", "controls"} <= set(data)
    assert (data["standard"], data["period"], data["status"]) == ("PCI-DSS", "2026-03-01 to 2026-03-31", "compliant")
    assert data["controls"][0]["controlId"] == "encryption_at_rest"
    assert data["controls"][0]["requirement"] == "PCI DSS v4.0.1 Req. 3.6.1.2"


def test_csv_has_one_row_per_control_and_per_finding() -> None:
    report = broken_gdpr_report()
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    controls = [r for r in rows if r["section"] == "control"]
    assert [r["control_id"] for r in controls] == [c.control_id for c in get_standard("GDPR").controls]
    assert {r["control_id"]: r["status"] for r in controls}["encryption_at_rest"] == "fail"
    findings = [r for r in rows if r["section"] == "finding"]
    assert [(r["control_id"], r["subject"]) for r in findings] == [("encryption_at_rest", "GDPR/db-password version 1")]
    assert findings[0]["remediation"]
    summary = {r["field"]: r["value"] for r in rows if r["section"] == "summary"}
    assert (summary["status"], summary["totalSecrets"], summary["encrypted"]) == ("non_compliant", "4", "3")
    records = [r for r in rows if r["section"] == "record"]
    assert ("backend", "GDPR/db-password", "secret_read", "1") in {
        (r["actor"], r["secret_id"], r["action"], r["count"]) for r in records}
    assert len([r for r in rows if r["section"] == "secret"]) == 5


def test_csv_cells_cannot_run_as_formulas() -> None:
    report = report_for(compliant_evidence("GDPR"), "GDPR")
    record = (report.records_of_processing or [])[0].model_copy(update={"actor": "=HYPERLINK(\"http://x\")"})
    text = to_csv(report.model_copy(update={"records_of_processing": [record]}))
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


def test_no_format_carries_a_secret_value() -> None:
    """The broken evidence holds a plaintext value in an envelope; no rendering may repeat it."""
    report = broken_gdpr_report()
    for fmt in ("json", "csv"):
        body, _ = render(report, fmt)
        assert b"correct-horse-battery-staple" not in body
    assert CONTENT_TYPES["pdf"] == "application/pdf" and filename(report, "pdf") == "gdpr-2026-03-01-to-2026-03-31.pdf"


# --- PDF ----------------------------------------------------------------------------------------------------


def _poppler(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"service unavailable: {tool} not installed (apt-get install poppler-utils)")
    return found


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, timeout=60).stdout.decode()


def test_pdf_first_page_renders_as_an_image(tmp_path: Path) -> None:
    from PIL import Image

    pdftoppm = _poppler("pdftoppm")
    for report, colour in ((report_for(compliant_evidence("SOX"), "SOX"), "green"), (broken_gdpr_report(), "red")):
        pdf = tmp_path / f"{colour}.pdf"
        pdf.write_bytes(render(report, "pdf")[0])
        subprocess.run([pdftoppm, "-png", "-r", "50", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                        str(tmp_path / colour)], check=True, timeout=60)
        image = Image.open(tmp_path / f"{colour}.png").convert("RGB")
        assert image.width > 300 and image.height > 400
        colours = image.getcolors(maxcolors=1_000_000) or []
        assert len(colours) > 20  # text, table rules, chart bars: not a blank page
        # The status banner near the top is green when compliant, red otherwise.
        banner = [image.getpixel((x, int(image.height * 0.105))) for x in range(image.width // 4, image.width // 2)]
        red, green, _blue = max(set(banner), key=banner.count)  # type: ignore[misc]
        assert (green > red) if colour == "green" else (red > green), banner[:3]


def test_pdf_text_has_the_summary_the_table_and_the_violations(tmp_path: Path) -> None:
    pdftotext = _poppler("pdftotext")
    pdfinfo = _poppler("pdfinfo")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render(broken_gdpr_report(), "pdf")[0])
    pages = int(next(line.split()[-1] for line in _run(pdfinfo, str(pdf)).splitlines() if line.startswith("Pages:")))
    first = _run(pdftotext, "-f", "1", "-l", "1", "-layout", str(pdf), "-")
    text = " ".join(_run(pdftotext, str(pdf), "-").split())  # table cells wrap over lines
    assert pages >= 2
    assert "GDPR compliance report" in first and "NON-COMPLIANT" in first
    assert "Accesses and rotations" in first and "accesses (3)" in first and "rotations (1)" in first
    for control in get_standard("GDPR").controls:
        assert control.control_id in text and control.requirement in text
    assert text.count("PASS") == 5 and "FAIL" in text
    assert "Violations" in text and "GDPR/db-password version 1" in text and "Remediation" in text
    assert "Records of processing" in text and "Secrets in scope (no values)" in text
    assert "correct-horse-battery-staple" not in text
