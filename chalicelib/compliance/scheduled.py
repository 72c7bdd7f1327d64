"""The monthly compliance job: last month's report for each configured standard, in the audit bucket.

For each standard of ``V_SECURE_COMPLIANCE_STANDARDS`` it writes the JSON report of the previous
calendar month to ``reports/<standard>/<yyyy-mm>.json`` in the audit bucket, where the bucket's
Object Lock default retention keeps it. Writes are create-only (``If-None-Match: *``): a second
run in the same month leaves the first report as it is. Each report is audited
(``compliance_report`` by v-secure). A standard that fails is counted and the others still run.

Example::

    monthly_reports()   # {"written": ["reports/PCI-DSS/2026-01.json", ...], "existing": [], "errors": {}}
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.compliance.model import Period, PeriodKind, previous_month
from chalicelib.errors import DependencyUnavailable, VSecureError
from chalicelib.logging import logger

REPORT_PREFIX = "reports/"


def report_key(standard: str, period: Period) -> str:
    return f"{REPORT_PREFIX}{standard}/{period.start.strftime('%Y-%m')}.json"


def monthly_reports(now: datetime | None = None) -> dict[str, Any]:
    """Write last month's report for each configured standard; returns what happened (never values)."""
    from chalicelib.aws import client
    from chalicelib.compliance.evidence import EvidenceSource
    from chalicelib.compliance.validators import get_standard
    from chalicelib.config import get_settings

    settings = get_settings()
    moment = now or datetime.now(UTC)
    start, end = previous_month(moment)
    period = Period(PeriodKind.MONTHLY, start, end, min(end, moment))
    source = EvidenceSource.from_settings(settings)
    result: dict[str, Any] = {"period": period.label, "written": [], "existing": [], "statuses": {}, "errors": {}}
    for name in settings.compliance_standards:
        try:
            standard = get_standard(name)
            key = report_key(standard.name, period)
            status = _write_one(client("s3"), settings.audit_bucket, key, standard.name, period, source, moment)
        except VSecureError as error:
            result["errors"][name] = error.message
            logger.warning("monthly compliance report failed", extra={"standard": name, "code": error.code})
            continue
        if status is None:
            result["existing"].append(key)
        else:
            result["written"].append(key)
            result["statuses"][standard.name] = status
    logger.info("monthly compliance reports", extra={"written": len(result["written"]),
                                                     "errors": len(result["errors"])})
    return result


def _write_one(s3: Any, bucket: str, key: str, standard: str, period: Period, source: Any,
               now: datetime) -> str | None:
    """Build, store (create-only) and audit one report; None when it was there already."""
    from chalicelib.access_control.context import system_draft
    from chalicelib.audit.events import Action
    from chalicelib.audit.stream import get_audit_writer
    from chalicelib.compliance.report import generate_report
    from chalicelib.compliance.reporters.json_reporter import to_json

    report = generate_report(standard, period, source=source, generated_by="v-secure", now=now)
    body = to_json(report)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", IfNoneMatch="*",
                      ChecksumAlgorithm="SHA256",
                      ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode())
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return None
        raise DependencyUnavailable("s3", f"PutObject {key} failed: {code}") from None
    except BotoCoreError as error:
        raise DependencyUnavailable("s3", f"PutObject {key} failed: {type(error).__name__}") from None
    get_audit_writer().commit(system_draft(Action.COMPLIANCE_REPORT, compliance_standards=[standard], details={
        "standard": standard, "period": period.label, "format": "json", "status": report.status.value,
        "failedControls": [v.control_id for v in report.violations], "key": key}))
    return report.status.value
