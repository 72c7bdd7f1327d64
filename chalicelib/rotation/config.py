"""A secret's rotation configuration (the spec's ``rotation`` block) and its schedule.

The block is stored on the secret's META item in its wire form (camelCase), per-type options
included, and handed to the rotator as ``RotationContext.config``::

    {"enabled": true, "interval": "30d", "strategy": "rolling", "rolloutDurationHours": 4,
     "testNewKey": true, "retireAfter": "24h", "provider": {"url": "https://keys.example/new"}}

The next due time is indexed (``sched_pk = "ROTATION"``, ``sched_at``) so the scheduler finds
due secrets with one Query on the ``scheduled`` index.

Example::

    config = RotationConfig.model_validate({"interval": "30d", "strategy": "canary"})
    fields = schedule_fields(config.stored(), base=record.created_at, now=clock.now())
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from chalicelib.clock import isoformat
from chalicelib.config import get_settings, parse_duration

ROTATION = "ROTATION"
"""``sched_pk`` of a secret whose next rotation is due at ``sched_at``."""
MIN_INTERVAL_SECONDS = 60
MAX_ROLLOUT_HOURS = 24 * 30
DEFAULT_RETIRE_AFTER = "24h"
DEFAULT_ROLLOUT_HOURS = 4.0
FAILED_RUN_RETRY = timedelta(hours=1)
"""After a failed run the next automatic attempt comes this much later, doubled for each failed run in a row
(never later than the interval, or a day)."""


class Strategy(StrEnum):
    IMMEDIATE = "immediate"
    ROLLING = "rolling"
    CANARY = "canary"
    BLUE_GREEN = "blue-green"


class RotationConfig(BaseModel):
    """The rotation block. Unknown keys are per-type options, kept as given (camelCase)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    enabled: bool = True
    interval: str | None = None
    """How often to rotate (``30d``, ``12h``); None: only when asked (``POST .../rotate``)."""
    strategy: Strategy | None = None
    """None: ``V_SECURE_ROTATION_STRATEGY``."""
    rollout_duration_hours: float = Field(default=DEFAULT_ROLLOUT_HOURS, gt=0, le=MAX_ROLLOUT_HOURS)
    test_new_key: bool = True
    retire_after: str = DEFAULT_RETIRE_AFTER
    """How long the old value keeps working after the rollout completed (``0s``: revoke at once)."""
    rotate_before_expiry_days: float | None = Field(default=None, gt=0, le=3650)
    """Also rotate this many days before the current value expires (a certificate's ``not_after``, a
    token's ``expires_at``, or the secret's ``expiresAt``)."""

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is None or not str(value).strip():
            return None
        seconds = _duration(value, "interval")
        if seconds < MIN_INTERVAL_SECONDS:
            raise ValueError(f"interval must be at least {MIN_INTERVAL_SECONDS}s")
        return value.strip()

    @field_validator("retire_after")
    @classmethod
    def _retire_after(cls, value: str) -> str:
        _duration(value, "retireAfter")
        return value.strip()

    @model_validator(mode="after")
    def _retire_before_next(self) -> RotationConfig:
        if self.interval and parse_duration(self.retire_after) > parse_duration(self.interval):
            raise ValueError("retireAfter must not be longer than interval (the next rotation needs the old "
                             "value retired)")
        return self

    def stored(self) -> dict[str, Any]:
        """The wire form kept on the secret and given to rotators."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        data.setdefault("strategy", self.effective_strategy().value)
        return data

    def effective_strategy(self) -> Strategy:
        return self.strategy or Strategy(get_settings().rotation_strategy)

    @property
    def interval_seconds(self) -> int | None:
        return parse_duration(self.interval) if self.interval else None

    @property
    def retire_after_seconds(self) -> int:
        return parse_duration(self.retire_after)

    @property
    def options(self) -> dict[str, Any]:
        """The per-type options only."""
        return dict(self.model_extra or {})


def _duration(value: str, name: str) -> int:
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(f"{name} is not a duration (use e.g. 30d, 12h, 15m, 90s)") from None


def load(stored: dict[str, Any] | None) -> RotationConfig:
    """The config kept on a secret (defaults when the secret has none)."""
    return RotationConfig.model_validate(stored or {"enabled": False, "interval": None})


def with_overrides(stored: dict[str, Any] | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The secret's block with one run's overrides (``strategy``, ``rolloutDurationHours``...) applied."""
    merged = dict(stored or {})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return RotationConfig.model_validate(merged).stored()


def generates_automatically(config: RotationConfig) -> bool:
    return bool(config.enabled and (config.interval or config.rotate_before_expiry_days))


def next_due(config: RotationConfig, *, base: datetime, now: datetime,
             expires_at: datetime | None = None) -> datetime | None:
    """When the next automatic rotation is due: ``base + interval`` or ``rotateBeforeExpiryDays`` before
    ``expires_at``, whichever comes first; never in the past."""
    if not config.enabled:
        return None
    candidates = []
    if config.interval_seconds is not None:
        candidates.append(base + timedelta(seconds=config.interval_seconds))
    if config.rotate_before_expiry_days is not None and expires_at is not None:
        candidates.append(expires_at - timedelta(days=config.rotate_before_expiry_days))
    return max(now, min(candidates)) if candidates else None


def schedule_fields(stored: dict[str, Any] | None, *, base: datetime, now: datetime,
                    expires_at: datetime | None = None) -> dict[str, Any]:
    """``sched_pk`` / ``sched_at`` for a secret's META item (both None when nothing is scheduled)."""
    due = next_due(load(stored), base=base, now=now, expires_at=expires_at) if stored else None
    if due is None:
        return {"sched_pk": None, "sched_at": None}
    return {"sched_pk": ROTATION, "sched_at": isoformat(due)}


def after_failure(stored: dict[str, Any] | None, now: datetime, failures: int = 1) -> dict[str, Any]:
    """The schedule after ``failures`` failed runs in a row: :data:`FAILED_RUN_RETRY`, doubled each time."""
    config = load(stored)
    if not generates_automatically(config):
        return {"sched_pk": None, "sched_at": None}
    ceiling = timedelta(seconds=config.interval_seconds) if config.interval_seconds else timedelta(days=1)
    delay = min(FAILED_RUN_RETRY * (2 ** min(max(failures, 1) - 1, 10)), ceiling)
    return {"sched_pk": ROTATION, "sched_at": isoformat(now + delay)}


def value_expiry(facts: dict[str, Any] | None, fallback: datetime | None = None) -> datetime | None:
    """When a value stops working, from its version's facts (``not_after``, ``expires_at``)."""
    for key in ("not_after", "expires_at"):
        found = (facts or {}).get(key)
        if isinstance(found, str):
            try:
                moment = datetime.fromisoformat(found)
            except ValueError:
                continue
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if isinstance(found, datetime):
            return found
    return fallback


def referenced_secret_ids(config: Any) -> set[str]:
    """Ids of other secrets the options name (any key ending in ``SecretId``, at any depth)."""
    found: set[str] = set()
    if isinstance(config, dict):
        for key, value in config.items():
            if isinstance(key, str) and key.endswith("SecretId") and isinstance(value, str):
                found.add(value)
            else:
                found |= referenced_secret_ids(value)
    elif isinstance(config, list):
        for item in config:
            found |= referenced_secret_ids(item)
    return found
