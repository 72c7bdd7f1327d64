"""The database_credential rotator against real PostgreSQL and MariaDB servers.

Each test creates its own database, application user and master user (unique names) and drops
them afterwards. Logins must really be checked, so:

* MariaDB: the server on 127.0.0.1:3306 (root, no password) checks the passwords of the users
  the tests create;
* PostgreSQL: the server on 127.0.0.1:5432 is used when it checks passwords on loopback. When it
  trusts loopback logins (a common development setup), a password test against it would prove
  nothing, so a private server is started from the same PostgreSQL installation (``initdb`` and
  ``pg_ctl``, found on the PATH or through the shared server's ``pg_config``) with
  ``scram-sha-256`` on a free port, and stopped at the end of the module.

The zero-downtime tests run the engine's steps in order (generate, apply, test, roll out, revoke)
while a client opens a new connection every 50 ms with a credential handed out the way a rollout
does (old only, then old and new alternately, then new only), and require zero failed logins.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationTestFailed
from chalicelib.rotation.rotators.database_credential import ROTATOR, DatabaseCredentialRotator
from chalicelib.secret_types import validate_value
from tests.conftest import service_unavailable
from tests.integration.helpers import Api, secret_url, unique
from tests.rotator_support import rotate_like_engine

pytestmark = pytest.mark.databases

psycopg = pytest.importorskip("psycopg")
pymysql = pytest.importorskip("pymysql")


# --- servers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    engine: str
    host: str
    port: int
    superuser: str
    superuser_password: str

    def admin(self, dbname: str | None = None) -> Any:
        if self.engine == "postgres":
            return psycopg.connect(host=self.host, port=self.port, user=self.superuser,
                                   password=self.superuser_password, dbname=dbname or "postgres", autocommit=True,
                                   connect_timeout=5)
        return pymysql.connect(host=self.host, port=self.port, user=self.superuser,
                               password=self.superuser_password, autocommit=True, connect_timeout=5)


def login(value: str) -> int:
    """Open a NEW connection with a credential and read the application table; returns the row count."""
    cred = json.loads(value)
    if cred["engine"] == "postgres":
        with psycopg.connect(host=cred["host"], port=cred["port"], user=cred["username"], password=cred["password"],
                             dbname=cred["dbname"], connect_timeout=5) as connection:
            return int(connection.execute("SELECT count(*) FROM orders").fetchone()[0])
    connection = pymysql.connect(host=cred["host"], port=cred["port"], user=cred["username"],
                                 password=cred["password"], database=cred["dbname"], connect_timeout=5)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM orders")
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def login_refused(value: str) -> bool:
    try:
        login(value)
    except (psycopg.OperationalError, pymysql.err.OperationalError):
        return True
    return False


def _shared_postgres() -> Server:
    server = Server("postgres", "127.0.0.1", 5432, "postgres", "")
    try:
        server.admin().close()
    except psycopg.OperationalError as error:
        service_unavailable("PostgreSQL at 127.0.0.1:5432", type(error).__name__)
    return server


def _checks_passwords(server: Server) -> bool:
    probe = f"vsrot_probe_{uuid.uuid4().hex[:8]}"
    with server.admin() as admin:
        admin.execute(f'CREATE ROLE "{probe}" LOGIN PASSWORD \'right-password\'')
        try:
            psycopg.connect(host=server.host, port=server.port, user=probe, password="wrong-password",
                            dbname="postgres", connect_timeout=5).close()
            return False
        except psycopg.OperationalError:
            return True
        finally:
            admin.execute(f'DROP ROLE "{probe}"')


def _pg_binary(name: str, shared: Server) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    with shared.admin() as admin:
        row = admin.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'").fetchone()
    candidate = Path(row[0]) / name if row else None
    return str(candidate) if candidate and candidate.exists() else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    shared = _shared_postgres()
    if _checks_passwords(shared):
        yield shared
        return
    yield from _private_postgres(shared)


def _private_postgres(shared: Server) -> Iterator[Server]:
    initdb, pg_ctl = _pg_binary("initdb", shared), _pg_binary("pg_ctl", shared)
    if not initdb or not pg_ctl:
        service_unavailable("PostgreSQL with password checks", "127.0.0.1:5432 trusts loopback logins and "
                                                               "initdb/pg_ctl are not installed here")
    prefix: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="v-secure-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            service_unavailable("PostgreSQL with password checks", "running as root without a postgres user")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    password, port = uuid.uuid4().hex, _free_port()
    (directory / "pw").write_text(password)
    if os.geteuid() == 0:
        os.chown(directory / "pw", owner.pw_uid, owner.pw_gid)
    data = directory / "data"
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth-host=scram-sha-256",
                        "--auth-local=trust", f"--pwfile={directory / 'pw'}", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(directory / "log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as error:
        shutil.rmtree(directory, ignore_errors=True)
        service_unavailable("PostgreSQL with password checks", f"a private server could not start: {error!r}")
    server = Server("postgres", "127.0.0.1", port, "postgres", password)
    try:
        assert _checks_passwords(server), "the private PostgreSQL server must check passwords"
        yield server
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True,
                       timeout=60, check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def mariadb() -> Server:
    server = Server("mariadb", "127.0.0.1", 3306, "root", "")
    try:
        server.admin().close()
    except pymysql.err.MySQLError as error:
        service_unavailable("MariaDB at 127.0.0.1:3306", type(error).__name__)
    return server


# --- one application database per test ------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    """An application database with its user (the CURRENT value) and a master credential."""

    current: str
    master: str
    names: dict[str, str]

    def context(self, **config: Any) -> RotationContext:
        secrets = {"db/master": self.master}
        users = [self.names["app"], f'{self.names["app"]}_clone']
        return RotationContext(secret_id="db/orders", secret_type=SecretType.DATABASE_CREDENTIAL,
                               config={"masterSecretId": "db/master", "users": users, **config},
                               current_value=self.current, resolve_secret=secrets.__getitem__)


def _names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"db": f"vsrot_{tag}", "app": f"vsrot_{tag}_app", "master": f"vsrot_{tag}_master"}


def _credential(server: Server, username: str, password: str, dbname: str) -> str:
    value = json.dumps({"engine": server.engine, "host": server.host, "port": server.port, "dbname": dbname,
                        "username": username, "password": password})
    validate_value(SecretType.DATABASE_CREDENTIAL, value)
    return value


@pytest.fixture
def pg_app(postgres: Server) -> Iterator[Fixture]:
    names = _names()
    app_password, master_password = uuid.uuid4().hex, uuid.uuid4().hex
    with postgres.admin() as admin:
        admin.execute(f'CREATE ROLE "{names["master"]}" LOGIN CREATEROLE PASSWORD \'{master_password}\'')
        admin.execute(f'CREATE ROLE "{names["app"]}" LOGIN PASSWORD \'{app_password}\'')
        admin.execute(f'CREATE DATABASE "{names["db"]}"')
        admin.execute(f'REVOKE CONNECT ON DATABASE "{names["db"]}" FROM PUBLIC')
        admin.execute(f'GRANT CONNECT ON DATABASE "{names["db"]}" TO "{names["app"]}"')
    with postgres.admin(names["db"]) as admin:
        admin.execute("CREATE TABLE orders (id int)")
        admin.execute("INSERT INTO orders VALUES (1), (2), (3)")
        admin.execute(f'GRANT SELECT ON orders TO "{names["app"]}"')
    try:
        yield Fixture(_credential(postgres, names["app"], app_password, names["db"]),
                      _credential(postgres, names["master"], master_password, "postgres"), names)
    finally:
        with postgres.admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{names["db"]}" WITH (FORCE)')
            for role in (f'{names["app"]}_clone', names["app"], names["master"]):
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def maria_app(mariadb: Server) -> Iterator[Fixture]:
    names = _names()
    app_password, master_password = uuid.uuid4().hex, uuid.uuid4().hex
    admin = mariadb.admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{names['db']}`")
            cursor.execute(f"CREATE TABLE `{names['db']}`.orders (id int)")
            cursor.execute(f"INSERT INTO `{names['db']}`.orders VALUES (1), (2), (3)")
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (names["app"], app_password))
            cursor.execute(f"GRANT SELECT ON `{names['db']}`.* TO %s@'%%'", (names["app"],))
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (names["master"], master_password))
            cursor.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (names["master"],))
        yield Fixture(_credential(mariadb, names["app"], app_password, names["db"]),
                      _credential(mariadb, names["master"], master_password, names["db"]), names)
    finally:
        with admin.cursor() as cursor:
            for user in (f'{names["app"]}_clone', names["app"], names["master"]):
                cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))
            cursor.execute(f"DROP DATABASE IF EXISTS `{names['db']}`")
        admin.close()


@pytest.fixture(params=["postgres", "mariadb"])
def app_db(request: pytest.FixtureRequest) -> Fixture:
    fixture: Fixture = request.getfixturevalue("pg_app" if request.param == "postgres" else "maria_app")
    return fixture


# --- the steps one by one ---------------------------------------------------------------------


def test_alternating_users_steps_on_a_real_server(app_db: Fixture) -> None:
    ctx = app_db.context()
    new = ROTATOR.generate(ctx)
    clone = json.loads(new)["username"]
    assert clone == f'{app_db.names["app"]}_clone'
    ROTATOR.apply(ctx, new)
    ROTATOR.apply(ctx, new)  # idempotent: the engine may run a step again after a crash
    ROTATOR.test(ctx, new)
    assert login(new) == 3, "the clone must read what the application user reads"
    assert login(app_db.current) == 3, "the old user keeps working until it is revoked"
    ROTATOR.revoke(replace(ctx, current_value=new), app_db.current)
    assert login_refused(app_db.current) and login(new) == 3

    # the next rotation goes back to the first user, and the clone keeps working until revoked
    ctx2 = replace(ctx, current_value=new)
    newer = ROTATOR.generate(ctx2)
    assert json.loads(newer)["username"] == app_db.names["app"]
    ROTATOR.apply(ctx2, newer)
    ROTATOR.test(ctx2, newer)
    assert login(newer) == 3 and login(new) == 3
    ROTATOR.revoke(replace(ctx2, current_value=newer), new)
    assert login_refused(new) and login(newer) == 3


def test_a_wrong_password_fails_the_test_step(app_db: Fixture) -> None:
    ctx = app_db.context()
    new = json.loads(ROTATOR.generate(ctx))
    ROTATOR.apply(ctx, json.dumps(new))
    with pytest.raises(RotationTestFailed, match="could not log in"):
        ROTATOR.test(ctx, json.dumps({**new, "password": "not-the-password-that-was-set"}))


class ProviderIgnoresApply(DatabaseCredentialRotator):
    """As if the database had not taken the change: the test step must catch it."""

    def apply(self, ctx: RotationContext, new_value: str) -> None:
        return None


def test_a_failed_test_leaves_the_stored_secret_unchanged(pg_app: Fixture, api_server: str, root_token: str) -> None:
    api = Api(api_server, root_token)
    secret_id = unique("rot-db")
    assert api.store(secret_id, pg_app.current, type="database_credential").status_code == 201
    ctx = pg_app.context()
    stored: list[str] = []
    with pytest.raises(RotationTestFailed):
        rotate_like_engine(ProviderIgnoresApply(), ctx, store=stored.append)
    assert stored == []
    served = api.get(secret_url(secret_id)).json()
    assert (served["version"], served["value"]) == (1, pg_app.current)
    assert login(pg_app.current) == 3

    new = rotate_like_engine(ROTATOR, ctx, store=lambda value: api.store(secret_id, value))
    served = api.get(secret_url(secret_id)).json()
    assert (served["version"], served["value"]) == (2, new)
    assert login(served["value"]) == 3 and login_refused(pg_app.current)


# --- zero downtime --------------------------------------------------------------------------


class ClientLoop(threading.Thread):
    """Opens a NEW connection every 50 ms with a credential from ``pool`` (round robin), like app instances
    that each got one version from a retrieve during a rollout; records every failure."""

    def __init__(self, first: str, connect: Callable[[str], int]) -> None:
        super().__init__(daemon=True)
        self.pool = [first]
        self.connect = connect
        self.iterations = 0
        self.failures: list[tuple[str, str]] = []
        self.users_seen: set[str] = set()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pool = self.pool
            value = pool[self.iterations % len(pool)]
            user = json.loads(value)["username"]
            try:
                self.connect(value)
                self.users_seen.add(user)
            except Exception as error:
                self.failures.append((user, type(error).__name__))
            self.iterations += 1
            time.sleep(0.05)

    def run_for(self, iterations: int) -> None:
        target = self.iterations + iterations
        deadline = time.monotonic() + 30
        while self.iterations < target and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.iterations >= target, "the client loop stalled"

    def serve(self, *values: str, iterations: int = 3) -> None:
        """Hand out ``values`` from now on; returns once no attempt with the previous pool is in flight."""
        self.pool = list(values)
        self.run_for(iterations)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def rotate_under_load(loop: ClientLoop, ctx: RotationContext) -> str:
    """generate -> apply -> test -> rollout (old and new) -> everyone on new -> revoke old."""
    old = ctx.current_value
    assert old is not None
    new = ROTATOR.generate(ctx)
    ROTATOR.apply(ctx, new)
    loop.run_for(2)
    ROTATOR.test(ctx, new)
    loop.serve(old, new, iterations=8)  # rolling: some clients on the old value, some on the new
    loop.serve(new)  # rollout complete
    ROTATOR.revoke(replace(ctx, current_value=new), old)  # retirement
    loop.run_for(3)
    return new


def test_zero_downtime_rotation_under_a_connecting_client(app_db: Fixture) -> None:
    loop = ClientLoop(app_db.current, login)
    loop.start()
    try:
        loop.run_for(3)
        ctx = app_db.context()
        first = rotate_under_load(loop, ctx)
        second = rotate_under_load(loop, replace(ctx, current_value=first))
    finally:
        loop.stop()
    assert loop.failures == [], f"failed logins during rotation: {loop.failures}"
    assert loop.iterations >= 30
    assert loop.users_seen == {app_db.names["app"], f'{app_db.names["app"]}_clone'}
    assert login_refused(app_db.current), "after retirement the first password no longer works"
    assert login_refused(first), "after retirement the second password no longer works"
    assert login(second) == 3
