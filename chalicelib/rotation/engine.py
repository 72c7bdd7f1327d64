"""The rotation engine: a persisted state machine per rotation run.

Steps (AWS Secrets Manager's four-step protocol, with staging labels, plus rollout and retire)::

    start -> create -> set -> test -> rollout -> finish -> retire -> done
                  \\______ failure: failed (CURRENT untouched, new value revoked) ______/

* **start**: one conditional write of the secret's META item (``rotation_run``) and the run
  item: two schedulers and a manual rotate racing for one secret produce one run.
* **create**: the rotator's ``generate`` (or the value given with a manual rotate), validated
  as any stored value, stored as the next version labelled ``PENDING`` (``source="rotation"``,
  gapless numbers) in the same transaction as its audit event and the run's new step.
* **set**: ``rotator.apply``; **test**: ``rotator.test`` when ``testNewKey``.
* **rollout**: the strategy (:mod:`~chalicelib.rotation.strategies`); the META item carries
  ``rollout`` and the new version's envelope in ``staged``, so a retrieve stays one GetItem.
* **finish**: ``CURRENT`` -> new, ``PREVIOUS`` -> old, in one conditional write.
* **retire**: after ``retireAfter``, ``rotator.revoke(old)``; the ``PREVIOUS`` label goes.

Each step is idempotent and its completion is written with the run's ``seq`` condition, so a
crash between steps is resumed by the scheduler once the lease expired. Transient failures
(:class:`~chalicelib.errors.DependencyUnavailable`) are retried with backoff; any other failure
before ``finish`` aborts the run: ``CURRENT`` stays, ``PENDING`` goes, the new value is revoked
(at once if nobody was served it, else after ``retireAfter``), audited and notified.

Notifications (``RotationStarted``, ``SecretRotated``, ``RotationFailed``, ``RotationRolledBack``)
are written to the outbox (:mod:`~chalicelib.rotation.outbox`) in the transaction of the change
they report, published right after it and removed once EventBridge accepted them; the scheduler
publishes what is left behind (at least once; the detail's ``notificationId`` tells duplicates).

Rotators are called with a :class:`~chalicelib.rotation.rotators.base.RotationContext` whose
``config`` is the run's rotation block, ``current_value`` the value labelled ``CURRENT`` at the
time of the call, ``resolve_secret`` a reader of the other secrets the block names
(``...SecretId`` options) and ``value_schema`` the secret's JSON Schema.

Example::

    engine = get_rotation_engine()
    run = engine.start("prod/db", actor=caller, trigger="manual")
    run = engine.drive(run)            # runs steps until the run has to wait (or is done)
"""

from __future__ import annotations

import contextlib
import functools
import secrets as random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.access_control.context import SYSTEM_ACTOR, Caller, system_draft
from chalicelib.audit.events import Action, AuditDraft, Status
from chalicelib.audit.stream import TransactionCancelled
from chalicelib.clock import Clock, SystemClock, isoformat
from chalicelib.config import get_settings
from chalicelib.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidRequest,
    PayloadTooLarge,
    RotationInProgress,
    SecretDeleted,
    SecretNotFound,
    VersionConflict,
    VersionNotFound,
    VSecureError,
)
from chalicelib.logging import logger
from chalicelib.models import SecretType
from chalicelib.notify import ROTATION_FAILED, ROTATION_STARTED, SECRET_ROTATED
from chalicelib.ports import Notifier
from chalicelib.rotation import config as rotation_config
from chalicelib.rotation.outbox import Notice, Outbox, deliver, new_notice
from chalicelib.rotation.rotators.base import RotationContext, RotationNotSupported, Rotator, get_rotator
from chalicelib.rotation.runs import RotationRun, RunConflict, RunStatus, RunStep, RunStore, new_run_id
from chalicelib.rotation.strategies import plan_for
from chalicelib.secret_types import validate_value
from chalicelib.singleton import ProcessSingleton
from chalicelib.vault.encryption import Envelope, EnvelopeContext, seal
from chalicelib.vault.records import CURRENT, PENDING, PREVIOUS, SecretRecord, VersionRecord
from chalicelib.vault.retrieval import decrypt_value
from chalicelib.vault.service import MAX_WRITE_ATTEMPTS, VaultService
from chalicelib.vault.storage import StaleRecord

LEASE_SECONDS = 300
MAX_ATTEMPTS = 5
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
PAUSED_RECHECK = timedelta(hours=1)
ROTATING, RETIRING, CLEANUP = "rotating", "retiring", "cleanup"
"""``rotation_run.phase`` on the META item: a rollback undoes the rotation while ``rotating`` or
``retiring`` (old value still to revoke); ``cleanup`` (a failed or rolled back run revoking its
new value) no longer holds the secret. Stores are refused only while ``rotating``."""

FaultHook = Callable[[str], None]


class RotationFailed(VSecureError):
    """A step failed for a reason that is not a v-secure error (a defect in a rotator): run aborted."""

    status, code = 500, "rotation_failed"


class NoRotationInProgress(Conflict):
    code = "no_rotation_in_progress"


class RunBusy(Exception):
    """Another worker holds the run's lease."""


class LeaseLost(Exception):
    """The run changed under this worker (lease taken over, rolled back, switched): stop."""


@dataclass(frozen=True)
class Actor:
    """Who asked for a run: a caller, or the scheduler (``caller`` None)."""

    caller: Caller | None = None

    @property
    def principal_id(self) -> str:
        return self.caller.principal_id if self.caller else SYSTEM_ACTOR

    @property
    def actor_type(self) -> str:
        return self.caller.principal.actor_type if self.caller else "system"

    def draft(self, action: Action, *, status: Status = Status.SUCCESS, **fields: Any) -> AuditDraft:
        if self.caller is not None:
            return self.caller.draft(action, status=status, **fields)
        return system_draft(action, status=status, **fields)


SYSTEM = Actor()


@dataclass
class _Change:
    record: SecretRecord
    draft: AuditDraft
    run: RotationRun
    version: VersionRecord | None = None


class RotationEngine:
    """Starts, drives, switches and rolls back rotation runs.

    ``fault`` (tests) is called at named points right after each step's effect or commit
    (``start``, ``create:generated``, ``create``, ``set:applied``, ``set``, ``test:tested``, ``test``,
    ``rollout``, ``finish``, ``retire:revoked``, ``retire``, ``fail:revoked``, and
    ``publish:<detail type>`` between a commit and the publishing of its notification); raising
    from it simulates a crash there.
    """

    def __init__(self, vault: VaultService, runs: RunStore, notifier: Notifier, outbox: Outbox, *,
                 clock: Clock | None = None, lease_seconds: int = LEASE_SECONDS, worker_id: str | None = None,
                 fault: FaultHook | None = None) -> None:
        self.vault = vault
        self.repo = vault.repo
        self.runs = runs
        self.notifier = notifier
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.lease = timedelta(seconds=lease_seconds)
        self._worker = worker_id or f"worker-{random.token_hex(6)}"
        self.fault = fault

    @property
    def worker_id(self) -> str:
        """This process and thread: two requests served by one process never share a lease."""
        return f"{self._worker}.{threading.get_ident()}"

    # --- start -----------------------------------------------------------------------------

    def start(self, secret_id: str, *, actor: Actor = SYSTEM, trigger: str = "manual",
              overrides: dict[str, Any] | None = None, reason: str | None = None,
              notify_services: list[str] | None = None, value_given: bool = False) -> RotationRun:
        """Create and claim a run for ``secret_id``; :class:`RotationInProgress` if one is active.

        A run that only waits to retire the previous old value is retired first (at once).
        ``trigger="scheduled"`` starts only if the secret is due (:class:`NotDue` otherwise).
        """
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            record = self.live_record(secret_id)
            if record.rotation_run:
                self._make_way(record)
                continue
            now = self.clock.now()
            if trigger == "scheduled" and not _due(record, now):
                raise NotDue(secret_id)
            rotator = get_rotator(record.type)
            if not value_given and not getattr(rotator, "generates", True):
                raise RotationNotSupported(f"{record.type} values are not generated: rotate with a new value")
            config = rotation_config.with_overrides(record.rotation, overrides or {})
            run = RotationRun(
                run_id=new_run_id(now), secret_id=secret_id, secret_type=record.type,
                strategy=str(config["strategy"]), config=config, trigger=trigger,
                requested_by=actor.principal_id, actor_type=actor.actor_type, reason=reason,
                notify_services=notify_services or [], old_version=record.current_version,
                created_at=now, updated_at=now, seq=1, lease_owner=self.worker_id, lease_until=now + self.lease,
            )
            run = run.model_copy(update={"history": run.noted(now, "start", "done", trigger)})
            schedule = self._schedule_after_start(record, now)
            updated = record.model_copy(update={
                "rotation_run": {"id": run.run_id, "phase": ROTATING}, "updated_at": now,
                "rev": record.rev + 1, **schedule})
            draft = actor.draft(Action.ROTATION_STARTED, secret_id=secret_id, version=record.current_version,
                                reason=reason, compliance_standards=record.compliance,
                                details={"rotation_id": run.run_id, "trigger": trigger, "strategy": run.strategy})
            notice = self.notice(ROTATION_STARTED, run)
            try:
                self.repo.commit(draft, record=updated, expected_rev=record.rev,
                                 extra_items=(self.runs.put_item(run), self.outbox.put_item(notice)))
            except StaleRecord:
                continue
            self.deliver(notice)
            self._fault("start")
            return run
        raise VersionConflict(f"'{secret_id}' is being written by others; try again")

    def _make_way(self, record: SecretRecord) -> None:
        """A run holds the secret: retire it now if it only waits for that, else refuse."""
        pointer = record.rotation_run or {}
        run = self.runs.get(record.secret_id, str(pointer.get("id")))
        if run is not None and run.step is RunStep.RETIRE and not run.leased_by_other(self.worker_id,
                                                                                       self.clock.now()):
            with contextlib.suppress(RunBusy):
                run = self.drive(self._claim(run).model_copy(update={"retire_at": self.clock.now()}))
            if not run.active:
                return
        if run is None:
            self._clear_pointer(record)
            return
        raise RotationInProgress(f"rotation {run.run_id} of '{record.secret_id}' is in progress (step {run.step})",
                                 details={"rotationId": run.run_id, "step": run.step.value})

    def _clear_pointer(self, record: SecretRecord) -> None:
        """The META item names a run that does not exist (a start that never committed): forget it."""
        updated = record.model_copy(update={"rotation_run": None, "rev": record.rev + 1,
                                            "updated_at": self.clock.now()})
        with contextlib.suppress(StaleRecord):
            self.repo.commit(system_draft(Action.ROTATION_STEP, secret_id=record.secret_id,
                                          details={"step": "cleanup", "status": "done"}),
                             record=updated, expected_rev=record.rev)

    def _schedule_after_start(self, record: SecretRecord, now: datetime) -> dict[str, Any]:
        if record.deleted or record.sched_pk not in (None, rotation_config.ROTATION):
            return {}
        return rotation_config.schedule_fields(record.rotation, base=now, now=now)

    # --- drive -----------------------------------------------------------------------------

    def drive(self, run: RotationRun, *, value: str | None = None, raise_failure: bool = False) -> RotationRun:
        """Run steps until the run has to wait (rollout, retirement, a retry) or is done.

        With ``raise_failure``, a failure that aborts the run is raised after it was recorded.
        """
        if not run.active:
            return run
        if run.lease_owner != self.worker_id or run.lease_until is None or run.lease_until <= self.clock.now():
            run = self._claim(run)
        while run.active:
            try:
                run, go_on = self._step(run, value, raise_failure)
            except LeaseLost:
                return self.runs.get(run.secret_id, run.run_id) or run
            if not go_on:
                break
        return run

    def resume(self, secret_id: str, run_id: str) -> RotationRun | None:
        """Drive a run found by the scheduler; :class:`RunBusy` if another worker has it."""
        run = self.runs.get(secret_id, run_id)
        if run is None or not run.active:
            return run
        return self.drive(run)

    def _claim(self, run: RotationRun) -> RotationRun:
        now = self.clock.now()
        if run.leased_by_other(self.worker_id, now):
            raise RunBusy(run.run_id)
        claimed = run.advance(now, lease_owner=self.worker_id, lease_until=now + self.lease)
        try:
            self.runs.save(claimed)
        except RunConflict:
            raise RunBusy(run.run_id) from None
        return claimed

    def _step(self, run: RotationRun, value: str | None, raise_failure: bool) -> tuple[RotationRun, bool]:
        try:
            record = self._owned(run)
            if record is None:
                return self._abandon(run, "the secret was destroyed"), False
            if record.deleted:
                paused = self._release(run, next_at=self.clock.now() + PAUSED_RECHECK, note="paused: secret deleted")
                return paused, False
            return self._dispatch(run, record, value)
        except (LeaseLost, RunBusy):
            raise
        except (DependencyUnavailable, VersionConflict) as error:
            return self._retry_later(run, error, raise_failure), False
        except Exception as error:
            if run.step is RunStep.RETIRE:
                return self._give_up_retire(run, error), False
            failed = self._fail(run, error)
            if raise_failure:
                raise _for_caller(error, failed) from None
            return failed, False

    def _dispatch(self, run: RotationRun, record: SecretRecord, value: str | None) -> tuple[RotationRun, bool]:
        step = run.step
        if step is RunStep.CREATE:
            return self._create(run, record, value), True
        if step is RunStep.SET:
            return self._set(run, record), True
        if step is RunStep.TEST:
            return self._test(run, record), True
        if step is RunStep.ROLLOUT:
            return self._rollout(run, record)
        if step is RunStep.FINISH:
            return self._finish(run, record), True
        return self._retire(run, record)

    # --- steps -----------------------------------------------------------------------------

    def _create(self, run: RotationRun, record: SecretRecord, value: str | None) -> RotationRun:
        rotator = self._rotator(record)
        new_value = value if value is not None else rotator.generate(self._context(run, record))
        self._fault("create:generated")
        if len(new_value.encode()) > self.vault.settings.max_value_bytes:
            raise PayloadTooLarge(f"the new value is larger than {self.vault.settings.max_value_bytes} bytes")
        facts = validate_value(record.type, new_value, value_schema=record.value_schema).as_facts()

        def change(current: SecretRecord) -> _Change:
            now = self.clock.now()
            number = current.latest_version + 1
            envelope = seal(new_value.encode(), EnvelopeContext(secret_id=current.secret_id, version=number,
                                                                type=current.type), self.vault.keys)
            version = VersionRecord(secret_id=current.secret_id, version=number, created_at=now,
                                    created_by=run.requested_by, source="rotation", facts=facts, envelope=envelope)
            updated = current.model_copy(update={
                "labels": {**current.labels, PENDING: number}, "latest_version": number, "updated_at": now,
                "rev": current.rev + 1})
            draft = system_draft(Action.SECRET_STORE, secret_id=current.secret_id, version=number,
                                 compliance_standards=current.compliance,
                                 details={"source": "rotation", "rotation_id": run.run_id, "label": PENDING,
                                          "type": current.type, "requested_by": run.requested_by})
            return _Change(updated, draft, self._next(run, now, RunStep.SET, "create", new_version=number), version)

        _record, run = self._commit(run, record, change)
        self._fault("create")
        return run

    def _set(self, run: RotationRun, record: SecretRecord) -> RotationRun:
        self._rotator(record).apply(self._context(run, record), self._value(record, self._new(run)))
        self._fault("set:applied")
        run = self._note(run, RunStep.TEST, "set")
        self._fault("set")
        return run

    def _test(self, run: RotationRun, record: SecretRecord) -> RotationRun:
        config = rotation_config.load(run.config)
        if config.test_new_key:
            self._rotator(record).test(self._context(run, record), self._value(record, self._new(run)))
            self._fault("test:tested")
        following = RunStep.ROLLOUT if plan_for(run.strategy).rolls_out else RunStep.FINISH
        run = self._note(run, following, "test", "done" if config.test_new_key else "skipped")
        self._fault("test")
        return run

    def _rollout(self, run: RotationRun, record: SecretRecord) -> tuple[RotationRun, bool]:
        plan = plan_for(run.strategy)
        hours = rotation_config.load(run.config).rollout_duration_hours
        now = self.clock.now()
        if run.rollout_started_at is None:
            run = self._start_rollout(run, record, hours)
            self._fault("rollout")
            return run, False  # the rollout takes time; the scheduler comes back at run.next_at
        started = run.rollout_started_at
        if plan.complete(started, now, hours):
            return run.model_copy(update={"step": RunStep.FINISH}), True
        percent = plan.percent(started, now, hours)
        if record.rollout is not None and percent != int(record.rollout.get("percent", 0)):
            run = self._move_rollout(run, percent, plan.next_check(started, now, hours))
            return run, False
        return self._release(run, next_at=plan.next_check(started, now, hours)), False

    def _start_rollout(self, run: RotationRun, record: SecretRecord, hours: float) -> RotationRun:
        plan = plan_for(run.strategy)
        new_version = self._new(run)
        envelope = self.envelope_of(record, new_version)

        def change(current: SecretRecord) -> _Change:
            now = self.clock.now()
            percent = plan.percent(now, now, hours)
            rollout = {"old_version": current.current_version, "new_version": new_version, "percent": percent,
                       "strategy": run.strategy, "started_at": isoformat(now), "duration_hours": hours}
            updated = current.model_copy(update={
                "rollout": rollout, "staged": {**current.staged, PENDING: envelope}, "updated_at": now,
                "rev": current.rev + 1})
            draft = self._step_draft(run, current, "rollout", "started", percent=percent)
            next_run = run.advance(now, rollout_started_at=now, percent=percent, attempts=0, error=None,
                                   next_at=plan.next_check(now, now, hours), lease_owner=None, lease_until=None,
                                   history=run.noted(now, "rollout", "started", f"{run.strategy} {percent}%"))
            return _Change(updated, draft, next_run)

        _record, run = self._commit(run, record, change)
        return run

    def _move_rollout(self, run: RotationRun, percent: int, next_at: datetime | None) -> RotationRun:
        def change(current: SecretRecord) -> _Change:
            now = self.clock.now()
            rollout = {**(current.rollout or {}), "percent": percent}
            updated = current.model_copy(update={"rollout": rollout, "updated_at": now, "rev": current.rev + 1})
            next_run = run.advance(now, percent=percent, next_at=next_at, lease_owner=None, lease_until=None,
                                   history=run.noted(now, "rollout", "advanced", f"{percent}%"))
            return _Change(updated, self._step_draft(run, current, "rollout", "advanced", percent=percent), next_run)

        _record, run = self._commit(run, None, change)
        return run

    def _finish(self, run: RotationRun, record: SecretRecord) -> RotationRun:
        envelope = self.envelope_of(record, self._new(run))
        finish = functools.partial(self._finish_change, run, envelope, None, True, self._expiry(record, run))
        _record, run = self._commit(run, record, finish, notify=SECRET_ROTATED)
        self._fault("finish")
        return run

    def _finish_change(self, run: RotationRun, envelope: Envelope, draft: AuditDraft | None, keep_lease: bool,
                       expires_at: datetime | None, current: SecretRecord) -> _Change:
        now = self.clock.now()
        schedule = {} if current.deleted or current.sched_pk not in (None, rotation_config.ROTATION) else \
            rotation_config.schedule_fields(current.rotation, base=now, now=now, expires_at=expires_at)
        new_version = self._new(run)
        labels = {k: v for k, v in current.labels.items() if k != PENDING}
        labels.update({CURRENT: new_version, PREVIOUS: current.current_version})
        retire_at = now + timedelta(seconds=rotation_config.load(run.config).retire_after_seconds)
        updated = current.model_copy(update={
            "labels": labels, "current_version": new_version, "current": envelope, "rollout": None,
            "staged": {k: v for k, v in current.staged.items() if k != PENDING}, "rotated_at": now,
            "rotation_run": {"id": run.run_id, "phase": RETIRING}, "updated_at": now, "rev": current.rev + 1,
            **schedule})
        draft = draft or system_draft(
            Action.ROTATION_COMPLETED, secret_id=current.secret_id, version=new_version,
            compliance_standards=current.compliance,
            details={"rotation_id": run.run_id, "old_version": current.current_version, "strategy": run.strategy})
        lease = {} if keep_lease else {"lease_owner": None, "lease_until": None}
        next_run = run.advance(now, status=RunStatus.COMPLETED, step=RunStep.RETIRE, percent=100,
                               retire_version=current.current_version, retire_at=retire_at, finished_at=now,
                               next_at=retire_at, attempts=0, error=None,
                               history=run.noted(now, "finish", "done"), **lease)
        return _Change(updated, draft, next_run)

    def _retire(self, run: RotationRun, record: SecretRecord) -> tuple[RotationRun, bool]:
        now = self.clock.now()
        if run.retire_at is not None and now < run.retire_at:
            return self._release(run, next_at=run.retire_at), False
        retired = run.retire_version
        revoked = False
        if retired is not None and retired != record.current_version:
            old_value = self._readable_value(record, retired)
            if old_value is not None:
                self._rotator(record).revoke(self._context(run, record), old_value)
                revoked = True
                self._fault("retire:revoked")

        def change(current: SecretRecord) -> _Change:
            moment = self.clock.now()
            labels = dict(current.labels)
            if retired is not None and labels.get(PREVIOUS) == retired and current.current_version != retired:
                del labels[PREVIOUS]
            updated = current.model_copy(update={"labels": labels, "rotation_run": None, "updated_at": moment,
                                                 "rev": current.rev + 1})
            draft = self._step_draft(run, current, "retire", "done", retired_version=retired, revoked=revoked)
            next_run = run.advance(moment, step=RunStep.DONE, next_at=None, lease_owner=None, lease_until=None,
                                   attempts=0, history=run.noted(moment, "retire", "done" if revoked else "skipped",
                                                                 f"version {retired}" if retired else None))
            return _Change(updated, draft, next_run)

        _record, run = self._commit(run, record, change)
        self._fault("retire")
        return run, False

    # --- switch (blue-green, or promoting any rollout at once) --------------------------------

    def switch(self, secret_id: str, *, actor: Actor, reason: str | None = None) -> RotationRun:
        """Move ``CURRENT`` to the run's new version in one conditional write (META + run + event)."""
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            record = self.live_record(secret_id)
            pointer = record.rotation_run or {}
            if pointer.get("phase") != ROTATING:
                raise NoRotationInProgress(f"'{secret_id}' has no rotation waiting for a switch")
            run = self.runs.get(secret_id, str(pointer.get("id")))
            if run is None or run.step is not RunStep.ROLLOUT or run.rollout_started_at is None:
                step = run.step.value if run else "unknown"
                raise RotationInProgress(f"the rotation of '{secret_id}' is at step {step}; it can be switched once "
                                         "its rollout started", details={"step": step})
            new_version = self._new(run)
            draft = actor.draft(Action.SECRET_SWITCH, secret_id=secret_id, version=new_version, reason=reason,
                                compliance_standards=record.compliance,
                                details={"rotation_id": run.run_id, "from_version": record.current_version,
                                         "strategy": run.strategy})
            planned = self._finish_change(run, self.envelope_of(record, new_version), draft, False,
                                          self._expiry(record, run), record)
            notice = self.notice(SECRET_ROTATED, planned.run)
            try:
                self.repo.commit(planned.draft, record=planned.record, expected_rev=record.rev,
                                 extra_items=(self.runs.put_item(planned.run), self.outbox.put_item(notice)))
            except (StaleRecord, TransactionCancelled):
                continue
            run = planned.run
            self.deliver(notice)
            return self.retire_if_due(run)
        raise VersionConflict(f"'{secret_id}' is being written by others; try again")

    def retire_if_due(self, run: RotationRun) -> RotationRun:
        """Right after a switch or a rollback: retire at once when nothing has to wait (``retireAfter`` 0)."""
        if run.step is not RunStep.RETIRE or (run.retire_at is not None and run.retire_at > self.clock.now()):
            return run
        try:
            return self.drive(run)
        except (RunBusy, LeaseLost):
            return run
        except VSecureError as error:  # the scheduler retries the retirement
            logger.warning("retirement deferred", extra={"rotation_id": run.run_id, "code": error.code})
            return self.runs.get(run.secret_id, run.run_id) or run

    # --- failure, retries, abandon ---------------------------------------------------------

    def _fail(self, run: RotationRun, error: Exception) -> RotationRun:
        """Abort the run: CURRENT stays, PENDING goes, the new value is revoked (now, or after retireAfter)."""
        step = run.step.value
        problem = _describe(step, error)
        logger.warning("rotation step failed", extra={"secret_id": run.secret_id, "rotation_id": run.run_id,
                                                      "step": step, "code": problem["code"]})
        record = self._owned(run)
        if record is None:
            return self._abandon(run, problem["message"])
        exposed = run.rollout_started_at is not None
        revoke_later = run.new_version is not None and exposed
        failures = 1 + self._failures_before(run)
        note = None
        if run.new_version is not None and not exposed:
            note = self._revoke_quietly(run, record, run.new_version)
            self._fault("fail:revoked")

        def change(current: SecretRecord) -> _Change:
            now = self.clock.now()
            labels = {k: v for k, v in current.labels.items() if not (k == PENDING and v == run.new_version)}
            retire_at = now + timedelta(seconds=rotation_config.load(run.config).retire_after_seconds)
            schedule = {} if current.deleted or current.sched_pk not in (None, rotation_config.ROTATION) else \
                rotation_config.after_failure(current.rotation, now, failures)
            updated = current.model_copy(update={
                "labels": labels, "rollout": None, "staged": {k: v for k, v in current.staged.items() if k != PENDING},
                "rotation_run": {"id": run.run_id, "phase": CLEANUP} if revoke_later else None,
                "updated_at": now, "rev": current.rev + 1, **schedule})
            draft = system_draft(Action.ROTATION_FAILED, status=Status.FAILURE, secret_id=current.secret_id,
                                 version=run.new_version, compliance_standards=current.compliance,
                                 details={"rotation_id": run.run_id, **problem, "revoke": note or
                                          ("after retireAfter" if revoke_later else "not needed")})
            next_run = run.advance(
                now, status=RunStatus.FAILED, step=RunStep.RETIRE if revoke_later else RunStep.DONE,
                retire_version=run.new_version if revoke_later else None, retire_at=retire_at if revoke_later else None,
                next_at=retire_at if revoke_later else None, error=problem, finished_at=now, lease_owner=None,
                lease_until=None, history=run.noted(now, step, "failed", problem["code"]))
            return _Change(updated, draft, next_run)

        _record, run = self._commit(run, record, change, notify=ROTATION_FAILED)
        return run

    def _failures_before(self, run: RotationRun) -> int:
        """How many runs in a row failed before this one (the next attempt backs off accordingly)."""
        count = 0
        for earlier in self.runs.recent(run.secret_id, 8):
            if earlier.run_id == run.run_id:
                continue
            if earlier.status is not RunStatus.FAILED:
                break
            count += 1
        return count

    def _revoke_quietly(self, run: RotationRun, record: SecretRecord, version: int) -> str:
        """Revoke a value nobody was served; a failure is noted, never raised."""
        try:
            value = self._readable_value(record, version)
            if value is None:
                return "not possible: the value is gone"
            self._rotator(record).revoke(self._context(run, record), value)
            return "done"
        except Exception as error:
            logger.warning("revoking the new value failed", extra={"secret_id": run.secret_id,
                                                                    "rotation_id": run.run_id,
                                                                    "error": type(error).__name__})
            return f"failed ({getattr(error, 'code', type(error).__name__)})"

    def _retry_later(self, run: RotationRun, error: Exception, raise_failure: bool) -> RotationRun:
        attempts = run.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            if run.step is RunStep.RETIRE:
                return self._give_up_retire(run, error)
            failed = self._fail(run, error)
            if raise_failure:
                raise _for_caller(error, failed) from None
            return failed
        now = self.clock.now()
        delay = min(BACKOFF_BASE * (2 ** (attempts - 1)), BACKOFF_CAP)
        problem = _describe(run.step.value, error)
        next_run = run.advance(now, attempts=attempts, error=problem, next_at=now + delay, lease_owner=None,
                               lease_until=None, history=run.noted(now, run.step.value, "retrying", problem["code"]))
        draft = system_draft(Action.ROTATION_STEP, status=Status.FAILURE, secret_id=run.secret_id,
                             version=run.new_version, details={"rotation_id": run.run_id, **problem,
                                                               "attempt": attempts, "retry_in_seconds":
                                                               int(delay.total_seconds())})
        self._record_step(draft, next_run)
        return next_run

    def _give_up_retire(self, run: RotationRun, error: Exception) -> RotationRun:
        """Retirement could not revoke the value: the run ends, the failure stays on record."""
        problem = _describe("retire", error)

        def change(current: SecretRecord) -> _Change:
            now = self.clock.now()
            updated = current.model_copy(update={"rotation_run": None, "updated_at": now, "rev": current.rev + 1})
            draft = system_draft(Action.ROTATION_STEP, status=Status.FAILURE, secret_id=current.secret_id,
                                 version=run.retire_version, details={"rotation_id": run.run_id, **problem})
            next_run = run.advance(now, step=RunStep.DONE, error=problem, next_at=None, lease_owner=None,
                                   lease_until=None, history=run.noted(now, "retire", "failed", problem["code"]))
            return _Change(updated, draft, next_run)

        _record, run = self._commit(run, None, change)
        return run

    def _abandon(self, run: RotationRun, why: str) -> RotationRun:
        """The secret is gone: nothing can be revoked or relabelled; the run just ends."""
        now = self.clock.now()
        status = run.status if run.status is not RunStatus.IN_PROGRESS else RunStatus.FAILED
        ended = run.advance(now, status=status, step=RunStep.DONE, next_at=None, lease_owner=None, lease_until=None,
                            error={"step": run.step.value, "code": "secret_gone", "message": why},
                            history=run.noted(now, run.step.value, "failed", "secret_gone"))
        try:
            self.runs.save(ended)
        except RunConflict:
            raise LeaseLost(run.run_id) from None
        return ended

    # --- shared pieces ---------------------------------------------------------------------

    def _owned(self, run: RotationRun) -> SecretRecord | None:
        """The secret's META item if this run still holds it (None: destroyed); LeaseLost otherwise."""
        record = self.repo.get(run.secret_id)
        if record is None or record.destroyed:
            return None
        if (record.rotation_run or {}).get("id") != run.run_id:
            raise LeaseLost(run.run_id)
        return record

    def _commit(self, run: RotationRun, record: SecretRecord | None, change: Callable[[SecretRecord], _Change],
                *, notify: str | None = None) -> tuple[SecretRecord, RotationRun]:
        """One transaction: META (guarded by ``rev``), maybe a version, the run (guarded by ``seq``), the event.

        With ``notify`` (a detail type), the run's notification joins the transaction in the
        outbox and is delivered after the commit.
        """
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            current = record if record is not None else self._owned(run)
            record = None
            if current is None:
                raise SecretNotFound(f"secret '{run.secret_id}' not found")
            planned = change(current)
            expired = self.vault.expired_versions(planned.record) if planned.version is not None else ()
            notice = self.notice(notify, planned.run) if notify else None
            items = (self.runs.put_item(planned.run),) + ((self.outbox.put_item(notice),) if notice else ())
            try:
                self.repo.commit(planned.draft, record=planned.record, expected_rev=current.rev,
                                 new_version=planned.version, destroy_versions=expired, extra_items=items)
            except StaleRecord:
                continue
            except TransactionCancelled:
                raise LeaseLost(run.run_id) from None
            if notice is not None:
                self.deliver(notice)
            return planned.record, planned.run
        raise VersionConflict(f"'{run.secret_id}' is being written by others; the step will be retried")

    def _note(self, run: RotationRun, following: RunStep, done: str, status: str = "done") -> RotationRun:
        """A step without META change: the run's next step and its audit event, in one transaction."""
        now = self.clock.now()
        next_run = self._next(run, now, following, done, status)
        self._record_step(self._step_draft(run, None, done, status), next_run)
        return next_run

    def _record_step(self, draft: AuditDraft, next_run: RotationRun) -> None:
        try:
            self.repo.record_event(draft, (self.runs.put_item(next_run),))
        except TransactionCancelled:
            raise LeaseLost(next_run.run_id) from None

    def _next(self, run: RotationRun, now: datetime, following: RunStep, done: str, status: str = "done",
              **changes: Any) -> RotationRun:
        return run.advance(now, step=following, attempts=0, error=None, lease_owner=self.worker_id,
                           lease_until=now + self.lease, history=run.noted(now, done, status), **changes)

    def _release(self, run: RotationRun, *, next_at: datetime | None, note: str | None = None) -> RotationRun:
        now = self.clock.now()
        history = run.noted(now, run.step.value, "waiting", note) if note else run.history
        released = run.advance(now, next_at=next_at, lease_owner=None, lease_until=None, history=history)
        try:
            self.runs.save(released)
        except RunConflict:
            raise LeaseLost(run.run_id) from None
        return released

    def _expiry(self, record: SecretRecord, run: RotationRun) -> datetime | None:
        """When the new value expires (its version's facts), for ``rotateBeforeExpiryDays``."""
        if not rotation_config.load(run.config).rotate_before_expiry_days:
            return None
        version = self.repo.get_version(record.secret_id, self._new(run))
        return rotation_config.value_expiry(version.facts if version else None)

    def _step_draft(self, run: RotationRun, record: SecretRecord | None, step: str, status: str,
                    **details: Any) -> AuditDraft:
        return system_draft(Action.ROTATION_STEP, secret_id=run.secret_id, version=run.new_version,
                            compliance_standards=record.compliance if record else [],
                            details={"rotation_id": run.run_id, "step": step, "status": status, **details})

    def _rotator(self, record: SecretRecord) -> Rotator:
        return get_rotator(record.type)

    def _context(self, run: RotationRun, record: SecretRecord) -> RotationContext:
        current = None
        if record.current is not None:
            current = decrypt_value(record.current, record.secret_id, record.current_version, record.type,
                                    self.vault.keys)
        return RotationContext(secret_id=record.secret_id, secret_type=SecretType(record.type), config=run.config,
                               metadata=dict(record.metadata), current_value=current,
                               resolve_secret=functools.partial(self._resolve, run), value_schema=record.value_schema,
                               rotation_id=run.run_id)

    def _resolve(self, run: RotationRun, secret_id: str) -> str:
        """Another secret the run's options name (``masterSecretId``...), read as the system, audited."""
        if secret_id not in rotation_config.referenced_secret_ids(run.config):
            raise InvalidRequest(f"the rotation options of '{run.secret_id}' do not name '{secret_id}'")
        return self.vault.read_for_system(secret_id, reason=f"rotation {run.run_id} of {run.secret_id}")

    def envelope_of(self, record: SecretRecord, version: int) -> Envelope:
        if version == record.current_version and record.current is not None:
            return record.current
        for envelope in record.staged.values():
            if envelope.ctx.version == version:
                return envelope
        stored = self.repo.get_version(record.secret_id, version)
        if stored is None or stored.envelope is None:
            raise VersionNotFound(f"'{record.secret_id}' has no readable version {version}")
        return stored.envelope

    def _value(self, record: SecretRecord, version: int) -> str:
        return decrypt_value(self.envelope_of(record, version), record.secret_id, version, record.type, self.vault.keys)

    def _readable_value(self, record: SecretRecord, version: int) -> str | None:
        try:
            return self._value(record, version)
        except VersionNotFound:
            return None

    @staticmethod
    def _new(run: RotationRun) -> int:
        if run.new_version is None:
            raise VersionNotFound(f"rotation {run.run_id} has no new version yet")
        return run.new_version

    def live_record(self, secret_id: str) -> SecretRecord:
        record = self.repo.get(secret_id)
        if record is None or record.destroyed:
            raise SecretNotFound(f"secret '{secret_id}' not found")
        if record.deleted:
            raise SecretDeleted(f"'{secret_id}' is scheduled for deletion; restore it first")
        return record

    def notice(self, detail_type: str, run: RotationRun) -> Notice:
        """The notification of ``run`` (an outbox item to commit with the change it reports)."""
        return new_notice(detail_type, event_detail(run), self.clock.now())

    def deliver(self, notice: Notice) -> bool:
        """Right after its commit: publish ``notice`` and remove it from the outbox once accepted."""
        self._fault(f"publish:{notice.detail_type}")
        return deliver(self.notifier, self.outbox, notice)

    def _fault(self, point: str) -> None:
        if self.fault is not None:
            self.fault(point)


class NotDue(Exception):
    """A scheduled start found the secret not (or no longer) due."""


def _due(record: SecretRecord, now: datetime) -> bool:
    config = rotation_config.load(record.rotation)
    return (rotation_config.generates_automatically(config) and record.sched_pk == rotation_config.ROTATION
            and record.sched_at is not None and record.sched_at <= isoformat(now))


def _describe(step: str, error: Exception) -> dict[str, Any]:
    """A failure as recorded: step, code and message (v-secure messages never hold values)."""
    if isinstance(error, VSecureError):
        return {"step": step, "code": error.code, "message": error.message[:500]}
    return {"step": step, "code": "rotation_failed", "message": f"unexpected {type(error).__name__}"}


def _for_caller(error: Exception, run: RotationRun) -> VSecureError:
    """The error a manual rotate answers with, naming the run it aborted."""
    if isinstance(error, VSecureError):
        error.details = {**error.details, "rotationId": run.run_id, "step": (run.error or {}).get("step")}
        return error
    return RotationFailed(f"the {(run.error or {}).get('step')} step failed unexpectedly; the rotation was aborted "
                          "and CURRENT is unchanged", details={"rotationId": run.run_id})


def event_detail(run: RotationRun) -> dict[str, Any]:
    """The EventBridge detail of a run event (never a value)."""
    detail: dict[str, Any] = {
        "secretId": run.secret_id, "rotationId": run.run_id, "secretType": run.secret_type,
        "strategy": run.strategy, "status": run.status.value, "step": run.step.value, "trigger": run.trigger,
        "oldVersion": run.old_version, "newVersion": run.new_version, "requestedBy": run.requested_by,
        "notifyServices": run.notify_services,
    }
    if run.error:
        detail["error"] = {"step": run.error.get("step"), "code": run.error.get("code")}
    return detail


def _build_engine() -> RotationEngine:
    from chalicelib.aws import client
    from chalicelib.notify import get_notifier
    from chalicelib.rotation.outbox import DynamoOutbox
    from chalicelib.rotation.runs import DynamoRunStore
    from chalicelib.vault.service import get_vault_service

    table = get_settings().secrets_table
    runs = DynamoRunStore(client("dynamodb"), table)
    return RotationEngine(get_vault_service(), runs, get_notifier(), DynamoOutbox(client("dynamodb"), table))


_engine = ProcessSingleton(_build_engine)


def get_rotation_engine() -> RotationEngine:
    return _engine.get()


def reset_rotation_engine() -> None:
    _engine.reset()
