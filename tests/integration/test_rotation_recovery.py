"""Crashes and races against the moto server: a rotation survives a dead worker, and runs once.

* Crash: a worker "dies" (a ``BaseException`` nothing catches, raised from the engine's fault
  hook) right after each step in turn; a scheduler with another worker id, once the lease has
  expired, finishes the run. After every scheduler pass ``CURRENT`` decrypts (a real HTTP
  retrieve) and is a value the provider accepts.
* Race: two schedulers (two engines, two worker ids) and a manual rotate over HTTP start at
  the same moment on threads; one run is created and one new version is stored.
* Lost notification: a worker dies between a commit and the publishing of its notification;
  the outbox item written with the change is published by the next scheduler run, once, with
  its ``notificationId``, and removed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.clock import Clock, FrozenClock, SystemClock, isoformat
from chalicelib.rotation.engine import RotationEngine, get_rotation_engine
from chalicelib.rotation.runs import RunStatus, RunStep
from chalicelib.rotation.scheduler import tick
from tests.integration.conftest import EventReader
from tests.integration.helpers import Api, secret_url, unique
from tests.unit.test_rotation_support import ProviderRotator, installed

LEASE_SECONDS = 30


@pytest.fixture
def root(api_server: str, root_token: str) -> Api:
    return Api(api_server, root_token)


@pytest.fixture
def provider(local_aws: str) -> Iterator[ProviderRotator]:
    with installed(ProviderRotator()) as rotator:
        yield rotator  # type: ignore[misc]


def make_due(secret_id: str) -> None:
    """As if the rotation had been configured a day ago: the next due time is now past."""
    from chalicelib.aws import client
    from chalicelib.config import get_settings

    past = isoformat(datetime.now(UTC) - timedelta(minutes=1))
    client("dynamodb").update_item(TableName=get_settings().secrets_table,
                                   Key={"pk": {"S": f"SECRET#{secret_id}"}, "sk": {"S": "META"}},
                                   UpdateExpression="SET sched_at = :t", ExpressionAttributeValues={":t": {"S": past}})


def engine_at(clock: Clock, worker: str, fault: Any = None) -> RotationEngine:
    shared = get_rotation_engine()
    return RotationEngine(shared.vault, shared.runs, shared.notifier, shared.outbox, clock=clock,
                          lease_seconds=LEASE_SECONDS, worker_id=worker, fault=fault)


class Crash(BaseException):
    """The worker process dies here."""


def crash_at(point: str) -> Any:
    def fault(at: str) -> None:
        if at == point:
            raise Crash(at)

    return fault


def served(root: Api, secret_id: str) -> tuple[int, str]:
    answer = root.get(secret_url(secret_id))
    assert answer.status_code == 200, answer.text
    return answer.json()["version"], answer.json()["value"]


POINTS = ["start", "create:generated", "create", "set:applied", "set", "test:tested", "test", "rollout", "finish",
          "retire:revoked", "retire"]


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_after_each_step_is_finished_by_the_next_scheduler_run(root: Api, provider: ProviderRotator,
                                                                       point: str) -> None:
    secret_id, first = unique("crash/api"), unique("sk_test_first")
    assert root.store(secret_id, provider.accept(first), type="api_key").status_code == 201
    rotation = {"strategy": "rolling", "rolloutDurationHours": 0.01, "retireAfter": "0s"}  # a 36 s rollout
    assert root.http.put(secret_url(secret_id, "config"), json={"rotation": rotation}).status_code == 200
    clock = FrozenClock(datetime.now(UTC))
    dying = engine_at(clock, f"dying-{point}", crash_at(point))

    with pytest.raises(Crash):
        run = dying.start(secret_id)
        run = dying.drive(run)
        clock.advance(40)  # the rollout is over: the scheduler finishes and retires
        dying.drive(run)
    version, value = served(root, secret_id)
    assert value in provider.valid

    recovering = engine_at(clock, "recovering")
    for _ in range(6):
        clock.advance(LEASE_SECONDS + 10)
        tick(engine=recovering, respect_interval=False)
        version, value = served(root, secret_id)
        assert value in provider.valid, f"CURRENT v{version} does not work after a crash at {point}"
    [run] = recovering.runs.recent(secret_id, 5)
    assert (run.status, run.step) == (RunStatus.COMPLETED, RunStep.DONE), run.history
    assert (version, run.new_version) == (2, 2) and first not in provider.valid
    meta = root.get(secret_url(secret_id, "metadata")).json()
    assert meta["labels"] == {"CURRENT": 2}
    assert [v["version"] for v in root.get(secret_url(secret_id, "versions")).json()["versions"]] == [1, 2]


def test_a_crash_while_aborting_a_failed_run_is_finished_too(root: Api, provider: ProviderRotator) -> None:
    secret_id, first = unique("crash/api"), unique("sk_test_first")
    assert root.store(secret_id, provider.accept(first), type="api_key").status_code == 201
    assert root.http.put(secret_url(secret_id, "config"), json={"rotation": {"strategy": "canary"}}).status_code == 200
    provider.fail_test = True
    clock = FrozenClock(datetime.now(UTC))
    dying = engine_at(clock, "dying-fail", crash_at("fail:revoked"))
    with pytest.raises(Crash):
        dying.drive(dying.start(secret_id))
    clock.advance(LEASE_SECONDS + 10)
    tick(engine=engine_at(clock, "recovering-fail"), respect_interval=False)
    [run] = dying.runs.recent(secret_id, 5)
    assert run.status is RunStatus.FAILED and run.step is RunStep.DONE
    assert served(root, secret_id) == (1, first) and provider.valid == {first}
    assert "PENDING" not in root.get(secret_url(secret_id, "metadata")).json()["labels"]


def test_two_schedulers_and_a_manual_rotate_rotate_once(root: Api, provider: ProviderRotator) -> None:
    secret_id, first = unique("race/api"), unique("sk_test_first")
    assert root.store(secret_id, provider.accept(first), type="api_key").status_code == 201
    rotation = {"interval": "1d", "strategy": "immediate", "retireAfter": "0s"}
    assert root.http.put(secret_url(secret_id, "config"), json={"rotation": rotation}).status_code == 200
    make_due(secret_id)
    provider.delay = 0.2  # a run takes a while: whoever comes second finds it in progress
    schedulers = [engine_at(SystemClock(), "scheduler-a"), engine_at(SystemClock(), "scheduler-b")]
    start = threading.Barrier(3)
    results: dict[str, Any] = {}

    def scheduler(engine: RotationEngine) -> None:
        start.wait()
        results[engine.worker_id] = tick(engine=engine, respect_interval=False)

    def manual() -> None:
        start.wait()
        results["manual"] = root.post(secret_url(secret_id, "rotate"))

    threads = [threading.Thread(target=scheduler, args=(e,)) for e in schedulers] + [threading.Thread(target=manual)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    runs = schedulers[0].runs.recent(secret_id, 10)
    assert len(runs) == 1, [r.run_id for r in runs]
    assert runs[0].status is RunStatus.COMPLETED
    versions = root.get(secret_url(secret_id, "versions")).json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert provider.calls.count("generate") == 1 and provider.calls.count("apply") == 1
    manual_status = results["manual"].status_code
    assert manual_status in (200, 409), results["manual"].text
    started = sum(r.get("started", 0) for k, r in results.items() if k != "manual") + (manual_status == 200)
    assert started == 1, results
    version, value = served(root, secret_id)
    assert version == 2 and value in provider.valid and first not in provider.valid


def outbox_of(secret_id: str) -> dict[str, str]:
    """The outbox items of ``secret_id``'s notifications: ``{detail type: notification id}``."""
    from chalicelib.aws import client
    from chalicelib.config import get_settings

    items = client("dynamodb").query(TableName=get_settings().secrets_table, ConsistentRead=True,
                                     KeyConditionExpression="pk = :pk",
                                     ExpressionAttributeValues={":pk": {"S": "OUTBOX"}})["Items"]
    return {item["detail_type"]["S"]: item["notification_id"]["S"] for item in items
            if json.loads(item["detail"]["S"])["secretId"] == secret_id}


@pytest.mark.parametrize("notification", ["RotationStarted", "SecretRotated"])
def test_a_notification_lost_in_a_crash_is_delivered_once_by_the_scheduler(
        root: Api, provider: ProviderRotator, read_events: EventReader, notification: str) -> None:
    secret_id, first = unique("outbox/api"), unique("sk_test_first")
    assert root.store(secret_id, provider.accept(first), type="api_key").status_code == 201
    rotation = {"strategy": "immediate", "retireAfter": "0s"}
    assert root.http.put(secret_url(secret_id, "config"), json={"rotation": rotation}).status_code == 200
    clock = FrozenClock(datetime.now(UTC))
    dying = engine_at(clock, f"dying-before-{notification}", crash_at(f"publish:{notification}"))

    with pytest.raises(Crash):
        dying.drive(dying.start(secret_id))
    kept = outbox_of(secret_id)
    assert list(kept) == [notification]  # committed with the change, never published
    assert read_events(lambda e: e["detail"].get("secretId") == secret_id and e["detail-type"] == notification,
                       timeout=1) == []

    clock.advance(LEASE_SECONDS + 10)  # the lease has expired and the item is past the grace period
    counts = tick(engine=engine_at(clock, "recovering"), respect_interval=False)
    assert counts["notices"] >= 1, counts
    assert outbox_of(secret_id) == {}
    [run] = dying.runs.recent(secret_id, 5)
    assert (run.status, run.step) == (RunStatus.COMPLETED, RunStep.DONE), run.history

    events = read_events(lambda e: e["detail"].get("secretId") == secret_id, timeout=3, count=3)
    assert sorted(e["detail-type"] for e in events) == ["RotationStarted", "SecretRotated"]  # each once
    [lost] = [e for e in events if e["detail-type"] == notification]
    assert lost["detail"]["notificationId"] == kept[notification] and lost["detail"]["rotationId"] == run.run_id
    assert all(e["detail"]["notificationId"].startswith("ntf_") for e in events)
