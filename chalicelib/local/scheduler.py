"""Run the app's scheduled functions locally, as EventBridge schedules would on AWS.

Every ``@app.schedule(...)`` function (Chalice keeps them in ``app.event_sources``) is called
on one background thread with a CloudWatch "Scheduled Event" and a Lambda-like context. The
interval is the schedule's rate, capped (60 s by default) so a dev stack sees hourly jobs run;
``cron(...)`` schedules run every cap. ``V_SECURE_LOCAL_SCHEDULE_SECONDS`` overrides the
interval of every job. A failing job is logged and retried at its next tick; the loop never dies.

Example::

    from app import app
    scheduler = LocalScheduler(app).start()
    ...
    scheduler.stop()
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalice.app import Chalice, Rate, ScheduledEventConfig, ScheduleExpression
from chalice.local import LambdaContext

logger = logging.getLogger(__name__)

SCHEDULE_ENV = "V_SECURE_LOCAL_SCHEDULE_SECONDS"
DEFAULT_CAP_SECONDS = 60.0
LOCAL_ACCOUNT = "123456789012"

_RATE = re.compile(r"^\s*rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str | ScheduleExpression) -> float | None:
    """Seconds between runs for a ``rate(...)`` schedule; None for ``cron(...)``.

    Example::

        rate_seconds("rate(5 minutes)")            # 300.0
        rate_seconds(Rate(1, unit=Rate.HOURS))     # 3600.0
    """
    if isinstance(expression, Rate):
        return float(expression.value * _UNIT_SECONDS[expression.unit.lower().rstrip("s")])
    text = expression.to_string() if isinstance(expression, ScheduleExpression) else expression
    match = _RATE.match(text)
    if not match:
        return None
    return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower().rstrip("s")])


def schedule_event(name: str, region: str = "us-east-1", now: datetime | None = None) -> dict[str, Any]:
    """The event EventBridge sends a scheduled Lambda.

    Example::

        schedule_event("purge-deleted")["detail-type"]  # "Scheduled Event"
    """
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": LOCAL_ACCOUNT, "time": moment, "region": region,
        "resources": [f"arn:aws:events:{region}:{LOCAL_ACCOUNT}:rule/{name}"], "detail": {},
    }


@dataclass
class ScheduledJob:
    """One scheduled function and its local bookkeeping."""

    name: str
    handler: Callable[[dict[str, Any], Any], Any]
    expression: str
    interval: float
    next_run: float = 0.0
    runs: int = 0
    failures: int = 0
    last_error: str | None = None
    last_result: Any = field(default=None, repr=False)


def find_handler(app: Chalice, source: ScheduledEventConfig) -> Callable[[dict[str, Any], Any], Any]:
    """The callable for a scheduled source: ``app.handler_map[name]``, else ``handler_string``.

    Example::

        find_handler(app, app.event_sources[0])(schedule_event("x"), None)
    """
    handler = app.handler_map.get(source.name)
    if handler is not None:
        return handler
    module_name, _, attribute = source.handler_string.rpartition(".")
    found: Callable[[dict[str, Any], Any], Any] = getattr(importlib.import_module(module_name or "app"),
                                                          attribute)
    return found


def interval_override() -> float | None:
    """``V_SECURE_LOCAL_SCHEDULE_SECONDS`` as seconds, if set."""
    raw = os.environ.get(SCHEDULE_ENV, "").strip()
    if not raw:
        return None
    value = float(raw)
    if value <= 0:
        raise ValueError(f"{SCHEDULE_ENV} must be > 0, got {raw!r}")
    return value


def scheduled_jobs(app: Chalice, *, cap: float = DEFAULT_CAP_SECONDS,
                   interval: float | None = None) -> list[ScheduledJob]:
    """The app's scheduled functions with their local interval.

    ``interval`` (or the env override) wins; otherwise ``min(rate, cap)``, and ``cap`` for cron.

    Example::

        [job.name for job in scheduled_jobs(app)]  # ["purge-deleted"]
    """
    forced = interval if interval is not None else interval_override()
    jobs = []
    for source in app.event_sources:
        if not isinstance(source, ScheduledEventConfig):
            continue
        expression = source.schedule_expression
        text = expression.to_string() if isinstance(expression, ScheduleExpression) else str(expression)
        every = forced if forced is not None else min(rate_seconds(expression) or cap, cap)
        jobs.append(ScheduledJob(name=source.name, handler=find_handler(app, source),
                                 expression=text, interval=every))
    return jobs


class LocalScheduler:
    """Calls the app's scheduled functions on a daemon thread until :meth:`stop`.

    Example::

        scheduler = LocalScheduler(app, interval=0.1).start()
        scheduler.wait_for_run("purge-deleted", timeout=2)
        scheduler.stop()
    """

    def __init__(self, app: Chalice, *, interval: float | None = None, cap: float = DEFAULT_CAP_SECONDS,
                 run_at_start: bool = False, region: str | None = None) -> None:
        self.app = app
        self.jobs = {job.name: job for job in scheduled_jobs(app, cap=cap, interval=interval)}
        self._run_at_start = run_at_start
        self._region = region
        self._stop = threading.Event()
        self._ran = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> LocalScheduler:
        """Start the loop (first runs after one interval, or at once with ``run_at_start``)."""
        if self._thread is not None:
            return self
        now = time.monotonic()
        for job in self.jobs.values():
            job.next_run = now if self._run_at_start else now + job.interval
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="local-scheduler", daemon=True)
        self._thread.start()
        for job in self.jobs.values():
            logger.info("scheduled %s (%s) every %gs", job.name, job.expression, job.interval)
        return self

    def stop(self, timeout: float = 10) -> None:
        """Stop the loop; waits up to ``timeout`` for a running job to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_job(self, name: str) -> Any:
        """Run one job now, in this thread; errors are logged and counted, not raised."""
        job = self.jobs[name]
        region = self._region or _settings_region()
        context = LambdaContext(function_name=job.name, memory_size=128, max_runtime_ms=900_000)
        try:
            job.last_result = job.handler(schedule_event(job.name, region), context)
            job.last_error = None
        except Exception as error:
            job.failures += 1
            job.last_error = f"{type(error).__name__}: {error}"
            logger.exception("scheduled function %s failed", job.name)
        finally:
            with self._ran:
                job.runs += 1
                self._ran.notify_all()
        return job.last_result

    def wait_for_run(self, name: str, *, runs: int = 1, timeout: float = 10) -> bool:
        """Block until ``name`` has run ``runs`` times (True) or ``timeout`` passed (False)."""
        with self._ran:
            return self._ran.wait_for(lambda: self.jobs[name].runs >= runs, timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.jobs:
                self._stop.wait()
                return
            now = time.monotonic()
            for job in sorted(self.jobs.values(), key=lambda item: item.next_run):
                if self._stop.is_set():
                    return
                if job.next_run <= now:
                    self.run_job(job.name)
                    job.next_run += job.interval
                    if job.next_run <= time.monotonic():  # late (slow job): skip missed ticks
                        job.next_run = time.monotonic() + job.interval
            next_due = min(job.next_run for job in self.jobs.values())
            self._stop.wait(max(0.0, next_due - time.monotonic()))


def _settings_region() -> str:
    try:
        from chalicelib.config import get_settings

        return get_settings().region
    except Exception:
        return "us-east-1"
