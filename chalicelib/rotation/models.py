"""Wire models of the rotation API (camelCase on the wire, as in the spec).

Example::

    request = RotateRequest.model_validate({"strategy": "canary", "rolloutDurationHours": 4})
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, SecretStr

from chalicelib.models import WireModel
from chalicelib.rotation.config import MAX_ROLLOUT_HOURS, RotationConfig, Strategy


class ConfigureRequest(WireModel):
    """The spec's ``vault.configure``: the secret's rotation block (replaced as a whole)."""

    rotation: RotationConfig
    reason: str | None = Field(default=None, max_length=512)


class ConfigureResponse(WireModel):
    secret_id: str
    rotation: dict[str, Any]
    next_rotation_at: datetime | None = None


class RotateRequest(WireModel):
    """The spec's ``vault.rotate``; the fields given override the secret's rotation block for this run."""

    strategy: Strategy | None = None
    rollout_duration_hours: float | None = Field(default=None, gt=0, le=MAX_ROLLOUT_HOURS)
    test_new_key: bool | None = None
    notify_services: list[str] = Field(default_factory=list, max_length=50)
    value: SecretStr | None = None
    """The new value, for types whose values are not generated (``configuration``), or to rotate to a
    value obtained elsewhere. It goes through the same validation, test and rollout."""
    reason: str | None = Field(default=None, max_length=512)


class Progress(BaseModel):
    """``{"rolled_out": 30, "total": 100}``: the share of requesters served the new version."""

    rolled_out: int
    total: int = 100


class RunError(WireModel):
    step: str
    code: str
    message: str


class RotateResponse(WireModel):
    """The spec's ``rotate()`` answer, plus where the run is."""

    rotation_id: str
    secret_id: str
    old_version: int
    new_version: int | None = None
    status: str
    """``in_progress``, ``completed``, ``failed`` or ``rolled_back``."""
    step: str
    """The next step: create, set, test, rollout, finish, retire, or done."""
    strategy: str
    progress: Progress
    error: RunError | None = None


class RunStepInfo(WireModel):
    name: str
    status: str
    at: datetime
    detail: str | None = None


class RotationRunInfo(RotateResponse):
    trigger: str
    requested_by: str
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    rollout_started_at: datetime | None = None
    retire_version: int | None = None
    retire_at: datetime | None = None
    next_attempt_at: datetime | None = None
    attempts: int = 0
    notify_services: list[str] = Field(default_factory=list)
    steps: list[RunStepInfo] = Field(default_factory=list)


class RotationStatusResponse(WireModel):
    """``GET /secrets/{id}/rotation``: the configuration, the next due time, the run and recent runs."""

    secret_id: str
    rotation: dict[str, Any] | None = None
    next_rotation_at: datetime | None = None
    run: RotationRunInfo | None = None
    """The active run, else the latest one."""
    recent: list[RotateResponse] = Field(default_factory=list)


class SwitchRequest(WireModel):
    reason: str | None = Field(default=None, max_length=512)


class RotationRollbackRequest(WireModel):
    """Roll back the rotation in progress (or the one waiting to retire the old version)."""

    version: int | None = Field(default=None, ge=1)
    """The version to make CURRENT (default: the rotation's old version)."""
    reason: str | None = Field(default=None, max_length=512)


def progress_of(percent: int) -> Progress:
    return Progress(rolled_out=max(0, min(100, percent)))

