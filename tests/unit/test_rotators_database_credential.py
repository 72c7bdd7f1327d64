"""The database_credential rotator's logic against a fake engine: alternation, single-user mode, revoke rules.

The real PostgreSQL and MariaDB paths are in tests/integration/test_rotators_database_credential.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pytest

from chalicelib.errors import DependencyUnavailable
from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationNotSupported, RotationTestFailed
from chalicelib.rotation.rotators import database_credential as module
from chalicelib.rotation.rotators._common import RevokeRefused, RotationConfigInvalid
from chalicelib.rotation.rotators.database_credential import ROTATOR, Credential, MysqlDriver
from chalicelib.secret_types import validate_value

MASTER_PASSWORD = "master-password-1"


def credential(username: str, password: str, **extra: Any) -> str:
    return json.dumps({"engine": "postgres", "host": "db.internal", "port": 5432, "dbname": "orders",
                       "username": username, "password": password, **extra})


@dataclass
class FakeConnection:
    user: str

    def close(self) -> None:
        return None


class FakeEngine:
    """Users and passwords in a dict; a failed login raises with the password in its text, as drivers may."""

    def __init__(self) -> None:
        self.passwords = {"master": MASTER_PASSWORD, "app": "app-password-0"}
        self.members: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []

    def connect(self, credential: Credential, timeout: int) -> FakeConnection:
        if self.passwords.get(credential.username) != credential.password:
            raise RuntimeError(f"password authentication failed: {credential.password}")
        return FakeConnection(credential.username)

    def whoami(self, connection: FakeConnection) -> str:
        return connection.user

    def set_password(self, connection: FakeConnection, username: str, password: str, *, clone_of: str | None,
                     group: str | None) -> None:
        self.calls.append((connection.user, username))
        if username not in self.passwords:
            if clone_of is None:
                raise RotationConfigInvalid(f"the database user {username} does not exist")
            self.members[username] = group or clone_of
        self.passwords[username] = password

    def set_own_password(self, connection: FakeConnection, password: str) -> None:
        self.calls.append((connection.user, connection.user))
        self.passwords[connection.user] = password

    def user_exists(self, connection: FakeConnection, username: str) -> bool:
        return username in self.passwords


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setitem(module._DRIVERS, "postgres", fake)
    return fake


def context(current: str | None, **config: Any) -> RotationContext:
    secrets = {"db/master": credential("master", MASTER_PASSWORD)}
    return RotationContext(secret_id="db/orders", secret_type=SecretType.DATABASE_CREDENTIAL,
                           config={"masterSecretId": "db/master", "users": ["app", "app_clone"], **config},
                           current_value=current, resolve_secret=secrets.__getitem__)


def logs_in(engine: FakeEngine, value: str) -> bool:
    parsed = json.loads(value)
    return engine.passwords.get(parsed["username"]) == parsed["password"]


def test_alternating_users_full_cycle(engine: FakeEngine) -> None:
    first = credential("app", "app-password-0", sslmode="require")
    ctx = context(first)
    new = ROTATOR.generate(ctx)
    parsed = json.loads(new)
    assert parsed["username"] == "app_clone" and parsed["sslmode"] == "require" and len(parsed["password"]) >= 40
    assert validate_value(SecretType.DATABASE_CREDENTIAL, new).username == "app_clone"
    ROTATOR.apply(ctx, new)
    assert engine.members == {"app_clone": "app"} and engine.calls == [("master", "app_clone")]
    ROTATOR.test(ctx, new)
    assert logs_in(engine, first) and logs_in(engine, new)  # both work during the rollout
    ROTATOR.revoke(replace(ctx, current_value=new), first)
    assert not logs_in(engine, first) and logs_in(engine, new)

    back = ROTATOR.generate(replace(ctx, current_value=new))
    assert json.loads(back)["username"] == "app"
    ROTATOR.apply(replace(ctx, current_value=new), back)
    assert logs_in(engine, back) and logs_in(engine, new)


def test_users_option_and_group_role(engine: FakeEngine) -> None:
    ctx = context(credential("app", "app-password-0"), users=["app", "app_b"], groupRole="app_rw")
    new = ROTATOR.generate(ctx)
    assert json.loads(new)["username"] == "app_b"
    ROTATOR.apply(ctx, new)
    assert engine.members == {"app_b": "app_rw"}
    with pytest.raises(RotationConfigInvalid, match="not one of"):
        ROTATOR.generate(context(credential("other", "x"), users=["app", "app_b"]))
    assert json.loads(ROTATOR.generate(context(credential("app_clone", "x"))))["username"] == "app"


def test_the_master_only_touches_the_configured_users(engine: FakeEngine) -> None:
    """A principal who may write the secret must not be able to aim the master at another account."""
    engine.passwords["dba"] = "dba-password"
    ctx = context(credential("app", "app-password-0"))
    with pytest.raises(RotationConfigInvalid, match="not CURRENT"):
        ROTATOR.apply(ctx, credential("dba", "attacker-chosen-1"))
    with pytest.raises(RotationConfigInvalid, match="not one of"):
        ROTATOR.generate(context(credential("dba", "dba-password")))
    ROTATOR.revoke(ctx, credential("dba", "dba-password"))
    with pytest.raises(RotationConfigInvalid, match="master user"):
        ROTATOR.revoke(context(credential("app", "app-password-0"), users=["app", "master"]),
                       credential("master", "whatever"))
    single = context(credential("dba", "dba-password"), mode="single-user", users=["app"])
    with pytest.raises(RotationConfigInvalid, match="not one of"):
        ROTATOR.apply(single, credential("dba", "attacker-chosen-1"))
    assert engine.passwords["dba"] == "dba-password" and engine.passwords["master"] == MASTER_PASSWORD
    assert engine.calls == []


def test_apply_refuses_the_current_user_and_another_server(engine: FakeEngine) -> None:
    ctx = context(credential("app", "app-password-0"))
    with pytest.raises(RotationConfigInvalid, match="not CURRENT"):
        ROTATOR.apply(ctx, credential("app", "new-password-1"))
    moved = json.loads(credential("app_clone", "new-password-1"))
    moved["host"] = "elsewhere.internal"
    with pytest.raises(RotationConfigInvalid, match="same database server"):
        ROTATOR.apply(ctx, json.dumps(moved))
    assert engine.calls == []


def test_a_failed_login_fails_the_test_without_quoting_the_password(engine: FakeEngine) -> None:
    with pytest.raises(RotationTestFailed) as raised:
        ROTATOR.test(context(None), credential("app", "wrong-password-9"))
    assert "wrong-password-9" not in str(raised.value) and "app" in str(raised.value)


def test_master_login_failure_is_a_dependency_error_without_the_password(engine: FakeEngine) -> None:
    engine.passwords["master"] = "changed"
    ctx = context(credential("app", "app-password-0"))
    with pytest.raises(DependencyUnavailable) as raised:
        ROTATOR.apply(ctx, ROTATOR.generate(ctx))
    assert MASTER_PASSWORD not in raised.value.message and "RuntimeError" in raised.value.message


def test_revoke_never_touches_the_current_user(engine: FakeEngine) -> None:
    current = credential("app", "app-password-0")
    with pytest.raises(RevokeRefused):
        ROTATOR.revoke(context(current), current)
    ROTATOR.revoke(context(current), credential("app", "an-older-password"))
    assert logs_in(engine, current) and engine.calls == []
    ROTATOR.revoke(context(current), credential("ghost", "x"))  # a user that no longer exists: nothing to do
    assert engine.calls == []


def test_single_user_mode_changes_the_one_user_and_restores_it_after_a_failed_test(engine: FakeEngine) -> None:
    current = credential("app", "app-password-0")
    ctx = context(current, mode="single-user")
    new = ROTATOR.generate(ctx)
    assert json.loads(new)["username"] == "app"
    ROTATOR.apply(ctx, new)
    assert logs_in(engine, new) and not logs_in(engine, current)  # not zero-downtime: documented
    ROTATOR.revoke(ctx, new)  # the engine revokes a value that failed its test: CURRENT works again
    assert logs_in(engine, current) and not logs_in(engine, new)


def test_single_user_mode_without_master_changes_its_own_password_and_resumes(engine: FakeEngine) -> None:
    current = credential("app", "app-password-0")
    ctx = RotationContext("db/orders", SecretType.DATABASE_CREDENTIAL, {"mode": "single-user"}, current_value=current)
    new = ROTATOR.generate(ctx)
    ROTATOR.apply(ctx, new)
    ROTATOR.apply(ctx, new)  # again, as after a crash: logs in with the new password this time
    assert engine.calls == [("app", "app"), ("app", "app")] and logs_in(engine, new)
    ROTATOR.revoke(replace(ctx, current_value=new), current)
    assert logs_in(engine, new)


def test_options_and_shapes(engine: FakeEngine) -> None:
    for bad in ({"mode": "both"}, {"users": ["a"]}, {"users": ["a", "a"]}, {"passwordBytes": 4}, {"users": None}):
        with pytest.raises(RotationConfigInvalid):
            ROTATOR.check_config({"masterSecretId": "m", "users": ["a", "b"], **bad})
    with pytest.raises(RotationConfigInvalid, match="masterSecretId"):
        ROTATOR.check_config({"users": ["a", "b"]})
    with pytest.raises(RotationConfigInvalid, match="users"):
        ROTATOR.check_config({"mode": "single-user", "masterSecretId": "m"})
    ROTATOR.check_config({"mode": "single-user"})
    ROTATOR.check_config({"mode": "single-user", "masterSecretId": "m", "users": ["a"]})
    with pytest.raises(RotationNotSupported, match="JSON"):
        ROTATOR.generate(context("postgresql://app:pw@db.internal/orders"))
    with pytest.raises(RotationNotSupported):
        ROTATOR.generate(context(None))
    with pytest.raises(RotationNotSupported, match="engine"):
        module.driver_for("oracle")


class FakeCursor:
    def __init__(self, grants: list[str]) -> None:
        self.grants = grants
        self.executed: list[str] = []

    def execute(self, statement: str, args: Any = None) -> None:
        self.executed.append(statement if args is None else f"{statement} % {args!r}")

    def fetchall(self) -> list[tuple[str]]:
        return [(line,) for line in self.grants]


def test_mysql_grant_copy_strips_passwords_and_renames_the_grantee() -> None:
    cursor = FakeCursor([
        "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*ABCDEF0123'",
        "GRANT SELECT, INSERT ON `orders`.* TO `app`@`%`",
        "GRANT RELOAD ON *.* TO `app`@`%` IDENTIFIED VIA mysql_native_password USING '*99' OR unix_socket "
        "WITH GRANT OPTION",
        "GRANT `reporting` TO `app`@`%`",
        "SET DEFAULT ROLE `reporting` FOR `app`@`%`",
    ])
    MysqlDriver._copy_grants(cursor, "app", "app_clone", "%")
    assert cursor.executed[1:] == [
        "GRANT SELECT, INSERT ON `orders`.* TO `app_clone`@`%`",
        "GRANT RELOAD ON *.* TO `app_clone`@`%` WITH GRANT OPTION",
        "GRANT `reporting` TO `app_clone`@`%`",
        "SET DEFAULT ROLE `reporting` FOR `app_clone`@`%`",
    ]
