"""Rollout strategies: which share of requesters gets the new version, and when the rollout is over.

* ``immediate``: no rollout; ``CURRENT`` moves as soon as the test passed.
* ``rolling``: the share grows linearly from 0 to 100 % over ``rolloutDurationHours``.
* ``canary``: 5 % for the first half of ``rolloutDurationHours``, 50 % for the second half,
  then 100 %; the scheduler advances the stages.
* ``blue-green``: nobody gets the new version by default; both are readable by label
  (``stage=PENDING`` / ``CURRENT``) until ``switch`` moves ``CURRENT`` in one conditional write.

Example::

    plan = plan_for("canary")
    plan.percent(started, now, hours=4)      # 5, 50 or 100
    plan.next_check(started, now, hours=4)   # when the next stage starts
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from chalicelib.rotation.config import Strategy
from chalicelib.rotation.rollout import linear_percent

CANARY_STAGES = (5, 50, 100)


@dataclass(frozen=True)
class RolloutPlan:
    strategy: Strategy

    @property
    def rolls_out(self) -> bool:
        """False for ``immediate``: no rollout step at all."""
        return self.strategy is not Strategy.IMMEDIATE

    @property
    def finishes_itself(self) -> bool:
        """False for ``blue-green``: the rollout waits for ``switch``."""
        return self.strategy in (Strategy.ROLLING, Strategy.CANARY)

    def percent(self, started: datetime, now: datetime, hours: float) -> int:
        """The share (0-100) of requesters served the new version at ``now``."""
        if self.strategy is Strategy.IMMEDIATE:
            return 100
        if self.strategy is Strategy.BLUE_GREEN:
            return 0
        if self.strategy is Strategy.ROLLING:
            return linear_percent(started, now, hours)
        return CANARY_STAGES[self._canary_stage(started, now, hours)]

    def complete(self, started: datetime, now: datetime, hours: float) -> bool:
        return self.finishes_itself and now >= started + timedelta(hours=hours)

    def next_check(self, started: datetime, now: datetime, hours: float) -> datetime | None:
        """When the scheduler should look at the rollout again (None: never by itself)."""
        if not self.finishes_itself:
            return None
        end = started + timedelta(hours=hours)
        if self.strategy is Strategy.CANARY:
            stage = self._canary_stage(started, now, hours)
            if stage == 0:
                return started + timedelta(hours=hours) / 2
        return end

    @staticmethod
    def _canary_stage(started: datetime, now: datetime, hours: float) -> int:
        elapsed = (now - started) / timedelta(hours=hours)
        if elapsed >= 1:
            return 2
        return 1 if elapsed >= 0.5 else 0


def plan_for(strategy: Strategy | str) -> RolloutPlan:
    return RolloutPlan(Strategy(strategy))
