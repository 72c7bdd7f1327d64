"""The rotation scheduler: ``tick()`` is the scheduled job (``@app.schedule`` and the local timer).

Each tick:

1. drives the active runs that need attention (one Query on the ``scheduled`` index,
   ``sched_pk = "ROTATION_RUN"``): advances rollouts, finishes them, retires old values after
   ``retireAfter``, retries failed steps after their backoff, and resumes runs whose worker
   died (their lease expired);
2. at most once per ``V_SECURE_ROTATION_CHECK_INTERVAL`` (a conditional write on a ``SYSTEM``
   item elects one scheduler), starts the rotations that are due (``sched_pk = "ROTATION"``);
3. delivers the notifications left in the outbox (one Query on ``pk = "OUTBOX"`` for the items
   older than ``notice_grace``, at most ``limit``): each is published, then deleted
   (:mod:`~chalicelib.rotation.outbox`). ``notices`` counts the ones published (absent when 0,
   like every count).

Two schedulers (and a manual rotate) racing for a secret start one run: the start is a
conditional write of the secret's META item, and every step after it is guarded by the run's
lease and ``seq``. ``V_SECURE_ROTATION_ENABLED=false`` turns the job off.

Example::

    counts = tick()   # {"in_progress": 2, "started": 1, "checked": 1, "notices": 0, ...}
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from chalicelib.clock import isoformat
from chalicelib.config import get_settings
from chalicelib.errors import DependencyUnavailable, RotationInProgress, SecretDeleted, SecretNotFound, VSecureError
from chalicelib.logging import logger
from chalicelib.rotation import outbox
from chalicelib.rotation.config import ROTATION
from chalicelib.rotation.engine import LeaseLost, NotDue, RotationEngine, RunBusy, get_rotation_engine
from chalicelib.rotation.runs import RunStatus

SCHEDULER_SLOT = "ROTATION_SCHEDULER"


def tick(*, engine: RotationEngine | None = None, now: datetime | None = None, limit: int = 100,
         respect_interval: bool = True, notice_grace: timedelta = outbox.GRACE) -> dict[str, Any]:
    """Run one scheduler pass; returns counts (never values)."""
    settings = get_settings()
    if not settings.rotation_enabled:
        return {"skipped": "rotation is disabled (V_SECURE_ROTATION_ENABLED=false)"}
    engine = engine or get_rotation_engine()
    moment = now or engine.clock.now()
    counts: Counter[str] = Counter()
    for secret_id, run_id in engine.runs.due(moment, limit):
        counts[_drive(engine, secret_id, run_id)] += 1
    if not respect_interval or claim_check(engine, moment, settings.rotation_check_seconds):
        counts["checked"] += 1
        for record in engine.repo.scheduled(ROTATION, isoformat(moment), limit):
            counts[_start(engine, record.secret_id)] += 1
    notices = _deliver_notices(engine, moment, notice_grace, limit)
    if notices:
        counts["notices"] = notices
    result: dict[str, Any] = dict(counts)
    logger.info("rotation scheduler", extra={"counts": result})
    return result


def _deliver_notices(engine: RotationEngine, now: datetime, grace: timedelta, limit: int) -> int:
    """Publish what the outbox still holds from before ``now - grace``; how many were published."""
    try:
        return outbox.drain(engine.notifier, engine.outbox, now, grace=grace, limit=limit)
    except DependencyUnavailable as error:
        logger.warning("outbox not delivered", extra={"error": error.message})
        return 0


def _drive(engine: RotationEngine, secret_id: str, run_id: str) -> str:
    try:
        run = engine.resume(secret_id, run_id)
    except RunBusy:
        return "busy"
    except Exception as error:
        logger.warning("rotation run not driven", extra={"secret_id": secret_id, "rotation_id": run_id,
                                                         "error": getattr(error, "code", type(error).__name__)})
        return "errors"
    if run is None:
        return "missing"
    return _outcome(run.status, run.active)


def _start(engine: RotationEngine, secret_id: str) -> str:
    try:
        run = engine.start(secret_id, trigger="scheduled")
    except (RotationInProgress, RunBusy, LeaseLost):
        return "busy"
    except (NotDue, SecretNotFound, SecretDeleted):
        return "not_due"
    except Exception as error:
        logger.warning("rotation not started", extra={"secret_id": secret_id,
                                                      "error": getattr(error, "code", type(error).__name__)})
        return "errors"
    try:
        run = engine.drive(run)
    except (RunBusy, VSecureError) as error:
        logger.warning("rotation started, not driven", extra={"secret_id": secret_id, "rotation_id": run.run_id,
                                                              "error": type(error).__name__})
        return "started"
    return "started" if run.status is not RunStatus.FAILED else "failed"


def _outcome(status: RunStatus, active: bool) -> str:
    if status is RunStatus.FAILED:
        return "failed"
    if status is RunStatus.ROLLED_BACK:
        return "rolled_back"
    if status is RunStatus.COMPLETED:
        return "retiring" if active else "completed"
    return "in_progress"


def claim_check(engine: RotationEngine, now: datetime, interval_seconds: int) -> bool:
    """True for the one scheduler that may look for due secrets now (once per check interval)."""
    return engine.runs.claim_slot(SCHEDULER_SLOT, now, timedelta(seconds=interval_seconds))
