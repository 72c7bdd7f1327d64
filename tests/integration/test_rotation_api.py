"""Rotation over real HTTP against the moto server: configure, rotate, status, switch, rollback, events, CLI.

A provider stand-in (:class:`ProviderRotator`) is installed for ``api_key`` in this process (the
API server runs in a thread of it): the values it accepts are its ``valid`` set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result

from chalicelib.cli.main import cli
from chalicelib.clock import FrozenClock
from chalicelib.rotation.engine import RotationEngine, get_rotation_engine
from chalicelib.rotation.rollout import choose_version
from chalicelib.rotation.scheduler import tick
from tests.integration.conftest import EventReader
from tests.integration.helpers import Api, secret_url, unique
from tests.unit.test_rotation_support import ProviderRotator, installed


@pytest.fixture
def root(api_server: str, root_token: str) -> Api:
    return Api(api_server, root_token)


@pytest.fixture
def provider(local_aws: str) -> Iterator[ProviderRotator]:
    with installed(ProviderRotator()) as rotator:
        yield rotator  # type: ignore[misc]


def new_key(root: Api, provider: ProviderRotator, **rotation: Any) -> tuple[str, str]:
    """A new api_key secret (configured when ``rotation`` is given); returns (its id, its first value)."""
    secret_id, first = unique("rot/api"), unique("sk_test_first")
    assert root.store(secret_id, provider.accept(first), type="api_key").status_code == 201
    if rotation:
        configured = root.http.put(secret_url(secret_id, "config"), json={"rotation": rotation})
        assert configured.status_code == 200, configured.text
    return secret_id, first


def later_engine(hours: float) -> RotationEngine:
    """The process's engine, seen from a clock ``hours`` ahead (what the scheduler will do then)."""
    engine = get_rotation_engine()
    clock = FrozenClock(engine.clock.now() + timedelta(hours=hours))
    return RotationEngine(engine.vault, engine.runs, engine.notifier, engine.outbox, clock=clock,
                          worker_id=f"later-{hours}")


def current(root: Api, secret_id: str) -> dict[str, Any]:
    answer = root.get(secret_url(secret_id))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_configure_rotate_status_with_events(root: Api, provider: ProviderRotator, read_events: EventReader) -> None:
    secret_id, first = new_key(root, provider)
    configured = root.http.put(secret_url(secret_id, "config"), json={"rotation": {
        "enabled": True, "interval": "30d", "strategy": "immediate", "testNewKey": True, "retireAfter": "0s"}})
    assert configured.status_code == 200, configured.text
    assert configured.json()["nextRotationAt"] is not None
    meta = root.get(secret_url(secret_id, "metadata")).json()
    assert meta["rotation"]["interval"] == "30d" and meta["rotation"]["strategy"] == "immediate"
    from chalicelib.vault.service import get_vault_service

    indexed = get_vault_service().repo.scheduled("ROTATION", "9999", limit=1000)
    assert secret_id in {r.secret_id for r in indexed}  # the next due time is on the index

    rotated = root.post(secret_url(secret_id, "rotate"), {"reason": "quarterly", "notifyServices": ["billing"]})
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert {k: body[k] for k in ("secretId", "oldVersion", "newVersion", "status")} == {
        "secretId": secret_id, "oldVersion": 1, "newVersion": 2, "status": "completed"}
    assert body["progress"] == {"rolled_out": 100, "total": 100} and body["rotationId"].startswith("rot_")
    served = current(root, secret_id)
    assert served["version"] == 2 and served["value"] in provider.valid and first not in provider.valid

    status = root.get(secret_url(secret_id, "rotation")).json()
    assert status["run"]["rotationId"] == body["rotationId"] and status["run"]["status"] == "completed"
    assert [s["name"] for s in status["run"]["steps"]] == ["start", "create", "set", "test", "finish", "retire"]
    versions = root.get(secret_url(secret_id, "versions")).json()["versions"]
    assert [(v["version"], v["source"]) for v in versions] == [(1, "store"), (2, "rotation")]

    def mine(kind: str) -> Callable[[dict[str, Any]], bool]:
        return lambda event: event["detail-type"] == kind and event["detail"]["secretId"] == secret_id

    for kind in ("RotationStarted", "SecretRotated"):
        [event] = read_events(mine(kind), timeout=10)
        assert event["source"] == "v-secure" and event["detail"]["rotationId"] == body["rotationId"]
    assert served["value"] not in json.dumps(status)


def test_failed_test_keeps_current_and_notifies(root: Api, provider: ProviderRotator,
                                                read_events: EventReader) -> None:
    secret_id, first = new_key(root, provider, strategy="canary")
    provider.fail_test = True
    failed = root.post(secret_url(secret_id, "rotate"))
    assert failed.status_code == 422 and failed.json()["code"] == "rotation_test_failed"
    assert failed.json()["details"]["rotationId"].startswith("rot_")
    assert current(root, secret_id)["value"] == first and first in provider.valid
    assert provider.valid == {first}  # the new key was revoked
    status = root.get(secret_url(secret_id, "rotation")).json()["run"]
    assert status["status"] == "failed" and status["error"]["step"] == "test"
    [event] = read_events(lambda e: e["detail-type"] == "RotationFailed" and e["detail"]["secretId"] == secret_id,
                          timeout=10)
    assert event["detail"]["error"]["code"] == "rotation_test_failed"
    versions = root.get(secret_url(secret_id, "versions")).json()["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "active"), (2, "retired")]


def test_canary_with_1000_principals_and_real_retrieves(root: Api, provider: ProviderRotator) -> None:
    readers = []
    for n in range(8):
        principal_id, token = root.new_principal(unique(f"reader{n}"))
        readers.append((principal_id, Api(str(root.http.base_url), token)))
    secret_id, first = unique("rot/api"), unique("sk_test_first")
    stored = root.store(secret_id, provider.accept(first), type="api_key",
                        access={"root": ["admin"], **{p: ["read"] for p, _ in readers}})
    assert stored.status_code == 201, stored.text
    configured = root.http.put(secret_url(secret_id, "config"),
                               json={"rotation": {"strategy": "canary", "rolloutDurationHours": 4}})
    assert configured.status_code == 200, configured.text

    started = root.post(secret_url(secret_id, "rotate")).json()
    assert started["status"] == "in_progress" and started["progress"]["rolled_out"] == 5
    repo = get_rotation_engine().repo
    record = repo.get(secret_id)
    assert record is not None and record.rollout is not None
    principals = [f"service-{n:04d}" for n in range(1000)]
    served_first = [choose_version(record, p) for p in principals]
    assert 30 <= served_first.count(2) <= 70  # 3-7 % served the new version
    again = repo.get(secret_id)
    assert again is not None and served_first == [choose_version(again, p) for p in principals]  # stable
    for principal_id, api in readers:  # the real retrieve path picks the same version
        for _ in range(2):
            answer = api.get(secret_url(secret_id))
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == choose_version(record, principal_id)

    tick(engine=later_engine(2.05), respect_interval=False)
    record = repo.get(secret_id)
    assert record is not None and record.rollout is not None and record.rollout["percent"] == 50
    half = [choose_version(record, p) for p in principals]
    assert 400 <= half.count(2) <= 600 and all(h == 2 for f, h in zip(served_first, half, strict=True) if f == 2)

    tick(engine=later_engine(4.1), respect_interval=False)
    record = repo.get(secret_id)
    assert record is not None and record.rollout is None and record.current_version == 2
    assert {choose_version(record, p) for p in principals} == {2}
    assert {api.get(secret_url(secret_id)).json()["version"] for _, api in readers} == {2}


def test_blue_green_switch_and_store_refused_meanwhile(root: Api, provider: ProviderRotator) -> None:
    secret_id, first = new_key(root, provider, strategy="blue-green", retireAfter="1h")
    started = root.post(secret_url(secret_id, "rotate")).json()
    assert (started["status"], started["step"], started["progress"]["rolled_out"]) == ("in_progress", "rollout", 0)
    assert current(root, secret_id)["version"] == 1
    green = root.get(secret_url(secret_id), stage="PENDING").json()
    assert green["version"] == 2 and green["value"] in provider.valid
    refused = root.store(secret_id, "sk_test_written_during_rotation")
    assert refused.status_code == 409 and refused.json()["code"] == "rotation_in_progress"

    switched = root.post(secret_url(secret_id, "switch"), {"reason": "green is healthy"})
    assert switched.status_code == 200, switched.text
    assert (switched.json()["status"], switched.json()["step"]) == ("completed", "retire")
    assert current(root, secret_id)["version"] == 2
    assert root.get(secret_url(secret_id), stage="PREVIOUS").json()["value"] == first
    again = root.post(secret_url(secret_id, "switch"))
    assert again.status_code == 409 and again.json()["code"] == "no_rotation_in_progress"
    assert root.store(secret_id, "sk_test_written_after_the_switch").status_code == 201


def test_rollback_during_and_after_a_rotation(root: Api, provider: ProviderRotator,
                                              read_events: EventReader) -> None:
    during, _first = new_key(root, provider, strategy="canary", retireAfter="1h")
    root.post(secret_url(during, "rotate"))
    rolled = root.post(secret_url(during, "rollback"), {"version": 1, "reason": "errors in canary"})
    assert rolled.status_code == 200, rolled.text
    record = get_rotation_engine().repo.get(during)
    assert record is not None and record.rollout is None and record.labels["CURRENT"] == 1
    assert {choose_version(record, f"svc-{n}") for n in range(500)} == {1}
    assert current(root, during)["version"] == 1
    status = root.get(secret_url(during, "rotation")).json()["run"]
    assert status["status"] == "rolled_back" and status["retireVersion"] == 2
    read_events(lambda e: e["detail-type"] == "RotationRolledBack" and e["detail"]["secretId"] == during,
                timeout=10)

    after, first = new_key(root, provider, strategy="immediate", retireAfter="2h")
    done = root.post(secret_url(after, "rotate")).json()
    assert done["status"] == "completed" and current(root, after)["version"] == 2
    new_value = current(root, after)["value"]
    undo = root.post(secret_url(after, "rotation", "rollback"), {"reason": "clients fail"})
    assert undo.status_code == 200 and undo.json()["status"] == "rolled_back"
    assert current(root, after)["value"] == first and new_value in provider.valid
    tick(engine=later_engine(2.1), respect_interval=False)
    assert new_value not in provider.valid and first in provider.valid
    labels = root.get(secret_url(after, "metadata")).json()["labels"]
    assert labels == {"CURRENT": 1}


def test_configuration_secrets_rotate_only_to_validated_values(root: Api) -> None:
    schema = {"type": "object", "required": ["region", "replicas"],
              "properties": {"region": {"type": "string"}, "replicas": {"type": "integer", "minimum": 1}}}
    secret_id = unique("rot/config")
    stored = root.store(secret_id, json.dumps({"region": "eu-west-1", "replicas": 2}), type="configuration",
                        valueSchema=schema)
    assert stored.status_code == 201, stored.text
    scheduled = root.http.put(secret_url(secret_id, "config"), json={"rotation": {"interval": "30d"}})
    assert scheduled.status_code == 400 and scheduled.json()["code"] == "rotation_not_supported"
    ok = root.http.put(secret_url(secret_id, "config"), json={"rotation": {"strategy": "canary"}})
    assert ok.status_code == 200, ok.text

    nothing = root.post(secret_url(secret_id, "rotate"))
    assert nothing.status_code == 400 and nothing.json()["code"] == "rotation_not_supported"
    invalid = root.post(secret_url(secret_id, "rotate"), {"value": json.dumps({"region": "eu-west-1",
                                                                               "replicas": 0})})
    assert invalid.status_code == 400 and invalid.json()["code"] == "invalid_secret_value"
    assert "/replicas" in invalid.json()["message"]
    assert len(root.get(secret_url(secret_id, "versions")).json()["versions"]) == 1

    new_config = json.dumps({"region": "eu-west-3", "replicas": 4})
    rolled = root.post(secret_url(secret_id, "rotate"), {"value": new_config, "strategy": "immediate"})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["status"] == "completed" and current(root, secret_id)["value"] == new_config
    canary = root.post(secret_url(secret_id, "rotate"),
                       {"value": json.dumps({"region": "us-east-1", "replicas": 3})}).json()
    assert canary["status"] == "in_progress" and canary["progress"]["rolled_out"] == 5


Run = Callable[..., Result]


@pytest.fixture
def run(api_server: str, root_token: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("V_SECURE_ENDPOINT", api_server)
    monkeypatch.setenv("V_SECURE_TOKEN", root_token)
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, (args, result.output, result.stderr)
        return result

    return invoke


def test_cli_rotate_status_switch_rollback(run: Run, root: Api, provider: ProviderRotator) -> None:
    secret_id, _first = new_key(root, provider)
    configured = json.loads(run("secret", "rotate", "--secret-id", secret_id, "--rotation-interval", "30d",
                                "--strategy", "rolling", "--retire-after", "1h").stdout)
    assert configured["rotation"]["interval"] == "30d" and configured["rotation"]["strategy"] == "rolling"
    assert current(root, secret_id)["version"] == 1  # configuring alone does not rotate

    rotated = json.loads(run("secret", "rotate", "--secret-id", secret_id, "--now", "--strategy", "blue-green").stdout)
    assert rotated["status"] == "in_progress" and rotated["strategy"] == "blue-green"
    status = json.loads(run("secret", "rotation-status", "--secret-id", secret_id).stdout)
    assert status["run"]["step"] == "rollout" and status["rotation"]["strategy"] == "rolling"
    switched = json.loads(run("secret", "switch", "--secret-id", secret_id).stdout)
    assert switched["status"] == "completed" and current(root, secret_id)["version"] == 2

    run("secret", "rotate", "--secret-id", secret_id, "--retire-after", "0s", "--rotation-interval", "30d")
    rotated = json.loads(run("secret", "rotate", "--secret-id", secret_id, "--now", "--strategy", "canary").stdout)
    assert rotated["newVersion"] == 3 and rotated["progress"]["rolled_out"] == 5
    back = json.loads(run("secret", "rollback", "--secret-id", secret_id).stdout)
    assert back["status"] == "rolled_back" and current(root, secret_id)["version"] == 2
    nothing = run("secret", "rollback", "--secret-id", secret_id, ok=False)
    assert nothing.exit_code == 1 and "no_rotation_in_progress" in nothing.stderr
    run("secret", "rollback", "--secret-id", secret_id, "--version", "1")
    assert current(root, secret_id)["version"] == 1


def test_rotation_routes_are_documented(root: Api) -> None:
    paths = root.get("/openapi.json").json()["paths"]
    assert {"/secrets/{secretId}/config", "/secrets/{secretId}/rotate", "/secrets/{secretId}/rotation",
            "/secrets/{secretId}/switch", "/secrets/{secretId}/rotation/rollback"} <= set(paths)


def test_the_scheduled_job_runs_the_scheduler(local_aws: str) -> None:
    from chalicelib import jobs

    counts = jobs.run_rotation_scheduler()
    assert "skipped" not in counts and counts.get("errors", 0) == 0
