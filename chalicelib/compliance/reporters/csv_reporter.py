"""The report as CSV: one header, one row per line of the report, a ``section`` column saying what it is.

Sections, in order: ``summary`` (one row per figure: ``field``, ``value``), ``control`` (one row per
control), ``finding`` (one row per finding of a control), ``record`` (GDPR records of processing:
who did what to which secret, how often, first and last time), ``secret`` (the inventory, with
``includeSecrets``). Cells that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, tab or CR) are prefixed with ``'``.

Example::

    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    [r["control_id"] for r in rows if r["section"] == "control" and r["status"] == "fail"]
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from chalicelib.compliance.report import ComplianceReport

COLUMNS = ("section", "control_id", "requirement", "title", "status", "subject", "detail", "remediation", "evidence",
           "field", "value", "actor", "actor_type", "secret_id", "action", "count", "denied", "first_at", "last_at")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def to_csv(report: ComplianceReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\r\n")
    writer.writeheader()
    for row in rows(report):
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return out.getvalue()


def rows(report: ComplianceReport) -> Iterator[dict[str, Any]]:
    yield from _summary(report)
    for control in report.controls:
        yield {"section": "control", "control_id": control.control_id, "requirement": control.requirement,
               "title": control.title, "status": control.status.value, "detail": control.summary,
               "remediation": control.remediation or "",
               "evidence": json.dumps(control.evidence, sort_keys=True, separators=(",", ":"))}
        for finding in control.findings:
            yield {"section": "finding", "control_id": control.control_id, "requirement": control.requirement,
                   "status": control.status.value, "subject": finding.subject, "detail": finding.detail,
                   "remediation": control.remediation or ""}
    for record in report.records_of_processing or []:
        yield {"section": "record", "actor": record.actor, "actor_type": record.actor_type,
               "secret_id": record.secret_id, "action": record.action, "count": record.count,
               "denied": record.denied, "first_at": record.first_at, "last_at": record.last_at}
    for secret in report.secrets or []:
        yield {"section": "secret", "secret_id": secret.secret_id,
               "status": "encrypted" if secret.encrypted else "not encrypted", "detail": secret.state,
               "evidence": json.dumps(secret.model_dump(mode="json", by_alias=True, exclude={"secret_id"}),
                                      sort_keys=True, separators=(",", ":"))}


def _summary(report: ComplianceReport) -> Iterator[dict[str, Any]]:
    figures = {"standard": report.standard, "title": report.title, "period": report.period,
               "periodType": report.period_type, "start": report.start.isoformat(), "end": report.end.isoformat(),
               "generatedAt": report.generated_at.isoformat(), "generatedBy": report.generated_by or "",
               "scope": report.scope.description, "totalSecrets": report.total_secrets,
               "encrypted": report.encrypted, "rotatedSecrets": report.rotated_secrets,
               "accessViolations": report.access_violations, "status": report.status.value,
               "controlsPassed": report.summary.passed, "controlsFailed": report.summary.failed,
               "controlsNotApplicable": report.summary.not_applicable}
    for name, value in figures.items():
        yield {"section": "summary", "field": name, "value": value}


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value
