"""The rotation engine and its use cases against fakes of our own ports (no AWS).

A provider stand-in (:class:`ProviderRotator`) accepts the values applied to it and forgets the
ones revoked, so "CURRENT works" means: the CURRENT value is one the provider accepts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from chalicelib.access_control.auth import PrincipalRecord
from chalicelib.access_control.context import Caller
from chalicelib.audit.events import Action, Status
from chalicelib.clock import FrozenClock
from chalicelib.config import Settings
from chalicelib.errors import (
    AccessDenied,
    DependencyUnavailable,
    InvalidRequest,
    InvalidSecretValue,
    RotationInProgress,
    SecretNotFound,
)
from chalicelib.models import RollbackRequest, StoreSecretRequest, VersionStatus
from chalicelib.rotation import service as rotation_service_module
from chalicelib.rotation.engine import NoRotationInProgress, RotationEngine, RunBusy
from chalicelib.rotation.models import ConfigureRequest, RotateRequest, RotationRollbackRequest, SwitchRequest
from chalicelib.rotation.rollout import choose_version
from chalicelib.rotation.rotators.base import RotationTestFailed
from chalicelib.rotation.runs import RunStatus, RunStep
from chalicelib.rotation.scheduler import tick
from chalicelib.rotation.service import RotationService
from chalicelib.singleton import ProcessSingleton
from chalicelib.vault.service import VaultService
from chalicelib.vault.storage import DynamoSecretRepository
from tests.fakes import FakeKeyProvider
from tests.unit.test_rotation_support import (
    FakeOutbox,
    FakeRunStore,
    ProviderRotator,
    RecordingNotifier,
    RotationRepository,
    installed,
)

START = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
SECRET = "svc/payments-key"
FIRST = "sk_test_first_value_0001"


def caller(name: str, *, admin: bool = False) -> Caller:
    principal = PrincipalRecord(principal_id=name, admin=admin, created_at=START, created_by="root")
    return Caller(principal=principal, token_id="tok", source_ip="10.0.0.5", request_id="req-1")


ROOT = caller("root", admin=True)


def request(secret_id: str, value: str, **fields: Any) -> StoreSecretRequest:
    return StoreSecretRequest.model_validate({"secretId": secret_id, "value": value, **fields})


@dataclass
class Env:
    clock: FrozenClock
    runs: FakeRunStore
    repo: RotationRepository
    vault: VaultService
    engine: RotationEngine
    service: RotationService
    notifier: RecordingNotifier
    provider: ProviderRotator
    outbox: FakeOutbox

    def at(self, **delta: float) -> None:
        self.clock._now = START + timedelta(**delta)

    def configure(self, secret_id: str = SECRET, **rotation: Any) -> Any:
        return self.service.configure(ROOT, secret_id, ConfigureRequest.model_validate({"rotation": rotation}))

    def rotate(self, secret_id: str = SECRET, **fields: Any) -> Any:
        return self.service.rotate(ROOT, secret_id, RotateRequest.model_validate(fields))

    def current(self, secret_id: str = SECRET, who: str = "root") -> tuple[int, str]:
        answer = self.vault.retrieve(caller(who, admin=True), secret_id)
        return answer.version, answer.value

    def run(self, secret_id: str = SECRET) -> Any:
        return self.runs.recent(secret_id, 1)[0]

    def actions(self) -> list[str]:
        return [event.action.value for event in self.repo.events]

    def tick(self) -> dict[str, Any]:
        return tick(engine=self.engine, respect_interval=False)


@pytest.fixture
def env() -> Iterator[Env]:
    clock = FrozenClock(START)
    runs = FakeRunStore()
    outbox = FakeOutbox()
    repo = RotationRepository(runs, outbox)
    vault = VaultService(cast(DynamoSecretRepository, repo), FakeKeyProvider(), settings=Settings(), clock=clock)
    notifier = RecordingNotifier()
    engine = RotationEngine(vault, runs, notifier, outbox, clock=clock, lease_seconds=60, worker_id="w1")
    provider = ProviderRotator()
    with installed(provider):
        vault.store(ROOT, request(SECRET, provider.accept(FIRST), type="api_key"))
        yield Env(clock, runs, repo, vault, engine, RotationService(engine), notifier, provider, outbox)


def test_immediate_rotation_runs_every_step_and_retires_the_old_value(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="0s")
    answer = env.rotate()

    assert (answer.old_version, answer.new_version, answer.status, answer.step) == (1, 2, "completed", "done")
    assert answer.progress.rolled_out == 100 and answer.rotation_id.startswith("rot_")
    version, value = env.current()
    assert version == 2 and value in env.provider.valid and value != FIRST
    assert env.provider.calls == ["generate", "apply", "test", "revoke"]
    assert env.provider.revoked == [FIRST] and FIRST not in env.provider.valid
    stored = {v.version: v for v in env.repo.list_versions(SECRET)}
    assert stored[2].source == "rotation" and sorted(stored) == [1, 2]
    record = env.repo.records[SECRET]
    assert record.labels == {"CURRENT": 2} and record.rotation_run is None and record.rollout is None
    assert env.vault.versions(ROOT, SECRET).versions[0].status is VersionStatus.RETIRED
    rotation_events = [a for a in env.actions() if a.startswith(("rotation", "secret_store"))]
    assert rotation_events == ["secret_store", "rotation_started", "secret_store", "rotation_step", "rotation_step",
                               "rotation_completed", "rotation_step"]
    assert env.notifier.types() == ["RotationStarted", "SecretRotated"]
    detail = env.notifier.events[1][1]
    assert detail["oldVersion"] == 1 and detail["newVersion"] == 2 and value not in str(env.notifier.events)


def test_each_notification_has_an_id_and_leaves_the_outbox_once_published(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="0s")
    env.rotate()
    assert env.notifier.types() == ["RotationStarted", "SecretRotated"]
    ids = [detail["notificationId"] for _kind, detail in env.notifier.events]
    assert all(str(i).startswith("ntf_") for i in ids) and len(set(ids)) == 2
    assert env.outbox.notices == {} and env.outbox.deleted == 2  # one DeleteItem per published notification


def test_a_refused_notification_stays_in_the_outbox_until_a_tick_delivers_it_once(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="0s")
    env.notifier.refuse = True
    answer = env.rotate()
    assert answer.status == "completed" and env.notifier.events == []  # the rotation does not depend on it
    kept = {n.detail_type: n for n in env.outbox.notices.values()}  # one frozen instant: any order
    assert sorted(kept) == ["RotationStarted", "SecretRotated"]
    assert all(n.detail["rotationId"] == answer.rotation_id for n in kept.values())
    env.notifier.refuse = False

    assert "notices" not in env.tick() and env.notifier.events == []  # within the grace period: left alone
    env.at(seconds=31)
    assert env.tick()["notices"] == 2
    assert sorted((kind, detail["notificationId"]) for kind, detail in env.notifier.events) == [
        ("RotationStarted", kept["RotationStarted"].notification_id),
        ("SecretRotated", kept["SecretRotated"].notification_id)]
    assert dict(env.notifier.events)["SecretRotated"]["newVersion"] == 2 and env.outbox.notices == {}
    env.at(minutes=5)
    assert "notices" not in env.tick() and len(env.notifier.events) == 2  # delivered once


def test_the_scheduler_delivers_a_bounded_number_of_notifications_per_tick(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="0s")
    env.notifier.refuse = True
    env.rotate()
    env.notifier.refuse = False
    env.at(minutes=1)
    assert tick(engine=env.engine, respect_interval=False, limit=1)["notices"] == 1
    assert len(env.notifier.events) == 1 and len(env.outbox.notices) == 1
    assert env.tick()["notices"] == 1 and sorted(env.notifier.types()) == ["RotationStarted", "SecretRotated"]


def test_a_commit_that_lost_a_race_leaves_no_notification(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="0s")
    env.notifier.refuse = True
    commit = env.repo.commit
    raced: list[str] = []

    def racing_commit(draft: Any, **fields: Any) -> Any:
        carries_notice = any("FakeNotice" in item for item in fields.get("extra_items", ()))
        if carries_notice and not raced:  # another writer changes the secret first: this commit is stale
            raced.append(fields["extra_items"][0]["FakeRun"].run_id)
            meta = env.repo.records[SECRET]
            env.repo.records[SECRET] = meta.model_copy(update={"rev": meta.rev + 1})
        return commit(draft, **fields)

    env.repo.commit = racing_commit  # type: ignore[method-assign]
    answer = env.rotate()
    assert raced and raced[0] != answer.rotation_id  # the first start attempt was refused and retried
    kept = sorted((n.detail_type, n.detail["rotationId"]) for n in env.outbox.notices.values())
    assert kept == [("RotationStarted", answer.rotation_id), ("SecretRotated", answer.rotation_id)]


def test_a_storage_outage_writes_neither_the_change_nor_its_notification(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="0s")
    env.repo.fail_commits = 1
    with pytest.raises(DependencyUnavailable):
        env.rotate()
    assert env.outbox.notices == {} and env.notifier.events == []


def test_rotations_keep_at_most_max_versions_like_stores_do(env: Env) -> None:
    env.vault.settings = Settings(max_versions=2)
    env.configure(strategy="immediate", retireAfter="0s")
    for _rotation in range(3):
        env.rotate()
    assert env.current()[0] == 4
    statuses = {v.version: v.status for v in env.vault.versions(ROOT, SECRET).versions}
    assert statuses[1] is VersionStatus.DESTROYED and statuses[2] is VersionStatus.DESTROYED
    assert statuses[3] is not VersionStatus.DESTROYED and statuses[4] is VersionStatus.ACTIVE


def test_the_new_value_is_stored_pending_through_the_versioned_write_path(env: Env) -> None:
    env.configure(strategy="blue-green")
    env.rotate()
    record = env.repo.records[SECRET]
    assert record.labels == {"CURRENT": 1, "PENDING": 2} and record.latest_version == 2
    stored = env.repo.get_version(SECRET, 2)
    assert stored is not None and stored.source == "rotation" and stored.created_by == "root"
    store_events = [e for e in env.repo.events if e.action is Action.SECRET_STORE and e.version == 2]
    assert store_events and store_events[0].details["source"] == "rotation"
    assert store_events[0].details["label"] == "PENDING"


def test_rolling_rollout_grows_linearly_and_the_scheduler_finishes_and_retires(env: Env) -> None:
    env.configure(strategy="rolling", rolloutDurationHours=10, retireAfter="2h")
    answer = env.rotate()
    assert (answer.status, answer.step, answer.progress.rolled_out) == ("in_progress", "rollout", 0)
    principals = [f"svc-{n}" for n in range(400)]

    def share_new(at_hours: float) -> float:
        env.at(hours=at_hours)
        record = env.repo.records[SECRET]
        return sum(choose_version(record, p, now=env.clock.now()) == 2 for p in principals) / len(principals)

    assert share_new(0) == 0
    assert 0.2 <= share_new(3) <= 0.4
    assert 0.6 <= share_new(7) <= 0.8
    env.at(hours=5)
    assert env.service.status(ROOT, SECRET).run.progress.rolled_out == 50  # type: ignore[union-attr]

    env.at(hours=10, minutes=1)
    env.tick()
    assert env.current() == (2, env.current()[1]) and env.run().step is RunStep.RETIRE
    assert FIRST in env.provider.valid  # retireAfter not over: the old key keeps working
    env.at(hours=12, minutes=2)
    env.tick()
    assert env.run().step is RunStep.DONE and FIRST not in env.provider.valid


def test_canary_serves_5_then_50_then_100_percent(env: Env) -> None:
    env.configure(strategy="canary", rolloutDurationHours=4)
    env.rotate()
    principals = [f"principal-{n}" for n in range(1000)]

    def served_new() -> int:
        record = env.repo.records[SECRET]
        return sum(choose_version(record, p) == 2 for p in principals)

    assert 30 <= served_new() <= 70
    assert env.repo.records[SECRET].rollout["percent"] == 5  # type: ignore[index]
    env.at(hours=2, minutes=1)
    env.tick()
    assert env.repo.records[SECRET].rollout["percent"] == 50  # type: ignore[index]
    assert 450 <= served_new() <= 550
    env.at(hours=4, minutes=1)
    env.tick()
    assert served_new() == 1000 and env.repo.records[SECRET].current_version == 2


def test_retrieve_during_a_rollout_says_which_version_it_served_and_costs_one_read(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.configure(strategy="canary")
    env.rotate()
    reads: list[str] = []
    original = env.repo.get_version

    def counted(*args: Any) -> Any:
        reads.append("version")
        return original(*args)

    monkeypatch.setattr(env.repo, "get_version", counted)
    seen = {}
    for n in range(200):
        who = f"reader-{n}"
        answer = env.vault.retrieve(caller(who, admin=True), SECRET)
        seen[who] = answer.version
        assert answer.value == (FIRST if answer.version == 1 else env.provider.issued[0])
    assert set(seen.values()) == {1, 2} and reads == []
    assert all(env.vault.retrieve(caller(w, admin=True), SECRET).version == v for w, v in list(seen.items())[:20])


def test_blue_green_keeps_both_readable_by_label_until_one_conditional_switch(env: Env) -> None:
    env.configure(strategy="blue-green", retireAfter="1h")
    env.rotate()
    env.at(hours=30)
    env.tick()  # blue-green never switches by itself
    assert env.current()[0] == 1
    pending = env.vault.retrieve(ROOT, SECRET, stage="PENDING")
    assert pending.version == 2 and pending.value in env.provider.valid
    assert env.vault.retrieve(ROOT, SECRET, stage="CURRENT").version == 1

    switched = env.service.switch(ROOT, SECRET, SwitchRequest(reason="cut over"))
    assert (switched.status, switched.step) == ("completed", "retire")
    assert env.current()[0] == 2
    assert env.vault.retrieve(ROOT, SECRET, stage="PREVIOUS").value == FIRST
    switch_events = [e for e in env.repo.events if e.action is Action.SECRET_SWITCH]
    assert len(switch_events) == 1 and switch_events[0].actor == "root"
    with pytest.raises(NoRotationInProgress):
        env.service.switch(ROOT, SECRET, SwitchRequest())


def test_a_failed_test_leaves_current_untouched_and_revokes_the_new_value(env: Env) -> None:
    env.configure(strategy="rolling", interval="30d")
    env.provider.fail_test = True
    with pytest.raises(RotationTestFailed) as raised:
        env.rotate()
    assert raised.value.details["rotationId"] == env.run().run_id and raised.value.details["step"] == "test"
    assert env.current() == (1, FIRST) and FIRST in env.provider.valid
    assert env.provider.revoked == [env.provider.issued[0]] and not env.provider.valid - {FIRST}
    run = env.run()
    assert (run.status, run.step) == (RunStatus.FAILED, RunStep.DONE)
    assert run.error is not None and run.error["code"] == "rotation_test_failed"
    record = env.repo.records[SECRET]
    assert "PENDING" not in record.labels and record.rotation_run is None and record.rollout is None
    assert record.sched_at == "2026-01-15T11:30:00.000000Z"  # retried within the hour
    failed = [e for e in env.repo.events if e.action is Action.ROTATION_FAILED]
    assert failed and failed[0].status is Status.FAILURE and failed[0].details["step"] == "test"
    assert env.notifier.types()[-1] == "RotationFailed"
    assert env.vault.versions(ROOT, SECRET).versions[1].status is VersionStatus.RETIRED


def test_transient_provider_errors_are_retried_with_backoff(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="0s")
    env.provider.unavailable = 2
    answer = env.rotate()
    assert (answer.status, answer.step) == ("in_progress", "create")
    assert answer.error is not None and answer.error.code == "dependency_unavailable"
    run = env.run()
    assert run.attempts == 1 and run.next_at == START + timedelta(seconds=30) and run.lease_owner is None
    env.at(seconds=10)
    assert env.tick().get("in_progress") is None  # not due yet
    env.at(seconds=31)
    env.tick()
    assert env.run().attempts == 2 and env.run().next_at == START + timedelta(seconds=91)
    env.at(seconds=92)
    env.tick()
    assert env.run().status is RunStatus.COMPLETED and env.current()[0] == 2
    retries = [e for e in env.repo.events if e.action is Action.ROTATION_STEP and e.status is Status.FAILURE]
    assert len(retries) == 2


def test_a_step_that_keeps_failing_transiently_ends_the_run_failed(env: Env) -> None:
    env.configure(strategy="immediate")
    env.provider.unavailable = 100
    env.rotate()
    for minute in range(1, 200, 5):
        env.at(minutes=minute)
        env.tick()
    run = env.run()
    assert run.status is RunStatus.FAILED and run.attempts == 4 and env.current() == (1, FIRST)


def test_one_run_at_a_time_and_stores_wait_for_it(env: Env) -> None:
    env.configure(strategy="canary")
    env.rotate()
    with pytest.raises(RotationInProgress):
        env.rotate()
    with pytest.raises(RotationInProgress):
        env.vault.store(ROOT, request(SECRET, "sk_test_manual_write"))
    other = RotationEngine(env.vault, env.runs, env.notifier, env.outbox, clock=env.clock, lease_seconds=60,
                           worker_id="w2")
    run = env.run()
    leased = env.engine._claim(run)
    with pytest.raises(RunBusy):
        other.drive(leased)
    env.at(seconds=61)
    assert other.drive(env.run()).lease_owner is None  # lease expired: the other worker took it over


def test_rollback_during_the_rollout_serves_the_old_version_to_everyone(env: Env) -> None:
    env.configure(strategy="canary", retireAfter="1h")
    env.rotate()
    new_value = env.provider.issued[0]
    rolled = env.service.rollback(ROOT, SECRET, RotationRollbackRequest(reason="billing rejects it"))
    assert (rolled.status, rolled.step) == ("rolled_back", "retire")
    record = env.repo.records[SECRET]
    assert record.rollout is None and "PENDING" not in record.labels and record.labels["CURRENT"] == 1
    assert all(choose_version(record, f"p{n}") == 1 for n in range(300))
    assert new_value in env.provider.valid  # some callers had it: revoked after retireAfter
    env.vault.store(ROOT, request(SECRET, "sk_test_manual_after"))  # stores work again
    env.at(hours=1, minutes=1)
    env.tick()
    assert new_value not in env.provider.valid and env.run().step is RunStep.DONE
    assert env.notifier.types()[-1] == "RotationRolledBack"
    assert next(e for e in env.repo.events if e.action is Action.ROTATION_ROLLED_BACK).actor == "root"


def test_rollback_to_a_version_during_a_rotation_goes_through_the_rotation(env: Env,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation_service_module, "_service", ProcessSingleton(lambda: env.service))
    env.configure(strategy="rolling")
    env.rotate()
    answer = env.vault.rollback(ROOT, SECRET, RollbackRequest(version=1))
    assert (answer.version, answer.previous_version) == (1, 1)
    assert env.run().status is RunStatus.ROLLED_BACK and env.repo.records[SECRET].rollout is None


def test_rollback_after_the_rotation_restores_the_old_value_and_retires_the_new_one(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="6h")
    env.rotate()
    new_value = env.current()[1]
    assert env.run().step is RunStep.RETIRE
    env.at(hours=1)
    env.service.rollback(ROOT, SECRET, RotationRollbackRequest())
    assert env.current() == (1, FIRST) and FIRST in env.provider.valid
    assert env.repo.records[SECRET].labels == {"CURRENT": 1, "PREVIOUS": 2}
    env.at(hours=7, minutes=1)
    env.tick()
    assert new_value not in env.provider.valid and FIRST in env.provider.valid
    assert env.repo.records[SECRET].labels == {"CURRENT": 1}
    with pytest.raises(NoRotationInProgress):
        env.service.rollback(ROOT, SECRET, RotationRollbackRequest())


def test_rollback_before_anyone_was_served_revokes_at_once(env: Env) -> None:
    env.configure(strategy="canary")
    env.engine.fault = lambda point: _crash(point == "set")
    with pytest.raises(_Crash):
        env.rotate()
    env.engine.fault = None
    new_value = env.provider.issued[0]
    env.at(minutes=5)  # the crashed worker's lease is over
    env.service.rollback(ROOT, SECRET, RotationRollbackRequest())
    assert new_value not in env.provider.valid and env.run().step is RunStep.DONE


def test_a_manual_rotate_while_the_previous_run_retires_retires_it_first(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="24h")
    env.rotate()
    second = env.provider.issued[0]
    assert FIRST in env.provider.valid
    answer = env.rotate()
    assert answer.status == "completed" and FIRST not in env.provider.valid and second in env.provider.valid
    assert [v.version for v in env.repo.list_versions(SECRET)] == [1, 2, 3]


class _Crash(BaseException):
    """A process dying: not an Exception, so nothing in the engine catches it."""


def _crash(now: bool) -> None:
    if now:
        raise _Crash()


CRASH_POINTS = ["start", "create:generated", "create", "set:applied", "set", "test:tested", "test", "rollout",
                "finish", "retire:revoked", "retire"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_after_any_step_is_finished_by_the_next_scheduler_run(env: Env, point: str) -> None:
    env.configure(strategy="rolling", rolloutDurationHours=1, retireAfter="0s")
    env.engine.fault = lambda at: _crash(at == point)
    try:
        env.rotate()
    except _Crash:
        pass
    else:
        env.at(hours=1, minutes=1)
        with pytest.raises(_Crash):
            env.tick()
    env.engine.fault = None
    assert env.current()[1] in env.provider.valid
    for minutes in range(2, 200, 7):
        env.at(hours=1, minutes=minutes)
        env.tick()
        assert env.current()[1] in env.provider.valid  # CURRENT always decrypts and works
    run = env.run()
    assert run.step is RunStep.DONE and run.status is RunStatus.COMPLETED, run.history
    version, value = env.current()
    assert version == env.repo.records[SECRET].latest_version and value in env.provider.valid
    assert "PENDING" not in env.repo.records[SECRET].labels
    assert FIRST not in env.provider.valid


def test_a_crash_while_failing_is_finished_by_the_next_scheduler_run(env: Env) -> None:
    env.configure(strategy="immediate")
    env.provider.fail_test = True
    env.engine.fault = lambda at: _crash(at == "fail:revoked")
    with pytest.raises(_Crash):
        env.rotate()
    env.engine.fault = None
    env.at(minutes=2)
    env.tick()
    assert env.run().status is RunStatus.FAILED and env.current() == (1, FIRST)
    assert "PENDING" not in env.repo.records[SECRET].labels


def test_configure_validates_and_indexes_the_next_due_time(env: Env) -> None:
    answer = env.configure(interval="30d", strategy="canary", provider={"url": "https://keys.example/new"})
    assert answer.next_rotation_at == START + timedelta(days=30)
    record = env.repo.records[SECRET]
    assert (record.sched_pk, record.sched_at) == ("ROTATION", "2026-02-14T10:30:00.000000Z")
    assert record.rotation == {"enabled": True, "interval": "30d", "strategy": "canary",
                               "rolloutDurationHours": 4.0, "testNewKey": True, "retireAfter": "24h",
                               "provider": {"url": "https://keys.example/new"}}
    assert env.vault.describe(ROOT, SECRET).rotation == record.rotation
    event = [e for e in env.repo.events if e.action is Action.SECRET_CONFIGURE][-1]
    assert event.details["options"] == ["provider"] and "https" not in str(event.details)
    env.configure(enabled=False, interval="30d")
    assert env.repo.records[SECRET].sched_pk is None
    for bad in ({"interval": "5s"}, {"interval": "1d", "retireAfter": "2d"}, {"strategy": "sideways"},
                {"rolloutDurationHours": 0}, {"interval": "soon"}):
        with pytest.raises(ValueError):
            ConfigureRequest.model_validate({"rotation": bad})


def test_configure_needs_write_and_read_on_the_secrets_its_options_name(env: Env) -> None:
    writer = caller("deployer")
    env.vault.store(ROOT, request("other/master", "sk_test_master_value", type="api_key"))
    env.vault.store(ROOT, request("svc/owned", "sk_test_owned_value", type="api_key",
                                  access={"deployer": ["write", "rotate"]}))
    naming = ConfigureRequest.model_validate({"rotation": {"provider": {"authSecretId": "other/master"}}})
    with pytest.raises(AccessDenied):
        env.service.configure(writer, "svc/owned", naming)
    env.service.configure(writer, "svc/owned", ConfigureRequest.model_validate({"rotation": {"strategy": "canary"}}))
    with pytest.raises(AccessDenied):
        env.service.configure(caller("reader"), SECRET, naming)


def test_rotators_read_only_the_secrets_their_options_name(env: Env) -> None:
    env.vault.store(ROOT, request("other/master", "sk_test_master_value", type="api_key"))
    env.configure(strategy="immediate", provider={"authSecretId": "other/master"})
    env.rotate()
    resolve = env.provider.contexts[0].resolve_secret
    assert resolve is not None and resolve("other/master") == "sk_test_master_value"
    with pytest.raises(InvalidRequest):
        resolve(SECRET)
    reads = [e for e in env.repo.events if e.action is Action.SECRET_READ and e.secret_id == "other/master"]
    assert reads and reads[-1].actor == "v-secure" and reads[-1].reason.startswith("rotation rot_")  # type: ignore[union-attr]


def test_rotate_needs_the_rotate_permission_and_an_existing_secret(env: Env) -> None:
    with pytest.raises(AccessDenied):
        env.service.rotate(caller("reader"), SECRET, RotateRequest())
    with pytest.raises(SecretNotFound):
        env.rotate("svc/missing")


def test_a_deleted_secret_pauses_its_rotation_and_restore_reschedules_it(env: Env) -> None:
    env.configure(strategy="canary", interval="30d")
    env.rotate()
    env.vault.delete(ROOT, SECRET, recovery_window_days=7)
    env.at(hours=5)
    env.tick()
    assert env.run().step is RunStep.ROLLOUT and env.run().history[-1].detail == "paused: secret deleted"
    env.vault.restore(ROOT, SECRET)
    record = env.repo.records[SECRET]
    assert record.sched_pk == "ROTATION" and record.sched_at == "2026-02-14T10:30:00.000000Z"
    env.at(hours=6, minutes=1)
    env.tick()
    assert env.run().status is RunStatus.COMPLETED


def test_scheduled_rotation_starts_when_due_once_per_check_interval(env: Env) -> None:
    env.configure(strategy="immediate", interval="1h", retireAfter="0s")  # due at 11:30
    env.at(minutes=59)
    assert tick(engine=env.engine) == {"checked": 1}  # nothing due; next look in an hour (the check interval)
    env.at(minutes=61)
    assert "checked" not in tick(engine=env.engine)
    env.at(hours=1, minutes=59)
    assert tick(engine=env.engine) == {"checked": 1, "started": 1}
    assert env.run().trigger == "scheduled" and env.current()[0] == 2
    assert env.repo.records[SECRET].sched_at == "2026-01-15T13:29:00.000000Z"
    assert tick(engine=env.engine, respect_interval=False) == {"checked": 1}  # started once, not again


def test_the_scheduler_is_off_when_rotation_is_disabled(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import config

    monkeypatch.setenv("V_SECURE_ROTATION_ENABLED", "false")
    config.reset_settings()
    try:
        assert "skipped" in tick(engine=env.engine)
    finally:
        monkeypatch.delenv("V_SECURE_ROTATION_ENABLED")
        config.reset_settings()


def test_a_storage_outage_at_start_fails_the_request_and_leaves_nothing(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="0s")
    env.repo.fail_commits = 1
    with pytest.raises(DependencyUnavailable):
        env.rotate()
    assert env.runs.runs == {} and env.repo.records[SECRET].rotation_run is None
    assert env.rotate().status == "completed"


def test_a_storage_outage_during_a_step_is_retried(env: Env) -> None:
    env.configure(strategy="immediate", retireAfter="0s")

    def outage(point: str) -> None:
        if point == "set:applied":
            env.repo.fail_commits = 1

    env.engine.fault = outage
    answer = env.rotate()
    env.engine.fault = None
    assert answer.step == "set" and answer.error is not None and answer.error.code == "dependency_unavailable"
    env.at(minutes=1)
    env.tick()
    assert env.run().status is RunStatus.COMPLETED and env.current()[1] in env.provider.valid


def test_a_given_value_is_validated_before_any_run_starts(env: Env) -> None:
    with pytest.raises(InvalidSecretValue):
        env.rotate(value=" spaces around ")
    assert env.runs.runs == {}
    answer = env.rotate(value=env.provider.accept("sk_test_given_value_01"), strategy="immediate")
    assert answer.status == "completed" and env.current() == (2, "sk_test_given_value_01")
    assert "generate" not in env.provider.calls


def test_failed_runs_in_a_row_back_off_exponentially(env: Env) -> None:
    env.configure(strategy="immediate", interval="30d")
    env.provider.fail_test = True
    with pytest.raises(RotationTestFailed):
        env.rotate()
    assert env.repo.records[SECRET].sched_at == "2026-01-15T11:30:00.000000Z"
    env.at(hours=1, minutes=1)
    assert env.tick()["failed"] == 1
    assert env.repo.records[SECRET].sched_at == "2026-01-15T13:31:00.000000Z"  # two in a row: 2 h
    env.at(hours=3, minutes=2)
    env.tick()
    assert env.repo.records[SECRET].sched_at == "2026-01-15T17:32:00.000000Z"  # three: 4 h
    env.provider.fail_test = False
    env.at(hours=7, minutes=3)
    env.tick()
    assert env.run().status is RunStatus.COMPLETED and env.current()[0] == 5  # versions 2-4 failed, stay gapless
    assert env.repo.records[SECRET].sched_at == "2026-02-14T17:33:00.000000Z"


def test_a_rotation_rolls_back_to_its_old_version_only(env: Env) -> None:
    env.vault.store(ROOT, request(SECRET, env.provider.accept("sk_test_second_value")))
    env.configure(strategy="canary")
    env.rotate()
    with pytest.raises(InvalidRequest) as refused:
        env.service.rollback(ROOT, SECRET, RotationRollbackRequest(version=1))
    assert refused.value.details == {"oldVersion": 2}
    assert env.service.rollback(ROOT, SECRET, RotationRollbackRequest(version=2)).status == "rolled_back"
