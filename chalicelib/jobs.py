"""Scheduled jobs, called by the Chalice scheduled functions in app.py and by the local timer.

Each job imports its module lazily, so a cold start pays only for the job that runs.
"""

from __future__ import annotations

from chalicelib.logging import logger


def purge_deleted_secrets() -> dict[str, object]:
    """Destroy (crypto-shred) secrets whose recovery window has passed."""
    from chalicelib.vault.service import get_vault_service

    purged = get_vault_service().purge_due()
    logger.info("purged deleted secrets", extra={"count": len(purged)})
    return {"purged": purged}


def seal_audit_log() -> dict[str, object]:
    """Copy closed audit segments to S3 Object Lock and write a signed digest."""
    try:
        from chalicelib.audit.sealer import seal_all
    except ImportError:
        return {"sealed": 0, "skipped": "audit sealer not installed"}
    return dict(seal_all())


def run_rotation_scheduler() -> dict[str, object]:
    """Start due rotations, advance rollouts, retire old versions, resume interrupted runs."""
    try:
        from chalicelib.rotation.scheduler import tick
    except ImportError:
        return {"skipped": "rotation scheduler not installed"}
    return dict(tick())


def monthly_compliance_reports() -> dict[str, object]:
    """Write last month's report for each configured standard to the audit bucket."""
    try:
        from chalicelib.compliance.scheduled import monthly_reports
    except ImportError:
        return {"skipped": "compliance reports not installed"}
    return dict(monthly_reports())
