"""Zero-downtime rotation end to end: HTTP retrieves, the real engine and scheduler, real databases.

For PostgreSQL and MariaDB in turn, an application database with its user (version 1 of a
``database_credential`` secret) and a master user (a secret of its own, named by
``masterSecretId``) are created. Four service-account principals with ``read`` on the secret
take turns in a client loop that, every 50 ms, retrieves the secret through ``GET /secrets/{id}``
and opens a NEW database connection with whatever credential it was served.

Meanwhile ``POST /secrets/{id}/rotate`` starts a rolling rotation (alternating users, a
rollout of about 14 s, ``retireAfter`` 3 s) and the scheduler's ``tick()`` drives it through
finish and retirement. Required: not one failed retrieve or login, both versions served side by
side during the rollout, and after retirement the old password refused.

The databases, users and the private password-checking PostgreSQL server come from the fixtures
of ``test_rotators_database_credential`` (the shared PostgreSQL on 127.0.0.1:5432 trusts
loopback logins, so a refused password could not be observed there).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import tests.integration.test_rotators_database_credential as databases
from chalicelib.rotation.rollout import bucket
from chalicelib.rotation.scheduler import tick
from tests.integration.helpers import Api, secret_url, unique

pytestmark = pytest.mark.databases

# the application databases and users (and the servers they live on), reused as they are
postgres = databases.postgres
mariadb = databases.mariadb
pg_app = databases.pg_app
maria_app = databases.maria_app
login = databases.login
login_refused = databases.login_refused

ROLLOUT_HOURS = 0.004  # 14.4 s
RETIRE_AFTER = "3s"
CADENCE = 0.05
DEADLINE_SECONDS = 40


@dataclass(frozen=True)
class Attempt:
    """One iteration of the client loop: who retrieved, what it was served, whether the login worked."""

    at: float
    principal: str
    version: int | None
    username: str | None
    error: str | None


class ClientLoop(threading.Thread):
    """Every 50 ms: retrieve the secret over HTTP as the next principal, then log in with a new connection."""

    def __init__(self, secret_id: str, readers: list[tuple[str, Api]]) -> None:
        super().__init__(daemon=True)
        self.secret_id = secret_id
        self.readers = readers
        self.attempts: list[Attempt] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        n = 0
        while not self._stop_event.is_set():
            principal, api = self.readers[n % len(self.readers)]
            self.attempts.append(self._attempt(principal, api))
            n += 1
            pause = started + n * CADENCE - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def _attempt(self, principal: str, api: Api) -> Attempt:
        now = time.monotonic()
        try:
            answer = api.get(secret_url(self.secret_id))
        except Exception as error:
            return Attempt(now, principal, None, None, f"retrieve: {type(error).__name__}")
        if answer.status_code != 200:
            return Attempt(now, principal, None, None, f"retrieve: HTTP {answer.status_code}")
        body = answer.json()
        username = json.loads(body["value"])["username"]
        try:
            login(body["value"])
        except Exception as error:
            return Attempt(now, principal, body["version"], username, f"login: {type(error).__name__}")
        return Attempt(now, principal, body["version"], username, None)

    def wait_for(self, count: int) -> None:
        target = len(self.attempts) + count
        deadline = time.monotonic() + 15
        while len(self.attempts) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.attempts) >= target, "the client loop stalled"

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


@pytest.fixture(params=["postgres", "mariadb"])
def app_db(request: pytest.FixtureRequest) -> databases.Fixture:
    fixture: databases.Fixture = request.getfixturevalue("pg_app" if request.param == "postgres" else "maria_app")
    return fixture


@pytest.fixture
def root(api_server: str, root_token: str) -> Api:
    return Api(api_server, root_token)


def spread_readers(root: Api, secret_id: str) -> list[tuple[str, Api]]:
    """Four service accounts whose rollout buckets fall in each quarter, so that mid-rollout some are
    served the new version and some the old one."""
    chosen: dict[int, str] = {}
    while len(chosen) < 4:
        name = unique("zd-svc")
        chosen.setdefault(bucket(secret_id, name) // 25, name)
    readers = []
    for quarter in sorted(chosen):
        principal_id, token = root.new_principal(chosen[quarter], type="service_account")
        readers.append((principal_id, Api(str(root.http.base_url), token)))
    return readers


def run_status(root: Api, secret_id: str) -> dict[str, Any]:
    answer = root.get(secret_url(secret_id, "rotation"))
    assert answer.status_code == 200, answer.text
    run: dict[str, Any] = answer.json()["run"]
    return run


def drive_until_retired(root: Api, secret_id: str) -> tuple[float, list[dict[str, Any]]]:
    """Call the scheduler until the run is completed and retired; returns (when it finished, tick counts)."""
    finished_at: float | None = None
    counts = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        counts.append(tick(respect_interval=False))
        run = run_status(root, secret_id)
        if run["status"] == "completed" and finished_at is None:
            finished_at = time.monotonic()
        if run["status"] == "completed" and run["step"] == "done":
            assert finished_at is not None
            return finished_at, counts
        assert run["status"] == "in_progress" or run["status"] == "completed", run
        time.sleep(0.25)
    raise AssertionError(f"the rotation was not retired within {DEADLINE_SECONDS}s: {run_status(root, secret_id)}")


@pytest.fixture
def secret_ids(root: Api) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    for secret_id in created:
        root.delete(secret_url(secret_id))


def test_rolling_rotation_and_retirement_without_a_failed_login(app_db: databases.Fixture, root: Api,
                                                                secret_ids: list[str]) -> None:
    master_id, secret_id = unique("zd/master"), unique("zd/orders")
    secret_ids.extend([secret_id, master_id])
    assert root.store(master_id, app_db.master, type="database_credential").status_code == 201
    readers = spread_readers(root, secret_id)
    access = {"root": ["admin"], **{principal: ["read"] for principal, _ in readers}}
    stored = root.store(secret_id, app_db.current, type="database_credential", access=access)
    assert stored.status_code == 201, stored.text
    users = [app_db.names["app"], f'{app_db.names["app"]}_clone']
    rotation = {"strategy": "rolling", "rolloutDurationHours": ROLLOUT_HOURS, "retireAfter": RETIRE_AFTER,
                "testNewKey": True, "masterSecretId": master_id, "users": users}
    configured = root.http.put(secret_url(secret_id, "config"), json={"rotation": rotation})
    assert configured.status_code == 200, configured.text

    loop = ClientLoop(secret_id, readers)
    began = time.monotonic()
    loop.start()
    try:
        loop.wait_for(8)
        rotated = root.post(secret_url(secret_id, "rotate"), {"reason": "zero-downtime check"})
        assert rotated.status_code == 200, rotated.text
        rotate_at = time.monotonic()
        body = rotated.json()
        assert (body["oldVersion"], body["newVersion"], body["status"]) == (1, 2, "in_progress"), body
        finished_at, counts = drive_until_retired(root, secret_id)
        retired_at = time.monotonic()
        loop.wait_for(8)
    finally:
        loop.stop()
    elapsed = time.monotonic() - began

    attempts = loop.attempts
    failures = [a for a in attempts if a.error is not None]
    assert failures == [], f"{len(failures)} of {len(attempts)} attempts failed: {failures[:10]}"
    assert not [c for c in counts if c.get("errors") or c.get("failed")], counts
    assert len(attempts) >= elapsed / CADENCE * 0.5, f"only {len(attempts)} attempts in {elapsed:.1f}s"

    during = [a for a in attempts if rotate_at <= a.at < finished_at]
    assert {a.version for a in during} == {1, 2}, "both versions must be served during the rollout"
    first_new = min(i for i, a in enumerate(during) if a.version == 2)
    last_old = max(i for i, a in enumerate(during) if a.version == 1)
    assert first_new < last_old, "the rollout must serve the old and the new version side by side"
    assert {a.principal for a in during if a.version == 2} and {a.principal for a in during if a.version == 1}
    for principal, _ in readers:  # a principal never goes back to the old version once moved
        mine = [a.version or 0 for a in during if a.principal == principal]
        assert mine == sorted(mine), (principal, mine)
    assert {a.username for a in attempts if a.version == 1} == {users[0]}
    assert {a.username for a in attempts if a.version == 2} == {users[1]}
    after = [a for a in attempts if a.at >= retired_at]
    assert after and {a.version for a in after} == {2}

    run = run_status(root, secret_id)
    names = [step["name"] for step in run["steps"]]
    assert names == ["start", "create", "set", "test", "rollout", "finish", "retire"], names
    assert run["steps"][-1]["status"] == "done", "the retire step must have replaced the old password"
    served = root.get(secret_url(secret_id)).json()
    assert served["version"] == 2 and login(served["value"]) == 3
    assert login_refused(app_db.current), "after retirement the old password must no longer work"
    print(f"\n{app_db.names['db']}: {len(attempts)} logins in {elapsed:.1f}s, rollout+retire "
          f"{retired_at - rotate_at:.1f}s, {len(during)} during the rollout "
          f"({sum(a.version == 2 for a in during)} on v2)")
