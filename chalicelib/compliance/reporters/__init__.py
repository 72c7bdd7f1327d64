"""Report formats: JSON, CSV (one row per control and per finding) and PDF (reportlab, lazily).

Example::

    body, content_type = render(report, "pdf")
"""

from __future__ import annotations

from chalicelib.compliance.report import ComplianceReport
from chalicelib.errors import InvalidRequest

FORMATS = ("json", "csv", "pdf")
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


def render(report: ComplianceReport, fmt: str) -> tuple[bytes, str]:
    """The report in ``fmt`` and its Content-Type."""
    if fmt == "json":
        from chalicelib.compliance.reporters.json_reporter import to_json

        return to_json(report), CONTENT_TYPES["json"]
    if fmt == "csv":
        from chalicelib.compliance.reporters.csv_reporter import to_csv

        return to_csv(report).encode("utf-8"), CONTENT_TYPES["csv"]
    if fmt == "pdf":
        from chalicelib.compliance.reporters.pdf_reporter import to_pdf

        return to_pdf(report), CONTENT_TYPES["pdf"]
    raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}")


def filename(report: ComplianceReport, fmt: str) -> str:
    """``pci-dss-2026-01-01-to-2026-01-31.pdf``."""
    return f"{report.standard.lower()}-{report.period.replace(' ', '-')}.{fmt}"
