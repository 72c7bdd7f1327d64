"""AWS round trips per operation, counted with botocore's ``before-call`` event.

The hook goes on the event system of :func:`chalicelib.aws.session` (clients built later
inherit it) and on every client already built (each client copies the session's event
system when it is created). One ``before-call`` is one API call, whatever its retries.
The API server runs in threads of this process, so its calls are seen too.

The budget is DESIGN.md's "Performance budget": on the warm path a retrieve costs one
``GetItem`` and one ``PutItem``/``TransactWriteItems`` (the audit event, with the rate
counter when there is one), and a store one KMS ``GenerateDataKey`` and one
``TransactWriteItems``.

Example::

    counter = CallCounter().install()
    with counter.counting() as log:
        http.get("/secrets/db")
    print(log.calls)  # ["dynamodb.GetItem", "dynamodb.PutItem"]
    counter.uninstall()
"""

from __future__ import annotations

import statistics
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

SERVICES = ("dynamodb", "kms", "s3", "events", "sqs")
_HOOK_ID = "v-secure-bench-call-counter"

BUDGET: dict[str, int] = {"retrieve (warm)": 2, "store (warm)": 2}
"""Operation name -> the most AWS calls DESIGN.md allows on its warm path."""


@dataclass
class CallLog:
    """The calls seen while counting, and the items DynamoDB read for their Query/Scan calls."""

    calls: list[str] = field(default_factory=list)
    items_read: int = 0


class CallCounter:
    """Records ``"<service>.<Operation>"`` for every call made through ``chalicelib.aws`` clients."""

    def __init__(self, services: tuple[str, ...] = SERVICES) -> None:
        self._services = services
        self._lock = threading.Lock()
        self._active: list[CallLog] = []
        self._hooked: list[Any] = []

    def install(self) -> CallCounter:
        """Hook the current session and its clients (again after ``reset_process_state()``)."""
        from chalicelib.aws import client, session

        self.uninstall()
        emitters = [session().events] + [client(name).meta.events for name in self._services]
        for emitter in emitters:
            emitter.register("before-call", self._on_call, unique_id=_HOOK_ID)
            emitter.register("after-call", self._on_answer, unique_id=f"{_HOOK_ID}-answers")
        self._hooked = emitters
        return self

    def uninstall(self) -> None:
        for emitter in self._hooked:
            emitter.unregister("before-call", self._on_call, unique_id=_HOOK_ID)
            emitter.unregister("after-call", self._on_answer, unique_id=f"{_HOOK_ID}-answers")
        self._hooked = []

    @contextmanager
    def counting(self) -> Iterator[CallLog]:
        """Collect the calls made while the block runs (by any thread of this process)."""
        log = CallLog()
        with self._lock:
            self._active.append(log)
        try:
            yield log
        finally:
            with self._lock:
                self._active.remove(log)

    def record(self, call: str) -> None:
        """Add ``call`` (``"dynamodb.GetItem"``) to every log being collected."""
        with self._lock:
            for log in self._active:
                log.calls.append(call)

    def _on_call(self, model: Any, **_: Any) -> None:
        self.record(f"{model.service_model.endpoint_prefix}.{model.name}")

    def _on_answer(self, model: Any, parsed: Any = None, **_: Any) -> None:
        if model.name not in ("Query", "Scan") or not isinstance(parsed, dict):
            return
        read = int(parsed.get("ScannedCount", parsed.get("Count", 0)) or 0)
        with self._lock:
            for log in self._active:
                log.items_read += read


@dataclass(frozen=True)
class RoundTrips:
    """AWS calls per operation over several runs of it."""

    operation: str
    counts: tuple[int, ...]
    calls: tuple[str, ...]
    """The calls of the run that is reported (the median one)."""
    extra: tuple[str, ...] = ()
    """Calls seen in some runs only (cache refreshes), with how often."""
    budget: int | None = None
    note: str = ""

    @property
    def median(self) -> int:
        return int(statistics.median_low(self.counts))

    @property
    def within_budget(self) -> bool:
        return self.budget is None or self.median <= self.budget

    def as_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "median": self.median, "min": min(self.counts),
                "max": max(self.counts), "counts": list(self.counts), "calls": list(self.calls),
                "extra": list(self.extra), "budget": self.budget, "within_budget": self.within_budget,
                "note": self.note}


def count_calls(counter: CallCounter, operation: str, run: Callable[[int], object], *, runs: int = 5,
                prepare: Callable[[int], object] | None = None, note: str = "") -> RoundTrips:
    """Count the AWS calls of ``run(i)`` for ``runs`` runs; ``prepare(i)`` runs before each, uncounted.

    The median run is reported, so a time-based cache refresh that falls into one run shows
    up in ``extra`` instead of hiding the steady state (or being hidden by it).
    """
    per_run: list[list[str]] = []
    for index in range(runs):
        if prepare is not None:
            prepare(index)
        with counter.counting() as log:
            run(index)
        per_run.append(list(log.calls))
    counts = tuple(len(calls) for calls in per_run)
    median = statistics.median_low(counts)
    typical = next(calls for calls in per_run if len(calls) == median)
    seen = Counter(call for calls in per_run for call in calls)
    usual = Counter(typical)
    extra = tuple(f"{name} x{seen[name] - usual[name] * runs}/{runs} runs"
                  for name in sorted(seen) if seen[name] > usual[name] * runs)
    return RoundTrips(operation=operation, counts=counts, calls=tuple(typical), extra=extra,
                      budget=BUDGET.get(operation), note=note)
