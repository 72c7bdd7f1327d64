"""The report as PDF (reportlab, imported only when a PDF is asked for).

Page 1 is the summary: the standard, period, status, the spec's figures, and a chart of
accesses and rotations of secrets in scope per day of the period (``reportlab.graphics``). Then
the control table (id, requirement, status, what was found), then each violation with its
findings and remediation, then (GDPR) the records of processing and (with ``includeSecrets``)
the inventory. Long lists are cut in the PDF with a note; the CSV and JSON carry them whole.

Example::

    Path("report.pdf").write_bytes(to_pdf(report))
"""

from __future__ import annotations

import io
import math
from typing import Any
from xml.sax.saxutils import escape

from chalicelib.compliance.model import Outcome, ReportStatus
from chalicelib.compliance.report import ComplianceReport
from chalicelib.errors import DependencyUnavailable

MAX_FINDINGS_SHOWN = 50
MAX_RECORDS_SHOWN = 300
MAX_SECRETS_SHOWN = 500
_STATUS_COLOURS = {Outcome.PASS: "#1e7b34", Outcome.FAIL: "#b3261e", Outcome.NOT_APPLICABLE: "#6b6b6b"}
_STATUS_LABELS = {Outcome.PASS: "PASS", Outcome.FAIL: "FAIL", Outcome.NOT_APPLICABLE: "N/A"}


def to_pdf(report: ComplianceReport) -> bytes:
    """Render ``report``; raises DependencyUnavailable when reportlab is not installed."""
    try:
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.units import mm
        from reportlab.platypus import SimpleDocTemplate
    except ImportError:
        raise DependencyUnavailable("reportlab", "PDF reports need reportlab (pip install 'v-secure[reports]')") \
            from None
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=18 * mm, title=f"{report.title} compliance report {report.period}",
                            author="v-secure", subject=f"{report.standard} {report.status.value}")
    _Builder(report, doc.width).build(doc)
    return buffer.getvalue()


class _Builder:
    def __init__(self, report: ComplianceReport, width: float) -> None:
        from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet

        self.report = report
        self.width = width
        sheet = getSampleStyleSheet()
        self.h1, self.h2, self.body = sheet["Title"], sheet["Heading2"], sheet["BodyText"]
        self.small = ParagraphStyle("small", parent=sheet["BodyText"], fontSize=7.5, leading=9)
        self.cell = ParagraphStyle("cell", parent=sheet["BodyText"], fontSize=8, leading=10)

    def build(self, doc: Any) -> None:
        from reportlab.platypus import PageBreak

        story: list[Any] = [*self._summary(), PageBreak(), *self._controls(), *self._violations()]
        if self.report.records_of_processing is not None:
            story.extend(self._records())
        if self.report.secrets is not None:
            story.extend(self._inventory())
        doc.build(story, onFirstPage=self._footer, onLaterPages=self._footer)

    # --- page 1 -------------------------------------------------------------------------------

    def _summary(self) -> list[Any]:
        from reportlab.lib import colors
        from reportlab.platypus import Paragraph, Spacer, Table, TableStyle

        report = self.report
        compliant = report.status is ReportStatus.COMPLIANT
        status = Table([[f"Status: {'COMPLIANT' if compliant else 'NON-COMPLIANT'}"]], colWidths=[self.width])
        status.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#1e7b34" if compliant else "#b3261e")),
            ("TEXTCOLOR", (0, 0), (-1, -1), colors.white), ("FONTNAME", (0, 0), (-1, -1), "Helvetica-Bold"),
            ("FONTSIZE", (0, 0), (-1, -1), 14), ("ALIGN", (0, 0), (-1, -1), "CENTER"),
            ("TOPPADDING", (0, 0), (-1, -1), 6), ("BOTTOMPADDING", (0, 0), (-1, -1), 8)]))
        figures = [
            ["Standard", report.title], ["Period", f"{report.period} ({report.period_type})"],
            ["Evidence as of", report.as_of.isoformat()],
            ["Generated", f"{report.generated_at.isoformat()} by {report.generated_by or 'v-secure'}"],
            ["Scope", f"{report.scope.description}" + (f", ids starting {report.scope.prefix}"
                                                      if report.scope.prefix else "")],
            ["Total secrets", str(report.total_secrets)], ["Encrypted", str(report.encrypted)],
            ["Rotated secrets", str(report.rotated_secrets)], ["Access violations", str(report.access_violations)],
            ["Controls", f"{report.summary.passed} passed, {report.summary.failed} failed, "
                         f"{report.summary.not_applicable} not applicable"],
        ]
        table = Table([[Paragraph(f"<b>{escape(k)}</b>", self.cell), Paragraph(escape(v), self.cell)]
                       for k, v in figures], colWidths=[40 * self.width / 180, 140 * self.width / 180])
        table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
                                   ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return [Paragraph(escape(f"{report.title} compliance report"), self.h1), status, Spacer(1, 8), table,
                Spacer(1, 10), Paragraph("Accesses and rotations of secrets in scope, per day", self.h2),
                self._chart()]

    def _chart(self) -> Any:
        from reportlab.graphics.charts.barcharts import VerticalBarChart
        from reportlab.graphics.charts.legends import Legend
        from reportlab.graphics.shapes import Drawing, String
        from reportlab.lib import colors

        days = self.report.activity
        drawing = Drawing(self.width, 210)
        chart = VerticalBarChart()
        chart.x, chart.y, chart.width, chart.height = 35, 45, self.width - 50, 140
        chart.data = [[d.accesses for d in days] or [0], [d.rotations for d in days] or [0]]
        step = max(1, len(days) // 12)
        chart.categoryAxis.categoryNames = [d.day[5:] if i % step == 0 else "" for i, d in enumerate(days)] or [""]
        chart.categoryAxis.labels.angle = 45
        chart.categoryAxis.labels.boxAnchor = "ne"
        chart.categoryAxis.labels.fontSize = 6
        chart.valueAxis.valueMin = 0
        highest = max([d.accesses for d in days] + [d.rotations for d in days] + [1])
        chart.valueAxis.valueStep = max(1, math.ceil(highest / 5))
        chart.valueAxis.labels.fontSize = 7
        chart.bars[0].fillColor = colors.HexColor("#2f6db5")
        chart.bars[1].fillColor = colors.HexColor("#e08a1e")
        chart.barSpacing = 0
        chart.groupSpacing = 1 if len(days) > 60 else 3
        legend = Legend()
        legend.x, legend.y = 40, 205
        legend.fontSize = 8
        legend.alignment = "right"
        legend.columnMaximum = 1
        legend.colorNamePairs = [(colors.HexColor("#2f6db5"), f"accesses ({sum(d.accesses for d in days)})"),
                                 (colors.HexColor("#e08a1e"), f"rotations ({sum(d.rotations for d in days)})")]
        drawing.add(chart)
        drawing.add(legend)
        if not any(d.accesses or d.rotations for d in days):
            drawing.add(String(self.width / 2, 110, "no accesses or rotations in the period", textAnchor="middle",
                               fontSize=9, fillColor=colors.HexColor("#6b6b6b")))
        return drawing

    # --- controls and violations --------------------------------------------------------------

    def _controls(self) -> list[Any]:
        from reportlab.platypus import Paragraph

        rows = [[self._head("Control"), self._head("Requirement"), self._head("Status"), self._head("Evidence")]]
        for control in self.report.controls:
            status = (f'<font color="{_STATUS_COLOURS[control.status]}"><b>{_STATUS_LABELS[control.status]}</b>'
                      "</font>")
            rows.append([Paragraph(escape(control.control_id), self.cell),
                         Paragraph(escape(control.requirement), self.cell), Paragraph(status, self.cell),
                         Paragraph(escape(control.summary), self.cell)])
        widths = [self.width * f for f in (0.2, 0.24, 0.09, 0.47)]
        return [Paragraph("Controls", self.h2), self._table(rows, widths)]

    def _violations(self) -> list[Any]:
        from reportlab.platypus import Paragraph, Spacer

        story: list[Any] = []
        failed = [c for c in self.report.controls if c.status is Outcome.FAIL]
        if not failed:
            return [Spacer(1, 8), Paragraph("No violations: every applicable control passed.", self.body)]
        story.append(Paragraph("Violations", self.h2))
        for control in failed:
            story.append(Paragraph(f"<b>{escape(control.control_id)}</b> ({escape(control.requirement)}): "
                                   f"{escape(control.summary)}", self.body))
            if control.remediation:
                story.append(Paragraph(f"<i>Remediation:</i> {escape(control.remediation)}", self.small))
            shown = control.findings[:MAX_FINDINGS_SHOWN]
            if shown:
                rows = [[self._head("Subject"), self._head("Finding")]]
                rows.extend([Paragraph(escape(f.subject), self.cell), Paragraph(escape(f.detail), self.cell)]
                            for f in shown)
                story.append(self._table(rows, [self.width * 0.3, self.width * 0.7]))
            if len(control.findings) > len(shown):
                story.append(Paragraph(f"... and {len(control.findings) - len(shown)} more (see the CSV or JSON "
                                       "report)", self.small))
            story.append(Spacer(1, 6))
        return story

    def _records(self) -> list[Any]:
        from reportlab.platypus import Paragraph

        records = self.report.records_of_processing or []
        rows = [[self._head(h) for h in ("Actor", "Type", "Secret", "Action", "Count", "Refused", "First", "Last")]]
        rows.extend([Paragraph(escape(str(v)), self.cell) for v in (
            r.actor, r.actor_type.replace("_", " "), r.secret_id, r.action.replace("_", " "), r.count, r.denied,
            _minute(r.first_at), _minute(r.last_at))]
            for r in records[:MAX_RECORDS_SHOWN])
        story: list[Any] = [Paragraph("Records of processing (who accessed which secrets)", self.h2)]
        if not records:
            return [*story, Paragraph("No events on secrets in scope in the period.", self.body)]
        story.append(self._table(rows, [self.width * f for f in (0.13, 0.11, 0.2, 0.14, 0.07, 0.08, 0.135, 0.135)]))
        if len(records) > MAX_RECORDS_SHOWN:
            story.append(Paragraph(f"... and {len(records) - MAX_RECORDS_SHOWN} more records (see the CSV report)",
                                   self.small))
        return story

    def _inventory(self) -> list[Any]:
        from reportlab.platypus import Paragraph

        secrets = self.report.secrets or []
        rows = [[self._head(h) for h in ("Secret", "Type", "State", "Envelopes", "Encrypted", "Last rotated",
                                         "MFA")]]
        rows.extend([Paragraph(escape(str(v)), self.cell) for v in (
            s.secret_id, s.type.replace("_", " "), s.state, s.envelopes_checked,
            "-" if s.state == "destroyed" else "yes" if s.encrypted else "NO",
            _minute(s.last_rotated_at.isoformat()) if s.last_rotated_at else "-", "yes" if s.requires_mfa else "no")]
            for s in secrets[:MAX_SECRETS_SHOWN])
        story: list[Any] = [Paragraph("Secrets in scope (no values)", self.h2),
                            self._table(rows, [self.width * f for f in (0.28, 0.14, 0.1, 0.1, 0.1, 0.2, 0.08)])]
        if len(secrets) > MAX_SECRETS_SHOWN:
            story.append(Paragraph(f"... and {len(secrets) - MAX_SECRETS_SHOWN} more (see the CSV report)",
                                   self.small))
        return story

    # --- building blocks ----------------------------------------------------------------------

    def _head(self, text: str) -> Any:
        from reportlab.platypus import Paragraph

        return Paragraph(f"<b>{escape(text)}</b>", self.cell)

    def _table(self, rows: list[list[Any]], widths: list[float]) -> Any:
        from reportlab.lib import colors
        from reportlab.platypus import Table, TableStyle

        table = Table(rows, colWidths=widths, repeatRows=1)
        table.setStyle(TableStyle([
            ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf3")),
            ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return table

    def _footer(self, canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColorRGB(0.4, 0.4, 0.4)
        canvas.drawString(doc.leftMargin, 10 * 2.835, f"v-secure · {self.report.standard} · {self.report.period} · "
                                                      f"{self.report.status.value}")
        canvas.drawRightString(doc.leftMargin + doc.width, 10 * 2.835, f"page {doc.page}")
        canvas.restoreState()


def _minute(moment: str) -> str:
    """``2026-03-17T12:00:00.000000Z`` -> ``2026-03-17 12:00``."""
    return moment[:16].replace("T", " ")
