"""Emergency rollback of a rotation: the old version again, for everyone, in one conditional write.

During a rotation (create ... finish) or after it while the old value is not retired yet, a
rollback:

* moves ``CURRENT`` to the rotation's old version and drops ``PENDING`` (another ``version`` is
  refused: roll the rotation back first, then roll back further as usual);
* ends any rollout (``rollout`` and the staged envelope go), so every retrieve serves ``CURRENT``;
* marks the run ``rolled_back`` and schedules the revocation of the new value: at once when
  nobody was served it, else after ``retireAfter`` (clients may hold it), never before the lease
  of a worker still inside a step has expired;
* records ``rotation_rolled_back`` and the ``RotationRolledBack`` notification (outbox) in the
  same transaction, then publishes it.

``POST /secrets/{id}/rollback`` (``v-secure secret rollback --version N``) comes here when a
rotation holds the secret; ``POST /secrets/{id}/rotation/rollback`` (``secret rollback`` without
``--version``) always does.

Example::

    run = rollback_rotation(engine, "prod/db", actor=Actor(caller), reason="new key rejected by billing")
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from chalicelib.audit.events import Action
from chalicelib.audit.stream import TransactionCancelled
from chalicelib.errors import Conflict, InvalidRequest, VersionConflict
from chalicelib.notify import ROTATION_ROLLED_BACK
from chalicelib.rotation import config as rotation_config
from chalicelib.rotation.engine import CLEANUP, RETIRING, ROTATING, Actor, NoRotationInProgress, RotationEngine
from chalicelib.rotation.runs import RotationRun, RunStatus, RunStep
from chalicelib.vault.records import CURRENT, PENDING, PREVIOUS, SecretRecord
from chalicelib.vault.service import MAX_WRITE_ATTEMPTS
from chalicelib.vault.storage import StaleRecord


class RotationAlreadyEnded(Conflict):
    code = "rotation_already_ended"


def rollback_rotation(engine: RotationEngine, secret_id: str, *, actor: Actor, version: int | None = None,
                      reason: str | None = None) -> tuple[SecretRecord, SecretRecord, RotationRun]:
    """Undo the rotation holding ``secret_id``; returns (META before, META after, the run)."""
    for _attempt in range(MAX_WRITE_ATTEMPTS):
        record = engine.live_record(secret_id)
        pointer = record.rotation_run or {}
        if pointer.get("phase") not in (ROTATING, RETIRING):
            raise NoRotationInProgress(f"no rotation of '{secret_id}' can be rolled back; use a rollback to a "
                                       "version (v-secure secret rollback --version N)")
        run = engine.runs.get(secret_id, str(pointer.get("id")))
        if run is None or run.status in (RunStatus.FAILED, RunStatus.ROLLED_BACK):
            raise RotationAlreadyEnded(f"the rotation of '{secret_id}' already ended; roll back to a version instead")
        old = run.retire_version if run.status is RunStatus.COMPLETED else run.old_version
        target = old if version is None else version
        if target is None or target != old:
            raise InvalidRequest(f"during a rotation, roll back to its old version {old} (then to any other)",
                                 details={"oldVersion": old})
        updated, after_run = _undo(engine, record, run, target, actor, reason)
        notice = engine.notice(ROTATION_ROLLED_BACK, after_run)
        try:
            engine.repo.commit(_draft(actor, record, run, target, reason), record=updated, expected_rev=record.rev,
                               extra_items=(engine.runs.put_item(after_run), engine.outbox.put_item(notice)))
        except (StaleRecord, TransactionCancelled):
            continue
        engine.deliver(notice)
        return record, updated, engine.retire_if_due(after_run)
    raise VersionConflict(f"'{secret_id}' is being written by others; try again")


def _undo(engine: RotationEngine, record: SecretRecord, run: RotationRun, target: int, actor: Actor,
          reason: str | None) -> tuple[SecretRecord, RotationRun]:
    now = engine.clock.now()
    envelope = engine.envelope_of(record, target)
    labels = {k: v for k, v in record.labels.items() if k != PENDING}
    if target != record.current_version:
        labels[PREVIOUS] = record.current_version
    labels[CURRENT] = target
    exposed = run.rollout_started_at is not None or run.status is RunStatus.COMPLETED
    retire_version = run.new_version
    retire_at = now + timedelta(seconds=rotation_config.load(run.config).retire_after_seconds if exposed else 0)
    if run.lease_owner is not None and run.lease_until is not None and run.lease_until > retire_at:
        retire_at = run.lease_until  # a worker may still be inside apply(): revoke after it is gone
    pending_cleanup = retire_version is not None
    updated = record.model_copy(update={
        "labels": labels, "current_version": target, "current": envelope, "rollout": None,
        "staged": {k: v for k, v in record.staged.items() if k != PENDING},
        "rotation_run": {"id": run.run_id, "phase": CLEANUP} if pending_cleanup else None,
        "updated_at": now, "rev": record.rev + 1})
    after = run.advance(now, status=RunStatus.ROLLED_BACK, step=RunStep.RETIRE if pending_cleanup else RunStep.DONE,
                        retire_version=retire_version, retire_at=retire_at if pending_cleanup else None,
                        next_at=retire_at if pending_cleanup else None, finished_at=now, lease_owner=None,
                        lease_until=None, reason=reason or run.reason,
                        history=run.noted(now, "rollback", "done", f"by {actor.principal_id} to version {target}"))
    return updated, after


def _draft(actor: Actor, record: SecretRecord, run: RotationRun, target: int, reason: str | None) -> Any:
    return actor.draft(Action.ROTATION_ROLLED_BACK, secret_id=record.secret_id, version=target, reason=reason,
                       compliance_standards=record.compliance,
                       details={"rotation_id": run.run_id, "from_version": record.current_version,
                                "new_version": run.new_version, "step": run.step.value})
