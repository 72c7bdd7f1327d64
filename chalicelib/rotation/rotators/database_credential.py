"""``database_credential`` rotation for PostgreSQL and MySQL/MariaDB, with alternating users.

The value is the JSON layout ``{"engine", "host", "port", "dbname", "username", "password", ...}``
(extra keys are kept). Options:

* ``masterSecretId``: a ``database_credential`` secret holding a user that may create users and
  change passwords (PostgreSQL ``CREATEROLE``, and from PostgreSQL 16 ``ADMIN OPTION`` on the group
  role or active user; MySQL/MariaDB ``CREATE USER``, ``SELECT`` on ``mysql.user`` and the
  privileges it copies ``WITH GRANT OPTION``);
* ``users``: the two users that take turns, e.g. ``["app", "app_clone"]`` (required with a master:
  the master only ever touches these users, never the one a stored value happens to name, so a
  principal who may write the secret cannot aim the master at another account);
* ``groupRole`` (PostgreSQL): the role both users are members of; by default a new clone is made
  a member of the active user, which gives it the active user's privileges;
* ``mode``: ``alternating`` (default) or ``single-user``;
* ``connectTimeoutSeconds`` (default 5), ``passwordBytes`` (default 32 random bytes).

Alternating users (zero downtime): ``generate`` picks the user that is not in the ``CURRENT`` value
and a new random password. ``apply`` has the master give that user the new password, creating
it first if it does not exist: in PostgreSQL ``CREATE ROLE ... LOGIN`` then ``GRANT <group role or
active user> TO <clone>``, in one transaction; in MySQL/MariaDB ``CREATE USER`` for each host of the
active user, then the active user's ``SHOW GRANTS`` replayed for the clone (on every rotation, so
grants added to one user reach the other; a grant removed from one is not removed from the other).
``test`` logs in with the new credential and runs ``SELECT 1``. The old user keeps its password
until ``revoke``, which replaces it with a random one that is never stored.

Single-user mode changes the password of the one user in ``apply``: its old password stops working
at once, so readers that have not picked up the new value fail until they do. It is **not**
zero-downtime; use it only with the ``immediate`` strategy. Without ``masterSecretId`` the user
changes its own password. There, ``revoke`` restores the ``CURRENT`` password when the value being
revoked is a new one that failed its test.

PostgreSQL never receives a plaintext password: it gets a SCRAM verifier computed here (libpq's
``PQencryptPasswordConn``). MySQL/MariaDB receive it as a quoted literal in ``ALTER USER`` (keep
their general query log off). Driver errors are reported by their code only, because their
messages can quote the statement.

Example::

    config = {"masterSecretId": "prod/db/master", "users": ["orders", "orders_clone"]}
    ctx = RotationContext(secret_id="prod/db/orders", secret_type=SecretType.DATABASE_CREDENTIAL,
                          config=config, current_value=current, resolve_secret=read_secret)
    new = ROTATOR.generate(ctx); ROTATOR.apply(ctx, new); ROTATOR.test(ctx, new)
    ...  # rollout; then, with the new value CURRENT:
    ROTATOR.revoke(replace(ctx, current_value=new), current)
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.errors import DependencyUnavailable, InvalidSecretValue
from chalicelib.logging import logger
from chalicelib.models import SecretType
from chalicelib.rotation.rotators._common import (
    RotationConfigInvalid,
    checked,
    choice,
    optional_text,
    positive_int,
    refuse_current,
    resolve,
    text_list,
)
from chalicelib.rotation.rotators.base import RotationContext, RotationNotSupported, RotationTestFailed
from chalicelib.secret_types import validate_value

MODES = ("alternating", "single-user")
DEFAULT_CONNECT_TIMEOUT = 5
DEFAULT_PASSWORD_BYTES = 32


@dataclass(frozen=True)
class Credential:
    """A parsed JSON ``database_credential``; ``extra`` keeps the keys v-secure does not use."""

    engine: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    dbname: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, value: str, what: str) -> Credential:
        try:
            validate_value(SecretType.DATABASE_CREDENTIAL, value)
        except InvalidSecretValue as error:
            raise RotationConfigInvalid(f"{what} is not a valid database_credential: {error.message}") from None
        if not value.lstrip().startswith("{"):
            raise RotationNotSupported(f"{what} must use the JSON layout (engine, host, port, username, password)"
                                       " to be rotated")
        obj = json.loads(value)
        known = {"engine", "host", "port", "username", "password", "dbname"}
        return cls(engine=obj["engine"], host=obj["host"], port=int(obj["port"]), username=obj["username"],
                   password=obj["password"], dbname=obj.get("dbname"),
                   extra={k: v for k, v in obj.items() if k not in known})

    def with_login(self, username: str, password: str) -> Credential:
        return Credential(self.engine, self.host, self.port, username, password, self.dbname, self.extra)

    def to_value(self) -> str:
        obj: dict[str, Any] = {"engine": self.engine, "host": self.host, "port": self.port,
                               "username": self.username, "password": self.password}
        if self.dbname is not None:
            obj["dbname"] = self.dbname
        obj.update(self.extra)
        return json.dumps(obj, separators=(",", ":"))

    @property
    def where(self) -> str:
        return f"{self.engine} at {self.host}:{self.port}"


class Driver(Protocol):
    """What the rotator needs from one database engine."""

    def connect(self, credential: Credential, timeout: int) -> Any: ...

    def whoami(self, connection: Any) -> str: ...

    def set_password(self, connection: Any, username: str, password: str, *, clone_of: str | None,
                     group: str | None) -> None: ...

    def set_own_password(self, connection: Any, password: str) -> None: ...

    def user_exists(self, connection: Any, username: str) -> bool: ...


class DatabaseCredentialRotator:
    """Rotates database passwords with a master credential, alternating between two users."""

    secret_type = SecretType.DATABASE_CREDENTIAL

    def check_config(self, config: dict[str, Any]) -> None:
        mode = choice(config, "mode", MODES, "alternating")
        master = optional_text(config, "masterSecretId")
        optional_text(config, "groupRole")
        users = text_list(config, "users")
        positive_int(config, "connectTimeoutSeconds", DEFAULT_CONNECT_TIMEOUT, maximum=60)
        positive_int(config, "passwordBytes", DEFAULT_PASSWORD_BYTES, minimum=16, maximum=128)
        if mode == "alternating":
            if master is None:
                raise RotationConfigInvalid("alternating users need the rotation option 'masterSecretId'")
            if len(users) != 2 or users[0] == users[1]:
                raise RotationConfigInvalid("rotation option 'users' must name the two users that take turns")
        elif master is not None and not users:
            raise RotationConfigInvalid("a master credential needs the rotation option 'users' (the user it may "
                                        "change)")

    # --- the four steps ----------------------------------------------------------------

    def generate(self, ctx: RotationContext) -> str:
        self.check_config(ctx.config)
        current = _current(ctx)
        _check_allowed(ctx.config, current.username, "the CURRENT value's")
        username = current.username if _single_user(ctx) else _inactive_user(ctx.config, current)
        size = int(ctx.config.get("passwordBytes") or DEFAULT_PASSWORD_BYTES)
        return current.with_login(username, secrets.token_urlsafe(size)).to_value()

    def apply(self, ctx: RotationContext, new_value: str) -> None:
        self.check_config(ctx.config)
        current, new = _current(ctx), Credential.parse(new_value, "the new value")
        _same_server(current, new)
        if _single_user(ctx):
            if new.username != current.username:
                raise RotationConfigInvalid("single-user mode: the new value must use the CURRENT user")
            _check_allowed(ctx.config, new.username, "the new value's")
            self._apply_single_user(ctx, current, new)
            return
        if new.username != _inactive_user(ctx.config, current):
            raise RotationConfigInvalid("alternating users: the new value must use the user that is not CURRENT")
        driver = driver_for(new.engine)
        with self._master(ctx, new) as connection:
            _run(new, "setting the password", lambda: driver.set_password(
                connection, new.username, new.password, clone_of=current.username,
                group=ctx.config.get("groupRole")))

    def test(self, ctx: RotationContext, new_value: str) -> None:
        checked(SecretType.DATABASE_CREDENTIAL, new_value)
        new = Credential.parse(new_value, "the new value")
        driver = driver_for(new.engine)
        try:
            with _connected(driver, new, _timeout(ctx)) as connection:
                user = _run(new, "running SELECT 1", lambda: driver.whoami(connection))
        except DependencyUnavailable:
            raise RotationTestFailed(f"could not log in to {new.where} as {new.username} with the new "
                                     "password") from None
        if user != new.username:
            raise RotationTestFailed(f"the new credential logged in to {new.where} as another user")

    def revoke(self, ctx: RotationContext, old_value: str) -> None:
        refuse_current(ctx, old_value)
        self.check_config(ctx.config)
        old = Credential.parse(old_value, "the value to revoke")
        current = Credential.parse(ctx.current_value, "the CURRENT value") if ctx.current_value else None
        if current is not None and current.username == old.username:
            if _single_user(ctx):
                self._apply_single_user(ctx, old, current)  # the account must answer to CURRENT again
            else:
                logger.warning("database_credential revoke skipped: the old value uses the CURRENT user",
                               extra={"secret_id": ctx.secret_id})
            return
        users = text_list(ctx.config, "users")
        if old.username not in users:
            logger.warning("database_credential revoke skipped: the old value names a user outside 'users'",
                           extra={"secret_id": ctx.secret_id})
            return
        driver = driver_for(old.engine)
        with self._master(ctx, old) as connection:
            if not _run(old, "looking up the old user", lambda: driver.user_exists(connection, old.username)):
                return
            unknown = secrets.token_urlsafe(DEFAULT_PASSWORD_BYTES)
            _run(old, "replacing the old password", lambda: driver.set_password(
                connection, old.username, unknown, clone_of=None, group=None))

    # --- shared by the steps -----------------------------------------------------------

    def _apply_single_user(self, ctx: RotationContext, before: Credential, after: Credential) -> None:
        """Give the single user ``after``'s password, through the master or by logging in as itself."""
        driver = driver_for(after.engine)
        if ctx.config.get("masterSecretId"):
            with self._master(ctx, after) as connection:
                _run(after, "setting the password", lambda: driver.set_password(
                    connection, after.username, after.password, clone_of=None, group=None))
            return
        for login in (before, after):  # after a crash, the password may already be the new one
            try:
                with _connected(driver, login, _timeout(ctx)) as connection:
                    _run(after, "setting the password", lambda c=connection: driver.set_own_password(
                        c, after.password))
                return
            except DependencyUnavailable as error:
                failure = error
        raise failure

    @contextmanager
    def _master(self, ctx: RotationContext, target: Credential) -> Iterator[Any]:
        master_id = optional_text(ctx.config, "masterSecretId")
        if master_id is None:
            raise RotationConfigInvalid("this step needs the rotation option 'masterSecretId'")
        master = Credential.parse(resolve(ctx, master_id, "masterSecretId"), "the master credential")
        if driver_for(master.engine) is not driver_for(target.engine):
            raise RotationConfigInvalid("the master credential is for another database engine")
        if master.username == target.username:
            raise RotationConfigInvalid("the master user is never rotated through the secret it serves")
        with _connected(driver_for(master.engine), master, _timeout(ctx)) as connection:
            yield connection


# --- engines ---------------------------------------------------------------------------


class PostgresDriver:
    """PostgreSQL through psycopg 3 (imported on first use)."""

    def connect(self, credential: Credential, timeout: int) -> Any:
        import psycopg

        return psycopg.connect(host=credential.host, port=credential.port, user=credential.username,
                               password=credential.password, dbname=credential.dbname or "postgres",
                               connect_timeout=timeout, autocommit=True)

    def whoami(self, connection: Any) -> str:
        row = connection.execute("SELECT current_user, 1").fetchone()
        return str(row[0])

    def set_password(self, connection: Any, username: str, password: str, *, clone_of: str | None,
                     group: str | None) -> None:
        from psycopg import sql

        verifier = self._verifier(connection, username, password)
        with connection.transaction():
            if self.user_exists(connection, username):
                connection.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                    sql.Identifier(username), sql.Literal(verifier)))
                return
            if clone_of is None:
                raise RotationConfigInvalid(f"the database user {username} does not exist")
            connection.execute(sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(username), sql.Literal(verifier)))
            connection.execute(sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(group or clone_of), sql.Identifier(username)))

    def set_own_password(self, connection: Any, password: str) -> None:
        from psycopg import sql

        username = self.whoami(connection)
        verifier = self._verifier(connection, username, password)
        connection.execute(sql.SQL("ALTER ROLE CURRENT_USER WITH PASSWORD {}").format(sql.Literal(verifier)))

    def user_exists(self, connection: Any, username: str) -> bool:
        return connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,)).fetchone() is not None

    @staticmethod
    def _verifier(connection: Any, username: str, password: str) -> str:
        """The password as the server stores it (SCRAM or MD5), so that the plaintext never reaches it."""
        algorithm = str(connection.execute("SHOW password_encryption").fetchone()[0])
        hashed = connection.pgconn.encrypt_password(password.encode(), username.encode(), algorithm.encode())
        return bytes(hashed).decode()


_IDENTIFIED = re.compile(r" IDENTIFIED (?:BY PASSWORD '[^']*'|VIA \S+(?: (?:USING|AS) '[^']*')?"
                         r"(?: OR \S+(?: (?:USING|AS) '[^']*')?)*)")


class MysqlDriver:
    """MySQL and MariaDB through PyMySQL (imported on first use)."""

    def connect(self, credential: Credential, timeout: int) -> Any:
        import pymysql

        return pymysql.connect(host=credential.host, port=credential.port, user=credential.username,
                               password=credential.password, database=credential.dbname,
                               connect_timeout=timeout, autocommit=True)

    def whoami(self, connection: Any) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT CURRENT_USER(), 1")
            return _text(cursor.fetchone()[0]).rsplit("@", 1)[0]

    def set_password(self, connection: Any, username: str, password: str, *, clone_of: str | None,
                     group: str | None) -> None:
        with connection.cursor() as cursor:
            hosts = self._hosts(cursor, username)
            if clone_of is not None:
                source_hosts = self._hosts(cursor, clone_of)
                for host in source_hosts:
                    if host not in hosts:
                        cursor.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (username, host, password))
                hosts = sorted({*hosts, *source_hosts})
            if not hosts:
                raise RotationConfigInvalid(f"the database user {username} does not exist")
            for host in hosts:
                cursor.execute("ALTER USER %s@%s IDENTIFIED BY %s", (username, host, password))
            if clone_of is not None:
                for host in self._hosts(cursor, clone_of):
                    self._copy_grants(cursor, clone_of, username, host)

    def set_own_password(self, connection: Any, password: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute("ALTER USER CURRENT_USER() IDENTIFIED BY %s", (password,))

    def user_exists(self, connection: Any, username: str) -> bool:
        with connection.cursor() as cursor:
            return bool(self._hosts(cursor, username))

    @staticmethod
    def _hosts(cursor: Any, username: str) -> list[str]:
        cursor.execute("SELECT Host FROM mysql.user WHERE User = %s ORDER BY Host", (username,))
        return [_text(row[0]) for row in cursor.fetchall()]

    @staticmethod
    def _copy_grants(cursor: Any, source: str, target: str, host: str) -> None:
        """Replay ``source@host``'s grants (privileges, roles, default role) for ``target@host``."""
        cursor.execute("SHOW GRANTS FOR %s@%s", (source, host))
        old, new = _grantee(source, host), _grantee(target, host)
        for (line,) in cursor.fetchall():
            statement = _IDENTIFIED.sub("", _text(line))
            if old not in statement:
                continue
            statement = statement.replace(old, new)
            if statement == f"GRANT USAGE ON *.* TO {new}":
                continue
            cursor.execute(statement)


def _grantee(user: str, host: str) -> str:
    """``user@host`` exactly as ``SHOW GRANTS`` quotes it."""
    return "`" + user.replace("`", "``") + "`@`" + host.replace("`", "``") + "`"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


_DRIVERS: dict[str, Driver] = {}


def driver_for(engine: str) -> Driver:
    """The driver for ``postgres``, ``mysql`` or ``mariadb``."""
    kind = "postgres" if engine == "postgres" else "mysql" if engine in ("mysql", "mariadb") else None
    if kind is None:
        raise RotationNotSupported(f"no database driver for engine {engine}")
    if kind not in _DRIVERS:
        _DRIVERS[kind] = PostgresDriver() if kind == "postgres" else MysqlDriver()
    return _DRIVERS[kind]


@contextmanager
def _connected(driver: Driver, credential: Credential, timeout: int) -> Iterator[Any]:
    try:
        connection = driver.connect(credential, timeout)
    except Exception as error:  # driver errors can quote the connection string; report the class only
        raise DependencyUnavailable("database", f"{credential.where}: could not log in as "
                                                f"{credential.username} ({type(error).__name__})") from None
    try:
        yield connection
    finally:
        connection.close()


def _run(target: Credential, doing: str, action: Any) -> Any:
    """Run one administrative statement; a driver error is reported by its code, never its text."""
    try:
        return action()
    except (RotationConfigInvalid, RotationNotSupported):
        raise
    except Exception as error:
        code = getattr(error, "sqlstate", None) or (error.args[0] if error.args else None)
        code_text = f" {code}" if isinstance(code, int | str) and len(str(code)) <= 8 else ""
        raise DependencyUnavailable("database", f"{target.where}: {doing} for {target.username} failed "
                                                f"({type(error).__name__}{code_text})") from None


def _current(ctx: RotationContext) -> Credential:
    if ctx.current_value is None:
        raise RotationNotSupported("a database_credential rotation starts from a stored credential")
    return Credential.parse(ctx.current_value, "the CURRENT value")


def _single_user(ctx: RotationContext) -> bool:
    return ctx.config.get("mode") == "single-user"


def _timeout(ctx: RotationContext) -> int:
    return int(ctx.config.get("connectTimeoutSeconds") or DEFAULT_CONNECT_TIMEOUT)


def _check_allowed(config: dict[str, Any], username: str, whose: str) -> None:
    users = text_list(config, "users")
    if users and username not in users:
        raise RotationConfigInvalid(f"{whose} username is not one of the rotation option 'users'")


def _inactive_user(config: dict[str, Any], current: Credential) -> str:
    users = text_list(config, "users")
    _check_allowed(config, current.username, "the CURRENT value's")
    return users[1] if users[0] == current.username else users[0]


def _same_server(current: Credential, new: Credential) -> None:
    if (current.engine, current.host, current.port) != (new.engine, new.host, new.port):
        raise RotationConfigInvalid("the new value must point at the same database server as the CURRENT one")


ROTATOR = DatabaseCredentialRotator()
