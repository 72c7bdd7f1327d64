"""Rotation use cases for callers: configure, rotate, status, switch, rollback.

Each authorizes the caller on the secret (configure: ``write``, plus ``read`` on every other
secret the options name; rotate and switch: ``rotate``; rollback: ``write``; status: ``read``)
and hands the work to the :class:`~chalicelib.rotation.engine.RotationEngine`.

Example::

    answer = get_rotation_service().rotate(caller, "stripe_api_key", RotateRequest(strategy="canary"))
    answer.progress.rolled_out   # 5
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.access_control.context import Caller
from chalicelib.audit.events import Action
from chalicelib.errors import PayloadTooLarge, SecretDeleted
from chalicelib.models import Permission, RollbackRequest, RollbackResponse
from chalicelib.rotation import config as rotation_config
from chalicelib.rotation.engine import Actor, RotationEngine, get_rotation_engine
from chalicelib.rotation.models import (
    ConfigureRequest,
    ConfigureResponse,
    RotateRequest,
    RotateResponse,
    RotationRollbackRequest,
    RotationRunInfo,
    RotationStatusResponse,
    RunError,
    RunStepInfo,
    SwitchRequest,
    progress_of,
)
from chalicelib.rotation.rollback import rollback_rotation
from chalicelib.rotation.rollout import effective_percent
from chalicelib.rotation.rotators.base import RotationNotSupported, get_rotator
from chalicelib.rotation.runs import RotationRun, RunStep
from chalicelib.secret_types import validate_value
from chalicelib.singleton import ProcessSingleton
from chalicelib.vault.records import SecretRecord


class RotationService:
    def __init__(self, engine: RotationEngine) -> None:
        self.engine = engine
        self.vault = engine.vault

    # --- configure -------------------------------------------------------------------------

    def configure(self, caller: Caller, secret_id: str, request: ConfigureRequest) -> ConfigureResponse:
        stored = request.rotation.stored()
        for other in sorted(rotation_config.referenced_secret_ids(stored)):
            self.vault.authorized(caller, Action.SECRET_CONFIGURE, Permission.READ, other)

        def change(record: SecretRecord) -> tuple[SecretRecord, Any]:
            if record.deleted:
                raise SecretDeleted(f"'{secret_id}' is scheduled for deletion; restore it first")
            _check_rotator(record.type, request.rotation, stored)
            now = self.engine.clock.now()
            base, expires_at = self._value_age(record)
            if record.rotation_run:  # the interval counts from the run in progress
                base = now
            schedule = rotation_config.schedule_fields(stored, base=base, now=now, expires_at=expires_at)
            updated = record.model_copy(update={"rotation": stored, "updated_at": now, "rev": record.rev + 1,
                                                **schedule})
            draft = caller.draft(Action.SECRET_CONFIGURE, secret_id=secret_id, reason=request.reason,
                                 compliance_standards=record.compliance,
                                 details={"rotation": _summary(stored), "options": sorted(request.rotation.options)})
            return updated, draft

        _before, after = self.vault.change(caller, Action.SECRET_CONFIGURE, Permission.WRITE, secret_id, change)
        return ConfigureResponse(secret_id=secret_id, rotation=stored, next_rotation_at=_due_at(after))

    def _value_age(self, record: SecretRecord) -> tuple[datetime, datetime | None]:
        """(When the interval counts from, when the current value expires).

        The interval counts from the last rotation, else from when the current value was stored.
        """
        version = self.vault.repo.get_version(record.secret_id, record.current_version)
        stored_at = version.created_at if version is not None else record.created_at
        expires_at = rotation_config.value_expiry(version.facts if version else None, record.expires_at)
        return record.rotated_at or stored_at, expires_at

    # --- rotate ----------------------------------------------------------------------------

    def rotate(self, caller: Caller, secret_id: str, request: RotateRequest) -> RotateResponse:
        record = self.vault.authorized(caller, Action.SECRET_ROTATE, Permission.ROTATE, secret_id)
        if record.deleted:
            raise SecretDeleted(f"'{secret_id}' is scheduled for deletion; restore it first")
        value = request.value.get_secret_value() if request.value is not None else None
        if value is not None:
            limit = self.vault.settings.max_value_bytes
            if len(value.encode()) > limit:
                raise PayloadTooLarge(f"secret values are limited to {limit} bytes")
            validate_value(record.type, value, value_schema=record.value_schema)
        overrides = {"strategy": request.strategy.value if request.strategy else None,
                     "rolloutDurationHours": request.rollout_duration_hours, "testNewKey": request.test_new_key}
        run = self.engine.start(secret_id, actor=Actor(caller), trigger="manual", overrides=overrides,
                                reason=request.reason, notify_services=request.notify_services,
                                value_given=value is not None)
        run = self.engine.drive(run, value=value, raise_failure=True)
        return answer(run, self.engine.clock.now())

    # --- switch, rollback ------------------------------------------------------------------

    def switch(self, caller: Caller, secret_id: str, request: SwitchRequest) -> RotateResponse:
        self.vault.authorized(caller, Action.SECRET_SWITCH, Permission.ROTATE, secret_id)
        run = self.engine.switch(secret_id, actor=Actor(caller), reason=request.reason)
        return answer(run, self.engine.clock.now())

    def rollback(self, caller: Caller, secret_id: str, request: RotationRollbackRequest) -> RotateResponse:
        self.vault.authorized(caller, Action.SECRET_ROLLBACK, Permission.WRITE, secret_id)
        _before, _after, run = rollback_rotation(self.engine, secret_id, actor=Actor(caller), version=request.version,
                                                 reason=request.reason)
        return answer(run, self.engine.clock.now())

    def rollback_to_version(self, caller: Caller, secret_id: str, request: RollbackRequest) -> RollbackResponse:
        """``POST /secrets/{id}/rollback`` while a rotation holds the secret."""
        self.vault.authorized(caller, Action.SECRET_ROLLBACK, Permission.WRITE, secret_id)
        before, after, _run = rollback_rotation(self.engine, secret_id, actor=Actor(caller), version=request.version,
                                                reason=request.reason)
        return RollbackResponse(secret_id=secret_id, version=after.current_version,
                                previous_version=before.current_version)

    # --- status ----------------------------------------------------------------------------

    def status(self, caller: Caller, secret_id: str) -> RotationStatusResponse:
        record = self.vault.authorized(caller, Action.SECRET_DESCRIBE, Permission.READ, secret_id)
        recent = self.engine.runs.recent(secret_id, 5)
        active_id = (record.rotation_run or {}).get("id")
        run = next((r for r in recent if r.run_id == active_id), None)
        if run is None and active_id:
            run = self.engine.runs.get(secret_id, str(active_id))
        run = run or (recent[0] if recent else None)
        self.vault.repo.record_event(caller.draft(Action.SECRET_DESCRIBE, secret_id=secret_id,
                                                  compliance_standards=record.compliance,
                                                  details={"view": "rotation"}))
        now = self.engine.clock.now()
        return RotationStatusResponse(
            secret_id=secret_id, rotation=record.rotation, next_rotation_at=_due_at(record),
            run=run_info(run, record, now) if run else None, recent=[answer(r, now, record) for r in recent])


def _check_rotator(secret_type: str, config: rotation_config.RotationConfig, stored: dict[str, Any]) -> None:
    rotator = get_rotator(secret_type)
    if rotation_config.generates_automatically(config) and not getattr(rotator, "generates", True):
        raise RotationNotSupported(f"{secret_type} secrets are not rotated on a schedule (their values are not "
                                   "generated); set interval to null and rotate them with a new value")
    check = getattr(rotator, "check_config", None)
    if check is not None:
        check(stored)


def _summary(stored: dict[str, Any]) -> dict[str, Any]:
    keys = ("enabled", "interval", "strategy", "rolloutDurationHours", "testNewKey", "retireAfter")
    return {k: stored[k] for k in keys if k in stored}


def _due_at(record: SecretRecord) -> datetime | None:
    if record.sched_pk == rotation_config.ROTATION and record.sched_at:
        return datetime.fromisoformat(record.sched_at)
    return None


def _percent(run: RotationRun, record: SecretRecord | None, now: datetime) -> int:
    if run.status.value == "completed":
        return 100
    if run.step is RunStep.ROLLOUT and record is not None and record.rollout and \
            (record.rotation_run or {}).get("id") == run.run_id:
        return effective_percent(record.rollout, now)
    return run.percent if run.step is RunStep.ROLLOUT else 0


def answer(run: RotationRun, now: datetime, record: SecretRecord | None = None) -> RotateResponse:
    """The spec's ``rotate()`` answer for a run."""
    return RotateResponse(
        rotation_id=run.run_id, secret_id=run.secret_id, old_version=run.old_version, new_version=run.new_version,
        status=run.status.value, step=run.step.value, strategy=run.strategy,
        progress=progress_of(_percent(run, record, now)),
        error=RunError.model_validate(run.error) if run.error else None)


def run_info(run: RotationRun, record: SecretRecord, now: datetime) -> RotationRunInfo:
    base = answer(run, now, record).model_dump()
    return RotationRunInfo(
        **base, trigger=run.trigger, requested_by=run.requested_by, started_at=run.created_at,
        updated_at=run.updated_at, finished_at=run.finished_at, rollout_started_at=run.rollout_started_at,
        retire_version=run.retire_version, retire_at=run.retire_at,
        next_attempt_at=run.next_at if run.active else None, attempts=run.attempts,
        notify_services=run.notify_services,
        steps=[RunStepInfo(name=s.name, status=s.status, at=s.at, detail=s.detail) for s in run.history])


_service = ProcessSingleton(lambda: RotationService(get_rotation_engine()))


def get_rotation_service() -> RotationService:
    return _service.get()


def reset_rotation_service() -> None:
    _service.reset()
