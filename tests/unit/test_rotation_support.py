"""Support for the rotation tests (no tests here): fakes of the run store, the outbox, the notifier, a provider.

* :class:`FakeRunStore` keeps runs in memory with the DynamoDB store's ``seq`` conditions;
  its ``put_item`` is understood by :class:`RotationRepository` (a :class:`FakeRepository` whose
  transactions also carry run items, all-or-nothing).
* :class:`FakeOutbox` keeps notifications in memory; its ``put_item`` joins the repository's
  transactions the same way. :class:`RecordingNotifier` refuses events while ``refuse`` is set.
* :class:`ProviderRotator` stands for a provider: the values it accepts are ``valid``; ``apply``
  adds one, ``revoke`` removes one, ``test`` checks one. Faults are switched on by attributes.
* :func:`installed` registers a rotator for the test and puts the previous one back.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from chalicelib.audit.events import AuditDraft, AuditEvent
from chalicelib.audit.stream import TransactionCancelled
from chalicelib.clock import isoformat
from chalicelib.errors import DependencyUnavailable
from chalicelib.models import SecretType
from chalicelib.rotation.outbox import Notice
from chalicelib.rotation.rotators._common import refuse_current
from chalicelib.rotation.rotators.base import (
    _ROTATORS,
    RotationContext,
    RotationNotSupported,
    RotationTestFailed,
    Rotator,
    get_rotator,
    register_rotator,
)
from chalicelib.rotation.runs import RotationRun, RunConflict
from chalicelib.vault.records import SecretRecord, VersionRecord
from tests.fakes import FakeRepository


class FakeRunStore:
    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], RotationRun] = {}
        self.slots: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def get(self, secret_id: str, run_id: str) -> RotationRun | None:
        return self.runs.get((secret_id, run_id))

    def recent(self, secret_id: str, limit: int = 5) -> list[RotationRun]:
        mine = sorted((r for (s, _), r in self.runs.items() if s == secret_id), key=lambda r: r.run_id, reverse=True)
        return mine[:limit]

    def due(self, until: datetime, limit: int = 100) -> list[tuple[str, str]]:
        found = [(r.secret_id, r.run_id) for r in self.runs.values()
                 if (at := r.sched_at()) is not None and at <= until]
        return found[:limit]

    def put_item(self, run: RotationRun) -> dict[str, Any]:
        return {"FakeRun": run}

    def check(self, run: RotationRun) -> bool:
        stored = self.runs.get((run.secret_id, run.run_id))
        return stored is None if run.seq <= 1 else stored is not None and stored.seq == run.seq - 1

    def apply(self, run: RotationRun) -> None:
        self.runs[(run.secret_id, run.run_id)] = run

    def save(self, run: RotationRun) -> None:
        with self._lock:
            if not self.check(run):
                raise RunConflict(run.run_id)
            self.apply(run)

    def claim_slot(self, name: str, now: datetime, every: timedelta) -> bool:
        with self._lock:
            due = self.slots.get(name)
            if due is not None and now < due <= now + every:
                return False
            self.slots[name] = now + every
            return True


class FakeOutbox:
    """Notifications in memory, by ``sk`` (as the ``OUTBOX`` partition); counts the deletes."""

    def __init__(self) -> None:
        self.notices: dict[str, Notice] = {}
        self.deleted = 0

    def put_item(self, notice: Notice) -> dict[str, Any]:
        return {"FakeNotice": notice}

    def apply(self, notice: Notice) -> None:
        self.notices[notice.sk] = notice

    def delete(self, notice: Notice) -> None:
        self.deleted += 1
        self.notices.pop(notice.sk, None)

    def due(self, before: datetime, limit: int = 100) -> list[Notice]:
        return [self.notices[sk] for sk in sorted(self.notices) if sk < isoformat(before)][:limit]


class RotationRepository(FakeRepository):
    """The fake repository, with run and outbox items taking part in its transactions."""

    def __init__(self, runs: FakeRunStore, outbox: FakeOutbox | None = None) -> None:
        super().__init__()
        self.run_store = runs
        self.outbox = outbox or FakeOutbox()
        self.fail_commits = 0
        """Make the next N commits fail as DynamoDB outages."""
        self._lock = threading.RLock()

    def commit(self, draft: AuditDraft, *, record: SecretRecord, expected_rev: int | None,
               new_version: VersionRecord | None = None, destroy_versions: tuple[int, ...] = (),
               extra_items: tuple[dict[str, Any], ...] = ()) -> AuditEvent:
        with self._lock:
            self._outage()
            runs, notices, others = _split(extra_items)
            current = self.records.get(record.secret_id)
            if current is not None and expected_rev is not None and current.rev == expected_rev:
                self._check_runs(runs)
            event = super().commit(draft, record=record, expected_rev=expected_rev, new_version=new_version,
                                   destroy_versions=destroy_versions, extra_items=others)
            self._apply(runs, notices)
            return event

    def record_event(self, draft: AuditDraft, extra_items: tuple[dict[str, Any], ...] = ()) -> AuditEvent:
        with self._lock:
            self._outage()
            runs, notices, others = _split(extra_items)
            self._check_runs(runs)
            event = super().record_event(draft, others)
            self._apply(runs, notices)
            return event

    def _apply(self, runs: list[RotationRun], notices: list[Notice]) -> None:
        for run in runs:
            self.run_store.apply(run)
        for notice in notices:
            self.outbox.apply(notice)

    def _check_runs(self, runs: list[RotationRun]) -> None:
        if not all(self.run_store.check(run) for run in runs):
            raise TransactionCancelled(["None", "ConditionalCheckFailed"])

    def _outage(self) -> None:
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise DependencyUnavailable("dynamodb", "TransactWriteItems failed: InternalServerError")


def _split(items: tuple[dict[str, Any], ...]) -> tuple[list[RotationRun], list[Notice], tuple[dict[str, Any], ...]]:
    runs = [item["FakeRun"] for item in items if "FakeRun" in item]
    notices = [item["FakeNotice"] for item in items if "FakeNotice" in item]
    return runs, notices, tuple(item for item in items if "FakeRun" not in item and "FakeNotice" not in item)


class RecordingNotifier:
    """Records the events it accepts; while ``refuse`` is set it accepts none (EventBridge refusing)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.refuse = False
        self.refused: list[tuple[str, dict[str, Any]]] = []

    def publish(self, detail_type: str, detail: Mapping[str, object]) -> bool:
        if self.refuse:
            self.refused.append((detail_type, dict(detail)))
            return False
        self.events.append((detail_type, dict(detail)))
        return True

    def types(self) -> list[str]:
        return [kind for kind, _ in self.events]


class ProviderRotator:
    """A provider in memory: issues keys, accepts the ones applied, forgets the ones revoked."""

    generates = True

    def __init__(self, secret_type: SecretType = SecretType.API_KEY) -> None:
        self.secret_type = secret_type
        self.valid: set[str] = set()
        self.revoked: list[str] = []
        self.issued: list[str] = []
        self.fail_test = False
        self.unavailable = 0
        """The next N calls (any method) fail as a provider outage."""
        self.delay = 0.0
        """Seconds each call takes (so that concurrent runs would overlap)."""
        self.calls: list[str] = []
        self.contexts: list[RotationContext] = []
        self._lock = threading.Lock()

    def accept(self, value: str) -> str:
        self.valid.add(value)
        return value

    def _call(self, name: str, ctx: RotationContext) -> None:
        time.sleep(self.delay)
        with self._lock:
            self.calls.append(name)
            self.contexts.append(ctx)
            if self.unavailable > 0:
                self.unavailable -= 1
                raise DependencyUnavailable("test provider", f"{name} failed: connection refused")

    def generate(self, ctx: RotationContext) -> str:
        self._call("generate", ctx)
        value = f"sk_test_{secrets.token_hex(12)}"
        self.issued.append(value)
        return value

    def apply(self, ctx: RotationContext, new_value: str) -> None:
        self._call("apply", ctx)
        self.valid.add(new_value)

    def test(self, ctx: RotationContext, new_value: str) -> None:
        self._call("test", ctx)
        if self.fail_test or new_value not in self.valid:
            raise RotationTestFailed("the provider refused the new key")

    def revoke(self, ctx: RotationContext, old_value: str) -> None:
        self._call("revoke", ctx)
        refuse_current(ctx, old_value)
        self.valid.discard(old_value)
        self.revoked.append(old_value)


@contextlib.contextmanager
def installed(rotator: Rotator) -> Iterator[Rotator]:
    """Register ``rotator`` for its type for the duration of the block (the built-ins loaded first)."""
    try:
        previous: Rotator | None = get_rotator(rotator.secret_type)
    except RotationNotSupported:
        previous = None
    register_rotator(rotator)
    try:
        yield rotator
    finally:
        if previous is not None:
            register_rotator(previous)
        else:
            _ROTATORS.pop(SecretType(rotator.secret_type), None)
