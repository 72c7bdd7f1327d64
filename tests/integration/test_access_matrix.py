"""The authorization matrix, over real HTTP: every per-secret route (secrets, access, rotation)
x every kind of caller x {allowed IP, other IP} x {MFA not required; required with no code, a
valid code, a reused code, a wrong code}.

Every cell asserts the exact status (and deny reason), that a refused cell carries no value,
and that the audit log holds an event for that very request (matched by request id) with the
right status, deny reason, and for an allowed cell the reason it was allowed (``authorized_by``:
``global_admin``, or the grant key that allowed it). Cells are generated from a small table of
what each role may do, so the expected outcome is computed, never written out by hand.
``switch`` and ``rotation/rollback`` have no rotation to act on here, so an authorized caller
gets their 409, recorded as a ``failure`` of the authorized request.

TOTP without a frozen clock: a code works once and only three steps are valid at a time, so
each principal that cells let through with a valid code serves two such cells: it activated
MFA with the previous step's code, and its two "valid" cells take the current and the next
step's codes (computed with pyotp; a small registry hands out each step once). "reused" replays
the code the "valid" cell just used; "wrong" is a well-formed code that is not valid now.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import pytest

from chalicelib.access_control.context import system_draft
from chalicelib.audit.events import Action
from chalicelib.vault.service import get_vault_service
from tests.integration.test_access_support import Client, FreshCodes, events_by_request, secret_path, since
from tests.integration.test_access_support import code_for as _code_for
from tests.integration.test_access_support import make_principal as _make_principal

VALUE = "sk_live_matrix_canary_31c7"
ALLOWED_IP, OTHER_IP = "127.0.0.1", "127.0.0.2"
IPS = (ALLOWED_IP, OTHER_IP)
MODES = ("off", "none", "valid", "reused", "wrong")  # "off": the secret does not require MFA
ROLES = ("root", "admin", "reader", "writer", "rotator", "member", "stranger", "disabled", "expired")
EVERYTHING = frozenset({"read", "write", "rotate", "delete", "admin", "audit:read"})
MAY = {"root": EVERYTHING, "admin": EVERYTHING, "reader": {"read"}, "writer": {"write"}, "rotator": {"rotate"},
       "member": {"read"}, "stranger": set()}
GRANTED = {"admin": "admin", "reader": "read", "writer": "write", "rotator": "rotate"}  # role -> per-secret grant
UNAUTHENTICATED = {"disabled": "principal_disabled", "expired": "token_expired"}


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    rest: tuple[str, ...]
    permission: str
    ok: int
    """The status once authorized (409 for rotation steps that need a run in progress)."""
    action: str
    """The audited action of a refusal (and of a success, unless ``success_action`` says otherwise)."""
    state: str = "live"  # the secret's state the cell needs: "live" or "deleted"
    success_action: str | None = None
    """The audited action of a success."""

    @property
    def audited_success(self) -> str:
        return self.action if self.success_action is None else self.success_action

    def path(self, secret_id: str) -> str:
        return "/secrets" if self.name == "store" else secret_path(secret_id, *self.rest)

    def body(self, secret_id: str, fixture: Matrix) -> Any:
        return {
            "store": {"secretId": secret_id, "value": VALUE},
            "rollback": {"version": 1},
            "put_access": {"permissions": fixture.access},
            "grant": {"to": fixture.names[("reader", "")], "permissions": ["read"]},
            "revoke": {"from": "nobody-here"},
            "config": {"rotation": {"enabled": True, "interval": "30d", "strategy": "immediate",
                                    "provider": {"url": "http://127.0.0.1:9/rotate"}}},
            "rotate": {"value": VALUE, "strategy": "immediate", "testNewKey": False},
            "switch": {},
            "rotation_rollback": {},
        }.get(self.name)


ROUTES = (
    Route("retrieve", "GET", (), "read", 200, "secret_read"),
    Route("metadata", "GET", ("metadata",), "read", 200, "secret_describe"),
    Route("versions", "GET", ("versions",), "read", 200, "secret_versions"),
    Route("get_access", "GET", ("access",), "read", 200, "access_read"),
    Route("store", "POST", (), "write", 201, "secret_store"),
    Route("rollback", "POST", ("rollback",), "write", 200, "secret_rollback"),
    Route("delete", "DELETE", (), "delete", 200, "secret_delete"),
    Route("restore", "POST", ("restore",), "delete", 200, "secret_restore", state="deleted"),
    Route("put_access", "PUT", ("access",), "admin", 200, "access_grant"),
    Route("grant", "POST", ("access", "grant"), "admin", 200, "access_grant"),
    Route("revoke", "POST", ("access", "revoke"), "admin", 200, "access_revoke"),
    Route("rotation_status", "GET", ("rotation",), "read", 200, "secret_describe"),
    Route("config", "PUT", ("config",), "write", 200, "secret_configure"),
    Route("rotate", "POST", ("rotate",), "rotate", 200, "secret_rotate", success_action="rotation_started"),
    # No rotation is waiting for a switch or a rollback: authorized callers get 409.
    Route("switch", "POST", ("switch",), "rotate", 409, "secret_switch"),
    Route("rotation_rollback", "POST", ("rotation", "rollback"), "write", 409, "secret_rollback"),
)


@dataclass(frozen=True)
class Cell:
    route: Route
    role: str
    ip: str
    mode: str

    def expected(self) -> tuple[int, str | None]:
        """(status, deny reason) this cell must produce."""
        if self.role in UNAUTHENTICATED:
            return 401, UNAUTHENTICATED[self.role]
        if self.route.permission not in MAY[self.role]:
            return 403, "permission_denied"
        if self.ip != ALLOWED_IP:
            return 403, "ip_not_allowed"
        if self.mode in ("off", "valid"):
            return self.route.ok, None
        return 403, "mfa_required" if self.mode == "none" else "mfa_invalid"

    def audited_action(self) -> str:
        status, reason = self.expected()
        if status == 401:
            return "auth_failed"
        if reason is None:
            return self.route.audited_success
        return "mfa_failed" if reason == "mfa_invalid" else self.route.action

    def principal_key(self) -> tuple[str, str]:
        """A role's routes that pass RBAC share a principal two by two (each has two fresh codes)."""
        allowed = [r.name for r in ROUTES if r.permission in MAY.get(self.role, set())]
        if self.route.name in allowed:
            return self.role, f"pair{allowed.index(self.route.name) // 2}"
        return self.role, ""


def cells() -> list[Cell]:
    return [Cell(route, role, ip, mode) for route, role, ip, mode in product(ROUTES, ROLES, IPS, MODES)]


@dataclass
class Matrix:
    run: str
    group: str
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)
    """route -> (secret with an IP allow-list, secret with an IP allow-list and require_mfa)."""
    names: dict[tuple[str, str], str] = field(default_factory=dict)
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    seeds: dict[tuple[str, str], str] = field(default_factory=dict)
    access: dict[str, list[str]] = field(default_factory=dict)
    codes: FreshCodes = field(default_factory=lambda: FreshCodes())


@pytest.fixture(scope="module")
def matrix(api_server: str, root_token: str) -> Iterator[Matrix]:
    run = uuid.uuid4().hex[:6]
    fixture = Matrix(run=run, group=f"mx-group-{run}",
                     secrets={r.name: (f"matrix/{run}/{r.name}/plain", f"matrix/{r.name}/{run}/mfa") for r in ROUTES})
    keys = sorted({cell.principal_key() for cell in cells()} | {("reader", "")})
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = pool.map(lambda key: (key, _make_principal(api_server, root_token, key, run, fixture.group)), keys)
        for key, (name, token, seed) in made:
            fixture.names[key], fixture.tokens[key], fixture.seeds[key] = name, token, seed
    for (role, _route), name in fixture.names.items():
        if role in GRANTED:
            fixture.access[name] = [GRANTED[role]]
    fixture.access[f"group:{fixture.group}"] = ["read"]
    fixture.access["root"] = ["admin"]
    root = Client(api_server, root_token)
    to_store = [(secret_id, {"ip_whitelist": [f"{ALLOWED_IP}/32"], **({"require_mfa": True} if n else {})})
                for pair in fixture.secrets.values() for n, secret_id in enumerate(pair)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for stored in pool.map(lambda s: root.store(s[0], VALUE, access=fixture.access, constraints=s[1]),
                               to_store):
            assert stored.status_code == 201, stored.text
    for key, name in fixture.names.items():
        if key[0] == "disabled":
            assert root.post(f"/principals/{name}/disable").status_code == 200
    root.close()
    expired = Client(api_server, fixture.tokens[("expired", "")])
    deadline = time.monotonic() + 10
    while expired.get("/auth/whoami").status_code != 401:  # its token lives 1 s
        assert time.monotonic() < deadline, "the short-lived token did not expire"
        time.sleep(0.2)
    expired.close()
    yield fixture


def _set_deleted(secret_id: str, deleted: bool) -> None:
    """Put the secret in the state a cell needs, directly in storage (no request, no MFA code)."""
    vault = get_vault_service()
    record = vault.repo.get(secret_id)
    assert record is not None
    if record.deleted == deleted:
        return
    now = vault.clock.now()
    deletion = {"deleted_at": now, "destroy_after": now, "deleted_by": "matrix"} if deleted else None
    update = {"deletion": deletion, "sched_pk": None, "sched_at": None, "rev": record.rev + 1}
    vault.repo.commit(system_draft(Action.SECRET_RESTORE, secret_id=secret_id, details={"test_setup": True}),
                      record=record.model_copy(update=update), expected_rev=record.rev)


@dataclass
class Outcome:
    cell: Cell
    secret_id: str
    status: int
    body: dict[str, Any]
    text: str
    request_id: str


def _run_route(api: str, fixture: Matrix, route: Route) -> list[Outcome]:
    """One route's cells, in order: the route's own two secrets see no other route's requests."""
    clients: dict[tuple[tuple[str, str], str], Client] = {}

    def client_for(key: tuple[str, str], ip: str) -> Client:
        if (key, ip) not in clients:
            clients[(key, ip)] = Client(api, fixture.tokens[key], source=ip)
        return clients[(key, ip)]

    used: dict[tuple[str, str], str] = {}
    deleted: dict[str, bool] = dict.fromkeys(fixture.secrets[route.name], False)
    outcomes = []
    try:
        for cell in (c for c in cells() if c.route == route):
            key = cell.principal_key()
            plain, mfa = fixture.secrets[route.name]
            secret_id = plain if cell.mode == "off" else mfa
            code = _code_for(cell, key, fixture, used)
            if deleted[secret_id] != (route.state == "deleted"):
                _set_deleted(secret_id, route.state == "deleted")
                deleted[secret_id] = route.state == "deleted"
            answer = client_for(key, cell.ip).request(
                cell.route.method, cell.route.path(secret_id), json=cell.route.body(secret_id, fixture),
                mfa=code, params={"recoveryWindowDays": 7} if cell.route.name == "delete" else None)
            if cell.mode == "valid" and cell.expected()[1] is None:  # authorized: its code is now used
                used[key] = code or ""
            if route.name in ("delete", "restore") and answer.status_code == 200:
                deleted[secret_id] = route.name == "delete"
            body = answer.json() if answer.content else {}
            outcomes.append(Outcome(cell, secret_id, answer.status_code, body, answer.text,
                                    answer.headers["x-amzn-requestid"]))
    finally:
        for client in clients.values():
            client.close()
    return outcomes


def _allowed_by(cell: Cell, fixture: Matrix) -> str:
    """The ``authorized_by`` an allowed cell's event must carry."""
    if cell.role == "root":
        return "global_admin"
    if cell.role == "member":
        return f"secret_grant:group:{fixture.group}"
    return f"secret_grant:{fixture.names[cell.principal_key()]}"


def _problems(outcome: Outcome, events: dict[str, list[dict[str, Any]]], fixture: Matrix) -> list[str]:
    cell = outcome.cell
    status, reason = cell.expected()
    problems = []
    if outcome.status != status:
        problems.append(f"status {outcome.status} != {status}: {outcome.text[:160]}")
    elif reason is not None and status == 403 and outcome.body.get("reason") != reason:
        problems.append(f"reason {outcome.body.get('reason')} != {reason}")
    if (reason is not None or status >= 400) and ("value" in outcome.body or VALUE in outcome.text):
        problems.append("a refused request returned the value")
    if cell.route.name == "retrieve" and status == 200 and outcome.body.get("value") != VALUE:
        problems.append("an allowed read did not return the value")
    found = events.get(outcome.request_id, [])
    if len(found) != 1:
        problems.append(f"{len(found)} audit events for the request (expected 1)")
        return problems
    event = found[0]
    outcome_status = "denied" if reason else "failure" if status >= 400 else "success"
    allowed_by = None if reason else _allowed_by(cell, fixture)
    wanted = (cell.audited_action(), outcome_status, reason, allowed_by, cell.ip)
    got = (event["action"], event["status"], event.get("deny_reason"), event.get("authorized_by"),
           event.get("source_ip"))
    if got != wanted:
        problems.append(f"audit event {got} != {wanted}")
    if status != 401 and event.get("secret_id") != outcome.secret_id:
        problems.append(f"audit event for secret {event.get('secret_id')}")
    return problems


def test_the_authorization_matrix(api_server: str, matrix: Matrix) -> None:
    start = since()
    # A few routes at a time: enough to keep the (serialized) local AWS endpoint busy.
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = [o for route in pool.map(lambda r: _run_route(api_server, matrix, r), ROUTES) for o in route]
    assert len(outcomes) == len(ROUTES) * len(ROLES) * len(IPS) * len(MODES) == 1440

    # Every event since the start, through the by-day index (one Query per day touched).
    events: dict[str, list[dict[str, Any]]] = {}
    for day in sorted({start[:10], since(0)[:10]}):
        for request_id, found in events_by_request(day=day, after=start).items():
            events.setdefault(request_id, []).extend(found)

    failures: list[str] = []
    for outcome in outcomes:
        cell = outcome.cell
        failures.extend(f"{cell.route.name} {cell.role} {cell.ip} mfa={cell.mode}: {problem}"
                        for problem in _problems(outcome, events, matrix))
    assert not failures, f"{len(failures)} cells failed:\n" + "\n".join(failures[:40])

    # The matrix exercised every outcome there is.
    seen = {(o.status, o.body.get("reason")) for o in outcomes}
    assert seen >= {(200, None), (201, None), (401, None), (403, "permission_denied"),
                    (403, "ip_not_allowed"), (403, "mfa_required"), (403, "mfa_invalid"), (409, None)}, seen
