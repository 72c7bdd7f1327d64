"""Rotation building blocks: configuration model, strategies, rollout buckets, notifier, CLI options."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from chalicelib.cli.rotation import parse_options
from chalicelib.models import SecretType
from chalicelib.notify import EventBridgeNotifier
from chalicelib.rotation.config import (
    RotationConfig,
    Strategy,
    generates_automatically,
    referenced_secret_ids,
    schedule_fields,
    value_expiry,
)
from chalicelib.rotation.rollout import bucket, choose_version, effective_percent
from chalicelib.rotation.rotators.base import RotationContext, RotationNotSupported, RotationTestFailed
from chalicelib.rotation.rotators.configuration import ROTATOR as CONFIGURATION
from chalicelib.rotation.strategies import plan_for
from chalicelib.vault.records import SecretRecord

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def test_config_keeps_per_type_options_and_fills_defaults() -> None:
    config = RotationConfig.model_validate({"interval": "30d", "provider": {"url": "https://x"}, "keySize": 4096})
    stored = config.stored()
    assert stored["provider"] == {"url": "https://x"} and stored["keySize"] == 4096
    assert stored["testNewKey"] is True and stored["retireAfter"] == "24h" and stored["strategy"] == "rolling"
    assert config.options == {"provider": {"url": "https://x"}, "keySize": 4096}
    assert RotationConfig.model_validate({}).stored().get("interval") is None  # manual rotation only


@pytest.mark.parametrize("bad", [{"interval": "10s"}, {"interval": "2h", "retireAfter": "3h"},
                                 {"retireAfter": "later"}, {"rolloutDurationHours": -1},
                                 {"rolloutDurationHours": 10_000}, {"strategy": "big-bang"}])
def test_config_refuses_what_cannot_work(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RotationConfig.model_validate(bad)


def test_schedule_fields_index_the_next_due_time_never_in_the_past() -> None:
    stored = RotationConfig.model_validate({"interval": "1d"}).stored()
    assert schedule_fields(stored, base=T0, now=T0) == {"sched_pk": "ROTATION",
                                                        "sched_at": "2026-01-16T10:00:00.000000Z"}
    late = T0 + timedelta(days=3)
    assert schedule_fields(stored, base=T0, now=late)["sched_at"] == "2026-01-18T10:00:00.000000Z"
    assert schedule_fields({**stored, "enabled": False}, base=T0, now=T0)["sched_pk"] is None
    assert schedule_fields(None, base=T0, now=T0)["sched_pk"] is None


def test_expiry_brings_the_next_due_time_forward() -> None:
    stored = RotationConfig.model_validate({"interval": "90d", "rotateBeforeExpiryDays": 30}).stored()
    expires = T0 + timedelta(days=40)
    assert schedule_fields(stored, base=T0, now=T0, expires_at=expires)["sched_at"] == "2026-01-25T10:00:00.000000Z"
    assert schedule_fields(stored, base=T0, now=T0)["sched_at"] == "2026-04-15T10:00:00.000000Z"
    expiry_only = RotationConfig.model_validate({"rotateBeforeExpiryDays": 30})
    assert generates_automatically(expiry_only) and not generates_automatically(RotationConfig())
    assert schedule_fields(expiry_only.stored(), base=T0, now=T0, expires_at=T0 + timedelta(days=10))[
        "sched_at"] == "2026-01-15T10:00:00.000000Z"  # already within the window: due now
    assert value_expiry({"not_after": "2026-03-01T00:00:00+00:00"}) == datetime(2026, 3, 1, tzinfo=UTC)
    assert value_expiry({"expires_at": "2026-03-01T00:00:00"}) == datetime(2026, 3, 1, tzinfo=UTC)
    assert value_expiry({}, T0) == T0 and value_expiry(None) is None


def test_referenced_secret_ids_are_found_at_any_depth() -> None:
    config = {"masterSecretId": "db/master", "provider": {"authSecretId": "p/admin", "url": "https://x"},
              "hooks": [{"caSecretId": "pki/ca"}], "secretIdLike": "not-a-ref"}
    assert referenced_secret_ids(config) == {"db/master", "p/admin", "pki/ca"}


def test_strategies_percentages_over_time() -> None:
    rolling, canary, blue_green = plan_for("rolling"), plan_for(Strategy.CANARY), plan_for("blue-green")
    at = [T0 + timedelta(hours=h) for h in (0, 1, 2, 3.99, 4)]
    assert [rolling.percent(T0, t, 4) for t in at] == [0, 25, 50, 99, 100]
    assert [canary.percent(T0, t, 4) for t in at] == [5, 5, 50, 50, 100]
    assert [blue_green.percent(T0, t, 4) for t in at] == [0, 0, 0, 0, 0]
    assert canary.next_check(T0, T0, 4) == T0 + timedelta(hours=2)
    assert canary.next_check(T0, T0 + timedelta(hours=2), 4) == T0 + timedelta(hours=4)
    assert blue_green.next_check(T0, T0, 4) is None and not blue_green.complete(T0, T0 + timedelta(days=9), 4)
    assert rolling.complete(T0, T0 + timedelta(hours=4), 4) and not plan_for("immediate").rolls_out


def _record(rollout: dict[str, Any] | None) -> SecretRecord:
    return SecretRecord(secret_id="svc/key", type="api_key", current_version=2, latest_version=3, rollout=rollout,
                        created_at=T0, created_by="root", updated_at=T0)


def test_choose_version_is_consistent_per_principal_and_follows_the_percentage() -> None:
    principals = [f"svc-{n}" for n in range(1000)]
    canary = _record({"old_version": 2, "new_version": 3, "percent": 5, "strategy": "canary"})
    first = [choose_version(canary, p) for p in principals]
    assert first == [choose_version(canary, p) for p in principals]
    assert 30 <= first.count(3) <= 70
    half = _record({"old_version": 2, "new_version": 3, "percent": 50, "strategy": "canary"})
    promoted = {p for p in principals if choose_version(half, p) == 3}
    assert {p for p, v in zip(principals, first, strict=True) if v == 3} <= promoted  # nobody goes back
    everyone = _record({"old_version": 2, "new_version": 3, "percent": 100, "strategy": "canary"})
    assert {choose_version(everyone, p) for p in principals} == {3}
    assert {choose_version(_record(None), p) for p in principals} == {2}
    assert all(0 <= bucket("svc/key", p) < 100 for p in principals)


def test_rolling_percentage_is_computed_from_the_clock_with_the_stored_one_as_floor() -> None:
    rollout = {"percent": 10, "strategy": "rolling", "started_at": "2026-01-15T10:00:00.000000Z",
               "duration_hours": 10}
    assert effective_percent(rollout, T0) == 10
    assert effective_percent(rollout, T0 + timedelta(hours=4)) == 40
    assert effective_percent(rollout, T0 + timedelta(hours=11)) == 100


class _Events:
    def __init__(self, fail: bool = False, failed_count: int = 0) -> None:
        self.entries: list[dict[str, Any]] = []
        self.fail = fail
        self.failed_count = failed_count

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self.fail:
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "PutEvents")
        self.entries.extend(Entries)
        return {"FailedEntryCount": self.failed_count, "Entries": [{"ErrorCode": "Boom"}] if self.failed_count else []}


def test_eventbridge_notifier_puts_one_event_on_the_bus() -> None:
    events = _Events()
    assert EventBridgeNotifier(events, "v-secure-bus").publish("SecretRotated", {"secretId": "a", "newVersion": 3})
    [entry] = events.entries
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == ("v-secure", "SecretRotated",
                                                                             "v-secure-bus")
    assert json.loads(entry["Detail"]) == {"secretId": "a", "newVersion": 3}


def test_eventbridge_failures_are_logged_not_raised_and_answer_false() -> None:
    assert EventBridgeNotifier(_Events(fail=True), "bus").publish("RotationFailed", {"secretId": "a"}) is False
    assert EventBridgeNotifier(_Events(failed_count=1), "bus").publish("RotationFailed", {"secretId": "a"}) is False


SCHEMA = {"type": "object", "required": ["region"], "properties": {"region": {"type": "string"}}}


def _config_ctx(schema: dict[str, Any] | None = SCHEMA) -> RotationContext:
    return RotationContext("app/flags", SecretType.CONFIGURATION, {}, value_schema=schema)


def test_configuration_rotator_validates_and_never_generates() -> None:
    CONFIGURATION.test(_config_ctx(), '{"region": "eu-west-1"}')
    with pytest.raises(RotationTestFailed, match="/region"):
        CONFIGURATION.test(_config_ctx(), '{"region": 7}')
    with pytest.raises(RotationTestFailed):
        CONFIGURATION.test(_config_ctx(None), "[1, 2]")
    with pytest.raises(RotationNotSupported):
        CONFIGURATION.generate(_config_ctx())
    assert CONFIGURATION.generates is False
    CONFIGURATION.apply(_config_ctx(), "{}")
    CONFIGURATION.revoke(_config_ctx(), "{}")


def test_cli_rotation_options_nest_and_parse_json() -> None:
    assert parse_options(("provider.url=https://k.example/new", "provider.timeoutSeconds=5", "keyType=ec",
                          "requiredScopes=[\"read\"]")) == {
        "provider": {"url": "https://k.example/new", "timeoutSeconds": 5}, "keyType": "ec",
        "requiredScopes": ["read"]}
    with pytest.raises(click.BadParameter):
        parse_options(("novalue",))
    with pytest.raises(click.BadParameter):
        parse_options(("a=1", "a.b=2"))
