"""Compliance routes: ``GET /compliance/report`` in JSON, CSV or PDF.

Making a report needs a global admin or ``audit:read`` on every secret (a prefix policy on
``*`` that grants it): a report describes the whole vault. Every request is audited
(``compliance_report``, with the standard, period, format and the report's status), denials
too, and the event is durable before the report is sent.

A PDF answer is binary (``Content-Type: application/pdf``): the request must accept it
(``Accept: application/pdf`` or ``*/*``), as API Gateway requires for binary media types.

Example::

    GET /compliance/report?standard=PCI-DSS&period=monthly
    GET /compliance/report?standard=GDPR&period=custom&start=2026-01-01&end=2026-03-31&format=csv
    GET /compliance/report?standard=SOX&period=quarterly&format=pdf&maskIds=true   (Accept: application/pdf)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from chalice import Blueprint, Chalice, Response

from chalicelib.access_control.context import Caller
from chalicelib.access_control.gate import require_audit_read
from chalicelib.api.http import current_caller, endpoint, query, query_bool, respond
from chalicelib.api.openapi import register_operations
from chalicelib.audit.events import Action
from chalicelib.audit.stream import get_audit_writer
from chalicelib.compliance.model import parse_period
from chalicelib.compliance.report import ComplianceReport, generate_report
from chalicelib.compliance.reporters import FORMATS, filename, render
from chalicelib.compliance.validators import get_standard
from chalicelib.errors import InvalidRequest

compliance_api = Blueprint(__name__)

PDF = "application/pdf"
_PREFIX = re.compile(r"^[A-Za-z0-9_./-]{1,256}$")
_NO_STORE = {"Cache-Control": "no-store"}


def _allow_pdf(app: Chalice, _options: dict[str, Any]) -> None:
    """PDF answers are binary: API Gateway (and Chalice) must know the media type."""
    if PDF not in app.api.binary_types:
        app.api.binary_types.append(PDF)


# A Blueprint has no public hook into the app's API settings; this runs at register_blueprint.
compliance_api._deferred_registrations.append(_allow_pdf)


@compliance_api.route("/compliance/report", methods=["GET"])
@endpoint()
def compliance_report() -> Response:
    caller = current_caller()
    fmt = (query("format") or "json").lower()
    if fmt not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}")
    standard = get_standard(query("standard"))
    period = parse_period(query("period"), query("start"), query("end"), now=datetime.now(UTC))
    prefix = query("prefix")
    if prefix is not None and not _PREFIX.match(prefix):
        raise InvalidRequest("prefix is 1-256 characters of A-Z a-z 0-9 _ . / -")
    include_secrets, mask_ids = query_bool("includeSecrets"), query_bool("maskIds")
    details: dict[str, Any] = {"standard": standard.name, "period": period.label, "periodType": period.kind.value,
                               "format": fmt, "includeSecrets": include_secrets, "maskIds": mask_ids,
                               **({"prefix": prefix} if prefix else {})}
    _authorize(caller, standard.name, details)
    if fmt == "pdf" and not _accepts_pdf():
        raise InvalidRequest("format=pdf answers application/pdf: send 'Accept: application/pdf'")
    report = generate_report(standard.name, period, prefix=prefix, include_secrets=include_secrets,
                             mask_ids=mask_ids, generated_by=caller.principal_id)
    body, content_type = render(report, fmt) if fmt != "json" else (b"", "application/json")
    _record(caller, standard.name, {**details, "status": report.status.value,
                                    "failedControls": [v.control_id for v in report.violations]})
    if fmt == "json":
        return respond(report, headers=_NO_STORE)
    headers: dict[str, str | list[str]] = {
        "Content-Type": content_type, "Content-Disposition": f'attachment; filename="{filename(report, fmt)}"',
        **_NO_STORE}
    return Response(body=body if fmt == "pdf" else body.decode("utf-8"), status_code=200, headers=headers)


def _accepts_pdf() -> bool:
    accept = (compliance_api.current_request.headers.get("accept") or "").lower()
    return PDF in accept or "*/*" in accept


def _authorize(caller: Caller, standard: str, details: dict[str, Any]) -> None:
    """Global admin, or ``audit:read`` on every secret (a prefix policy on ``*``); a refusal is audited."""
    require_audit_read(caller, Action.COMPLIANCE_REPORT, details=details, compliance_standards=[standard])


def _record(caller: Caller, standard: str, details: dict[str, Any]) -> None:
    """The report's audit event, durable before the report leaves (fail closed)."""
    get_audit_writer().commit(caller.draft(Action.COMPLIANCE_REPORT, compliance_standards=[standard],
                                           details=details))


register_operations([
    ("get", "/compliance/report", "A compliance report (standard=PCI-DSS|HIPAA|SOX|GDPR, "
                                  "period=monthly|quarterly|yearly|custom, start, end, format=json|csv|pdf, "
                                  "includeSecrets, maskIds, prefix)", None, ComplianceReport, 200),
])
