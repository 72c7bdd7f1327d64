"""Rotation runs: one persisted state machine per rotation, in the secrets table.

Items: ``pk = ROTATION#<secret id>``, ``sk = RUN#<run id>`` (run ids sort by start time). Every
write is conditioned on the run's ``seq`` (optimistic concurrency), so a worker that lost its
lease, or was overtaken by a rollback or a switch, cannot write over what happened since.

The *lease* (``lease_owner``, ``lease_until``) says which worker is executing a step. A worker
claims a run only when the lease is free or expired; that claim is itself a ``seq``-guarded
write. While a run is active it carries ``sched_pk = "ROTATION_RUN"`` and ``sched_at`` = when it
needs attention (lease expiry, the next rollout stage, retirement, a retry), so the scheduler
finds it with one Query on the ``scheduled`` index.

Example::

    store = DynamoRunStore(client("dynamodb"), settings.secrets_table)
    run = store.get("prod/db", "rot_20260115T103000_1a2b3c4d")
    store.save(run.advance(clock.now(), step=RunStep.SET))
"""

from __future__ import annotations

import secrets as random
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from chalicelib.clock import isoformat
from chalicelib.errors import DependencyUnavailable
from chalicelib.tables import SCHEDULE_INDEX
from chalicelib.vault.storage import dynamodb_call, from_attributes, to_attributes

RUN_SCHEDULE = "ROTATION_RUN"


class RunStep(StrEnum):
    """The next thing a run has to do (``done``: nothing)."""

    CREATE = "create"
    SET = "set"
    TEST = "test"
    ROLLOUT = "rollout"
    FINISH = "finish"
    RETIRE = "retire"
    DONE = "done"


class RunStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class StepRecord(BaseModel):
    """One entry of a run's history (never a value)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    status: str
    """``done``, ``skipped``, ``failed``, ``retrying``, ``started``."""
    at: datetime
    detail: str | None = None


class RunConflict(Exception):
    """The run changed since it was read (another worker, a rollback, a switch)."""


class RotationRun(BaseModel):
    """A rotation run as stored."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    secret_id: str
    secret_type: str
    strategy: str
    config: dict[str, Any] = Field(default_factory=dict)
    """The rotation block this run uses (the secret's, with the request's overrides)."""
    trigger: str = "manual"
    requested_by: str
    actor_type: str = "system"
    reason: str | None = None
    notify_services: list[str] = Field(default_factory=list)
    status: RunStatus = RunStatus.IN_PROGRESS
    step: RunStep = RunStep.CREATE
    old_version: int
    new_version: int | None = None
    percent: int = 0
    rollout_started_at: datetime | None = None
    retire_version: int | None = None
    retire_at: datetime | None = None
    attempts: int = 0
    """Failed attempts of the current step (transient errors, retried with backoff)."""
    error: dict[str, Any] | None = None
    """``{"step", "code", "message"}`` of the last failure."""
    history: list[StepRecord] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    next_at: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    seq: int = 0

    @property
    def active(self) -> bool:
        return self.step is not RunStep.DONE

    def leased_by_other(self, worker: str, now: datetime) -> bool:
        return (self.lease_owner is not None and self.lease_owner != worker
                and self.lease_until is not None and self.lease_until > now)

    def advance(self, now: datetime, **changes: Any) -> RotationRun:
        """The next revision of this run (``seq`` + 1) with ``changes``."""
        data = self.model_dump()
        data.update(changes, seq=self.seq + 1, updated_at=now)
        return RotationRun.model_validate(data)

    def noted(self, now: datetime, name: str, status: str, detail: str | None = None) -> list[StepRecord]:
        """The history with one more entry (kept to the last 50)."""
        return [*self.history, StepRecord(name=name, status=status, at=now, detail=detail)][-50:]

    def sched_at(self) -> datetime | None:
        """When the scheduler should look at this run: lease expiry while leased, else ``next_at``."""
        if not self.active:
            return None
        if self.lease_owner is not None and self.lease_until is not None:
            return self.lease_until
        return self.next_at


def new_run_id(now: datetime) -> str:
    return f"rot_{now.strftime('%Y%m%dT%H%M%S')}_{random.token_hex(4)}"


def run_pk(secret_id: str) -> str:
    return f"ROTATION#{secret_id}"


def run_sk(run_id: str) -> str:
    return f"RUN#{run_id}"


def run_item(run: RotationRun) -> dict[str, Any]:
    data = run.model_dump(mode="python")
    data.update(pk=run_pk(run.secret_id), sk=run_sk(run.run_id))
    due = run.sched_at()
    if due is not None:
        data.update(sched_pk=RUN_SCHEDULE, sched_at=isoformat(due))
    return to_attributes(data)


class RunStore(Protocol):
    """Where runs are kept. ``put_item`` is a TransactWriteItems element for a run's next revision."""

    def get(self, secret_id: str, run_id: str) -> RotationRun | None: ...

    def recent(self, secret_id: str, limit: int = 5) -> list[RotationRun]: ...

    def due(self, until: datetime, limit: int = 100) -> list[tuple[str, str]]: ...

    def put_item(self, run: RotationRun) -> dict[str, Any]: ...

    def save(self, run: RotationRun) -> None: ...

    def claim_slot(self, name: str, now: datetime, every: timedelta) -> bool: ...


class DynamoRunStore:
    """Runs in the secrets table."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def get(self, secret_id: str, run_id: str) -> RotationRun | None:
        item = self._call("GetItem", self._db.get_item, TableName=self._table, ConsistentRead=True,
                          Key={"pk": {"S": run_pk(secret_id)}, "sk": {"S": run_sk(run_id)}}).get("Item")
        return _run(item) if item else None

    def recent(self, secret_id: str, limit: int = 5) -> list[RotationRun]:
        """The latest runs of a secret, newest first."""
        answer = self._call("Query", self._db.query, TableName=self._table, ConsistentRead=True,
                            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
                            ExpressionAttributeValues={":pk": {"S": run_pk(secret_id)}, ":r": {"S": "RUN#"}},
                            ScanIndexForward=False, Limit=limit)
        return [_run(item) for item in answer.get("Items", [])]

    def due(self, until: datetime, limit: int = 100) -> list[tuple[str, str]]:
        """``(secret id, run id)`` of active runs needing attention at ``until`` (index, eventually consistent)."""
        answer = self._call("Query", self._db.query, TableName=self._table, IndexName=SCHEDULE_INDEX,
                            KeyConditionExpression="sched_pk = :k AND sched_at <= :t",
                            ExpressionAttributeValues={":k": {"S": RUN_SCHEDULE}, ":t": {"S": isoformat(until)}},
                            Limit=limit)
        found = []
        for item in answer.get("Items", []):
            data = from_attributes(item)
            found.append((str(data["secret_id"]), str(data["run_id"])))
        return found

    def put_item(self, run: RotationRun) -> dict[str, Any]:
        put: dict[str, Any] = {"TableName": self._table, "Item": run_item(run)}
        if run.seq <= 1:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "seq = :seq"
            put["ExpressionAttributeValues"] = {":seq": {"N": str(run.seq - 1)}}
        return {"Put": put}

    def save(self, run: RotationRun) -> None:
        """Write ``run`` alone; :class:`RunConflict` if its previous revision is not the stored one."""
        try:
            self._db.put_item(**self.put_item(run)["Put"])
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            if code == "ConditionalCheckFailedException":
                raise RunConflict(run.run_id) from None
            raise DependencyUnavailable("dynamodb", f"PutItem failed: {code}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("dynamodb", f"PutItem failed: {type(error).__name__}") from None

    def claim_slot(self, name: str, now: datetime, every: timedelta) -> bool:
        """True once per ``every`` for the first caller (``pk = SYSTEM``, ``sk = name``); a clock set back is healed."""
        try:
            self._db.update_item(
                TableName=self._table, Key={"pk": {"S": "SYSTEM"}, "sk": {"S": name}},
                UpdateExpression="SET next_at = :next",
                ConditionExpression="attribute_not_exists(next_at) OR next_at <= :now OR next_at > :horizon",
                ExpressionAttributeValues={":next": {"S": isoformat(now + every)}, ":now": {"S": isoformat(now)},
                                           ":horizon": {"S": isoformat(now + every)}})
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            if code == "ConditionalCheckFailedException":
                return False
            raise DependencyUnavailable("dynamodb", f"UpdateItem failed: {code}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("dynamodb", f"UpdateItem failed: {type(error).__name__}") from None
        return True

    _call = staticmethod(dynamodb_call)


def _run(item: dict[str, Any]) -> RotationRun:
    return RotationRun.model_validate(from_attributes(item))
