"""What the access-control integration tests share (this module holds no tests).

- :func:`audit_events`: events from the audit table through its ``by_secret`` / ``by_actor`` / ``by_day``
  indexes, as the canonical event documents (with ``request_id``, ``deny_reason``, ...).
- :class:`Client`: a keep-alive HTTP client for one principal, optionally bound to another
  loopback source address (``127.0.0.2``), with the MFA header.
- :func:`totp_code`: the code of a TOTP seed for the current step (+ ``steps``).
- :class:`FreshCodes`, :func:`code_for`, :func:`wrong_code`: the MFA code an authorization-matrix
  cell sends (each step of a principal handed out once to the cells that claim one).
- :func:`make_principal`, :func:`short_lived_token`: a matrix's principals, one per role and pair.
- :func:`api_process`: another API server process on the same local AWS endpoint, with its own
  environment (service-wide settings such as ``V_SECURE_IP_WHITELIST``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import pyotp

from chalicelib.access_control.auth import get_directory
from chalicelib.access_control.context import system_draft
from chalicelib.audit.events import Action
from chalicelib.aws import client
from chalicelib.clock import isoformat
from chalicelib.config import get_settings
from chalicelib.tables import AUDIT_BY_ACTOR, AUDIT_BY_DAY, AUDIT_BY_SECRET

PrincipalKey = tuple[str, str]
"""(role, pair): the principal a matrix cell calls as (pair ``""``: one that claims no fresh code)."""
UNENROLLED_SEED = pyotp.random_base32()  # codes for principals without MFA (refused before MFA is checked)


def since(seconds: float = 5) -> str:
    """An audit ``ts`` lower bound ``seconds`` ago."""
    return isoformat(datetime.now(UTC) - timedelta(seconds=seconds))


def audit_events(*, secret_id: str | None = None, actor: str | None = None, day: str | None = None,
                 after: str = "0") -> list[dict[str, Any]]:
    """Every audit event of ``secret_id`` (or ``actor``, or ``day``) with ``ts >= after``, oldest first."""
    index, attribute, value = ((AUDIT_BY_SECRET, "secret_id", secret_id) if secret_id is not None
                               else (AUDIT_BY_DAY, "day", day) if day is not None
                               else (AUDIT_BY_ACTOR, "actor", actor))
    kwargs: dict[str, Any] = {
        "TableName": get_settings().audit_table, "IndexName": index,
        "KeyConditionExpression": "#k = :v AND ts >= :after",
        "ExpressionAttributeNames": {"#k": attribute},
        "ExpressionAttributeValues": {":v": {"S": str(value)}, ":after": {"S": after}},
    }
    events: list[dict[str, Any]] = []
    while True:
        answer = client("dynamodb").query(**kwargs)
        for item in answer.get("Items", []):
            event = json.loads(item["event"]["S"])
            assert (event["actor"], event["action"], event["status"]) == (
                item["actor"]["S"], item["action"]["S"], item["status"]["S"])
            events.append(event)
        if "LastEvaluatedKey" not in answer:
            return events
        kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def events_by_request(*, secret_id: str | None = None, actor: str | None = None, day: str | None = None,
                      after: str = "0") -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in audit_events(secret_id=secret_id, actor=actor, day=day, after=after):
        found.setdefault(event.get("request_id") or "", []).append(event)
    return found


def secret_path(secret_id: str, *rest: str) -> str:
    return "/".join(["/secrets", quote(secret_id, safe=""), *rest])


def totp_code(seed: str, steps: int = 0) -> str:
    return pyotp.TOTP(seed).at(time.time() + 30 * steps)


class Client:
    """One principal's HTTP client; ``source`` picks the loopback address it connects from."""

    def __init__(self, base_url: str, token: str | None, *, source: str = "127.0.0.1",
                 principal_id: str = "") -> None:
        self.principal_id = principal_id
        self.activation_code: str | None = None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=30,
                                 transport=httpx.HTTPTransport(local_address=source, verify=False))

    def request(self, method: str, path: str, *, json: Any = None, mfa: str | None = None,
                headers: dict[str, str] | None = None, params: dict[str, Any] | None = None) -> httpx.Response:
        extra = dict(headers or {})
        if mfa is not None:
            extra["X-VSecure-MFA"] = mfa
        return self.http.request(method, path, json=json, params=params, headers=extra)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, json=body if body is not None else {}, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, json=body if body is not None else {}, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def store(self, secret_id: str, value: str = "sk_live_abcdefgh1234", **fields: Any) -> httpx.Response:
        fields.setdefault("type", "api_key")
        return self.post("/secrets", {"secretId": secret_id, "value": value, **fields})

    def new_principal(self, principal_id: str, **fields: Any) -> str:
        """Create ``principal_id`` and return a token for it."""
        created = self.post("/principals", {"principalId": principal_id, **fields})
        assert created.status_code == 201, created.text
        token = self.post(f"/principals/{principal_id}/tokens", {})
        assert token.status_code == 201, token.text
        return str(token.json()["token"])

    def enrol_mfa(self) -> str:
        """Set up and activate TOTP for this client's principal; returns the seed.

        It activates with the previous step's code, so the current and the next step's codes
        are still unused; the code it used is kept in ``activation_code``.
        """
        setup = self.post("/auth/mfa/setup")
        assert setup.status_code == 201, setup.text
        seed = str(setup.json()["secret"])
        self.activation_code = totp_code(seed, -1)
        activated = self.post("/auth/mfa/activate", {"code": self.activation_code})
        if activated.status_code != 200:  # the step turned over just now
            self.activation_code = totp_code(seed, -1)
            activated = self.post("/auth/mfa/activate", {"code": self.activation_code})
        assert activated.status_code == 200, activated.text
        return seed

    def close(self) -> None:
        self.http.close()


# --- MFA codes of an authorization matrix ----------------------------------------------------


class FreshCodes:
    """Hands out each principal's codes for the current and the next step, each step once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claimed: dict[PrincipalKey, set[int]] = {}

    def take(self, key: PrincipalKey, seed: str) -> str:
        with self._lock:
            step = int(time.time() // 30)
            claimed = self._claimed.setdefault(key, set())
            free = next(s for s in (step, step + 1) if s not in claimed)
            claimed.add(free)
            return str(pyotp.TOTP(seed).at(free * 30))


class MfaCell(Protocol):
    """A matrix cell: its MFA mode and its expected (status, deny reason); reason None: authorized."""

    @property
    def mode(self) -> str: ...

    def expected(self) -> tuple[int, str | None]: ...


class CodeSource(Protocol):
    @property
    def seeds(self) -> dict[PrincipalKey, str]: ...

    @property
    def codes(self) -> FreshCodes: ...


def wrong_code(seed: str) -> str:
    """A well-formed code that is not valid now."""
    valid = {totp_code(seed, steps) for steps in (-2, -1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def code_for(cell: MfaCell, key: PrincipalKey, fixture: CodeSource, used: dict[PrincipalKey, str]) -> str | None:
    """The code a cell sends: a fresh one when it passes the MFA check, the one just used when it
    replays, a wrong one, or none."""
    seed = fixture.seeds.get(key) or UNENROLLED_SEED
    if cell.mode in ("off", "none"):
        return None
    if cell.mode == "valid":
        return fixture.codes.take(key, seed) if cell.expected()[1] is None else totp_code(seed)
    if cell.mode == "reused":
        if cell.expected() == (403, "mfa_invalid"):
            assert key in used, f"no code was used before {cell}"
        return used.get(key) or totp_code(seed)
    return wrong_code(seed)


# --- a matrix's principals -------------------------------------------------------------------


def make_principal(api: str, root_token: str, key: PrincipalKey, run: str, group: str, *, prefix: str = "mx",
                   enrol: bool | None = None) -> tuple[str, str, str]:
    """(id, token, TOTP seed) of a new principal for ``key``; role ``root`` is a global admin, ``member``
    is in ``group``, ``expired`` gets a token that lives 1 s. MFA is enrolled when ``enrol`` says so
    (default: for pair principals, the only ones that pass RBAC and so reach the MFA check)."""
    role, route = key
    name = f"{prefix}-{role}-{route.replace('_', '')}-{run}".replace("--", "-")
    root = Client(api, root_token)
    try:
        fields: dict[str, Any] = {"admin": role == "root", "groups": [group] if role == "member" else []}
        token = root.new_principal(name, **fields)
        if role == "expired":
            return name, short_lived_token(name), ""
        return name, token, _enrolled_seed(api, token) if (bool(route) if enrol is None else enrol) else ""
    finally:
        root.close()


def _enrolled_seed(api: str, token: str) -> str:
    principal = Client(api, token)
    try:
        return principal.enrol_mfa()
    finally:
        principal.close()


def short_lived_token(principal_id: str) -> str:
    """A token of ``principal_id`` that expires after 1 s."""
    token, _record, _event = get_directory().issue_token(
        principal_id, system_draft(Action.TOKEN_CREATE, details={"principal": principal_id}), ttl_seconds=1)
    return token


# --- more API server processes ---------------------------------------------------------------

# An API server process on the given AWS endpoint (the environment carries table names etc.).
API_PROCESS = """
import sys
from chalicelib.local.environment import use_endpoint
use_endpoint(sys.argv[1])
from chalicelib.local.server import load_app, start_api_server
api = start_api_server(load_app(), "127.0.0.1", 0)
print(api.url, flush=True)
sys.stdin.read()
api.stop()
"""


@contextmanager
def api_process(local_aws: str, env: Mapping[str, str], log_dir: Path) -> Iterator[str]:
    """Serve the app from another process on ``local_aws``, with ``env`` on top of this process's
    environment; yields its URL once healthy, stops it on exit (its stderr: ``log_dir/stderr.log``).

    Example::

        with api_process(local_aws, {"V_SECURE_REQUIRE_MFA": "true"}, tmp_path) as url:
            httpx.get(f"{url}/health")
    """
    log = log_dir / "stderr.log"
    environment = {**os.environ, **env, "PYTHONPATH": str(Path.cwd())}
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-c", API_PROCESS, local_aws], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=stderr, env=environment, cwd=Path.cwd())
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:"), log.read_text()
        _wait_healthy(url, log)
        yield url
    finally:
        _stop(process)


def _wait_healthy(url: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while httpx.get(f"{url}/health", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, f"the API process at {url} is not healthy: {log.read_text()[-2000:]}"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
