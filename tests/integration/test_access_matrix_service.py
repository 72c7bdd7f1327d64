"""The authorization matrix of every route that is not about one secret, over real HTTP: the caller's
own principal, tokens and MFA, listing secrets, principals, groups, prefix policies, the audit log,
compliance reports, keys and the public routes x every kind of caller x {allowed IP, other IP} x
{MFA not required; required with no code, a valid code, a reused code, a wrong code}.

The callers mean what they mean in the per-secret matrix (``test_access_matrix.py``): ``admin``,
``reader``, ``writer``, ``rotator`` hold the grant of that name on one secret S and ``member`` is in a
group that may read it; ``root`` is a global admin; ``stranger`` has nothing; ``disabled`` and
``expired`` cannot authenticate. What a route needs decides who passes RBAC: any authenticated caller,
the principal the path names (``self``), a global admin, ``audit:read`` on every secret, or
``audit:read`` on S.

Here the IP allow-list and MFA are service-wide settings, so the cells run against two more API server
processes on the same local AWS endpoint: "ip" (``V_SECURE_IP_WHITELIST=127.0.0.1/32``) serves the
cells with MFA off, "guarded" (the same and ``V_SECURE_REQUIRE_MFA=true``) the others. Everything the
cells act on is made through the session's API server before those processes start, so their caches
hold no stale principal. The routes that manage one's own MFA never ask for a code; public routes
ignore the token, the address and the code.

Every cell asserts the exact status (and deny reason), that a refused answer carries no token, seed or
value, and that the audit log holds exactly one event for that very request (by request id) with the
right action, status, deny reason, source address and, when authorized, why (``authorized_by``). The
expected outcome is computed from what each route needs, never written out by hand.

MFA codes as in the per-secret matrix: each principal that passes a route checking MFA serves two
such routes, whose "valid" cells take the current and the next step's codes; routes that never check
a code send one that nobody claims.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import product
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.test_access_matrix import ALLOWED_IP, GRANTED, IPS, MODES, ROLES, UNAUTHENTICATED
from tests.integration.test_access_support import (
    UNENROLLED_SEED,
    Client,
    FreshCodes,
    PrincipalKey,
    api_process,
    audit_events,
    code_for,
    events_by_request,
    make_principal,
    since,
    totp_code,
    wrong_code,
)

# Its tests share one costly fixture (principals with MFA, two server processes): one worker runs them.
pytestmark = pytest.mark.xdist_group("service-matrix")

VALUE = "sk_live_service_matrix_canary_5e1d"
AUTHENTICATED = frozenset(ROLES) - frozenset(UNAUTHENTICATED)
PUBLIC, ANY_CALLER, SELF = "public", "authenticated", "self"
GLOBAL_ADMIN, AUDIT_GLOBAL, AUDIT_SECRET = "global_admin", "audit_global", "audit_secret"
PASSES = {ANY_CALLER: AUTHENTICATED, SELF: AUTHENTICATED, GLOBAL_ADMIN: frozenset({"root"}),
          AUDIT_GLOBAL: frozenset({"root"}), AUDIT_SECRET: frozenset({"root", "admin"})}
"""What a route needs -> the roles that pass RBAC on it."""
LISTED = frozenset({"root", "admin", "reader", "writer", "member"})  # see S in GET /secrets
REFUSED_KEYS = ("token", "secret", "value")  # a token, an MFA seed, a secret value
SERVICE_ACTOR = "v-secure"


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    """Placeholders: {S} {J} {V} {G} {G2} {P} {P2} {me} {run} {mode} {today} {stream} {seq} {fresh}."""
    need: str
    ok: int
    """The status once authorized (409, 404: refused by the route itself after authorization)."""
    action: str = ""
    mfa_exempt: bool = False
    """Managing one's own MFA: the service-wide MFA requirement does not apply."""
    params: tuple[tuple[str, str], ...] = ()
    body: Any = field(default=None, compare=False)

    @property
    def checks_mfa(self) -> bool:
        return self.need != PUBLIC and not self.mfa_exempt


OWN_ROUTES = (
    Route("list_secrets", "GET", "/secrets", ANY_CALLER, 200, "secret_list", params=(("prefix", "{S}"),)),
    Route("whoami", "GET", "/auth/whoami", SELF, 200, "principal_read", mfa_exempt=True),
    Route("mfa_status", "GET", "/auth/mfa", SELF, 200, "principal_read", mfa_exempt=True),
    # Every caller that gets this far already has active MFA.
    Route("mfa_setup", "POST", "/auth/mfa/setup", SELF, 409, "mfa_enroll", mfa_exempt=True),
    Route("mfa_activate", "POST", "/auth/mfa/activate", SELF, 409, "mfa_enroll", mfa_exempt=True,
          body={"code": "123456"}),
    Route("tokens_list", "GET", "/principals/{me}/tokens", SELF, 200, "principal_read"),
    Route("token_create", "POST", "/principals/{me}/tokens", SELF, 201, "token_create", body={"ttlSeconds": 120}),
    Route("token_revoke", "DELETE", "/principals/{me}/tokens/tok_0000000000000000", SELF, 404, "token_revoke"),
    Route("health", "GET", "/health", PUBLIC, 200),
    Route("openapi", "GET", "/openapi.json", PUBLIC, 200),
    Route("jwks", "GET", "/jwks/{J}", PUBLIC, 200),
)
DIRECTORY_ROUTES = (
    Route("principal_create", "POST", "/principals", GLOBAL_ADMIN, 201, "principal_create",
          body={"principalId": "{fresh}"}),
    Route("principals_list", "GET", "/principals", GLOBAL_ADMIN, 200, "principal_read"),
    Route("principal_get", "GET", "/principals/{V}", GLOBAL_ADMIN, 200, "principal_read"),
    Route("principal_disable", "POST", "/principals/{V}/disable", GLOBAL_ADMIN, 200, "principal_disable"),
    Route("principal_enable", "POST", "/principals/{V}/enable", GLOBAL_ADMIN, 200, "principal_enable"),
    Route("mfa_reset", "POST", "/auth/mfa/disable", GLOBAL_ADMIN, 200, "mfa_disable", body={"principalId": "{V}"}),
    Route("groups_list", "GET", "/groups", GLOBAL_ADMIN, 200, "group_read"),
    Route("group_get", "GET", "/groups/{G}", GLOBAL_ADMIN, 200, "group_read"),
    Route("group_add", "PUT", "/groups/{G}/members/{V}", GLOBAL_ADMIN, 200, "group_change"),
    Route("group_remove", "DELETE", "/groups/{G2}/members/{V}", GLOBAL_ADMIN, 200, "group_change"),
    Route("policies_list", "GET", "/policies", GLOBAL_ADMIN, 200, "policy_read"),
    Route("policy_get", "GET", "/policies/{P}", GLOBAL_ADMIN, 200, "policy_read"),
    Route("policy_put", "PUT", "/policies/{P2}", GLOBAL_ADMIN, 200, "policy_change",
          body={"pattern": "mx-none-{run}/*", "allow": {}}),
    # The fixture made one policy per mode that lets a root cell through (off, valid).
    Route("policy_delete", "DELETE", "/policies/mx-del-{run}-{mode}", GLOBAL_ADMIN, 200, "policy_change"),
)
AUDIT_ROUTES = (
    Route("audit_trail", "GET", "/audit", AUDIT_GLOBAL, 200, "audit_read",
          params=(("startDate", "{today}"), ("limit", "5"))),
    Route("audit_secret", "GET", "/audit", AUDIT_SECRET, 200, "audit_read",
          params=(("secretId", "{S}"), ("limit", "5"))),
    Route("audit_event", "GET", "/audit/streams/{stream}/events/{seq}", AUDIT_GLOBAL, 200, "audit_read"),
    Route("audit_hash", "POST", "/audit/hash", AUDIT_GLOBAL, 200, "audit_hash", body={"value": "candidate"}),
    Route("audit_seal", "POST", "/audit/seal", GLOBAL_ADMIN, 200, "audit_seal"),
    Route("audit_verify", "GET", "/audit/verify", AUDIT_GLOBAL, 200, "audit_verify",
          params=(("startDate", "{today}"),)),
    Route("audit_public_key", "GET", "/audit/public-key", AUDIT_GLOBAL, 200, "audit_read"),
    Route("compliance", "GET", "/compliance/report", AUDIT_GLOBAL, 200, "compliance_report",
          params=(("standard", "SOX"), ("period", "custom"), ("start", "{today}"), ("end", "{today}"),
                  ("prefix", "{S}"))),
    Route("keys_status", "GET", "/keys/status", GLOBAL_ADMIN, 200, "key_rewrap", params=(("limit", "1"),)),
    Route("keys_rotate", "POST", "/keys/rotate", GLOBAL_ADMIN, 200, "key_rotate", body={}),
    Route("keys_rewrap", "POST", "/keys/rewrap", GLOBAL_ADMIN, 200, "key_rewrap", body={"limit": 1}),
)
ROUTES = OWN_ROUTES + DIRECTORY_ROUTES + AUDIT_ROUTES
VICTIM_ROUTES = ("principal_get", "principal_disable", "principal_enable", "mfa_reset", "group_add", "group_remove")
"""Routes acting on another principal V: each has its own, so no two routes race on one record."""


@dataclass(frozen=True)
class Cell:
    route: Route
    role: str
    ip: str
    mode: str

    def expected(self) -> tuple[int, str | None]:
        """(status, deny reason) this cell must produce; reason None: authorized (or public)."""
        route = self.route
        if route.need == PUBLIC:
            return route.ok, None
        if self.role in UNAUTHENTICATED:
            return 401, UNAUTHENTICATED[self.role]
        if self.role not in PASSES[route.need]:
            return 403, "permission_denied"
        if self.ip != ALLOWED_IP:
            return 403, "ip_not_allowed"
        if self.mode in ("off", "valid") or route.mfa_exempt:
            return route.ok, None
        return 403, "mfa_required" if self.mode == "none" else "mfa_invalid"

    def audited_action(self) -> str:
        status, reason = self.expected()
        if status == 401:
            return "auth_failed"
        return "mfa_failed" if reason == "mfa_invalid" else self.route.action

    def allow_reason(self, principal_id: str) -> str:
        """The ``authorized_by`` of an authorized cell's event."""
        if self.route.need in (SELF, ANY_CALLER):
            return self.route.need
        return GLOBAL_ADMIN if self.role == "root" else f"secret_grant:{principal_id}"

    def principal_key(self) -> PrincipalKey:
        """A role's routes that check MFA and let it through share a principal two by two."""
        checked = [r.name for r in ROUTES if r.checks_mfa and self.role in PASSES[r.need]]
        if self.route.name in checked:
            return self.role, f"pair{checked.index(self.route.name) // 2}"
        return self.role, ""


def cells(routes: tuple[Route, ...] = ROUTES) -> list[Cell]:
    return [Cell(route, role, ip, mode) for route, role, ip, mode in product(routes, ROLES, IPS, MODES)]


@dataclass
class ServiceMatrix:
    run: str
    values: dict[str, str] = field(default_factory=dict)
    """Placeholder -> value, for every cell (S, J, G, G2, P, P2, run, stream, seq)."""
    victims: dict[str, str] = field(default_factory=dict)
    """Route -> the principal V it acts on."""
    urls: dict[str, str] = field(default_factory=dict)
    """"ip" and "guarded" -> the API process serving those cells."""
    names: dict[PrincipalKey, str] = field(default_factory=dict)
    tokens: dict[PrincipalKey, str] = field(default_factory=dict)
    seeds: dict[PrincipalKey, str] = field(default_factory=dict)
    codes: FreshCodes = field(default_factory=FreshCodes)

    @property
    def secret(self) -> str:
        return self.values["S"]


def _rsa_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _make_principals(api: str, root_token: str, fixture: ServiceMatrix) -> None:
    """Every cell's principal; all that can authenticate enrol MFA (each passes some route)."""
    keys = sorted({cell.principal_key() for cell in cells()})
    group = fixture.values["G"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = pool.map(lambda key: (key, make_principal(api, root_token, key, fixture.run, group, prefix="ms",
                                                         enrol=key[0] in AUTHENTICATED)), keys)
        for key, (name, token, seed) in made:
            fixture.names[key], fixture.tokens[key], fixture.seeds[key] = name, token, seed


def _grants(fixture: ServiceMatrix) -> dict[str, list[str]]:
    access = {name: [GRANTED[role]] for (role, _pair), name in fixture.names.items() if role in GRANTED}
    return {**access, f"group:{fixture.values['G']}": ["read"]}


def _store_objects(root: Client, fixture: ServiceMatrix) -> None:
    """S (with the grants), J (a jwt_token signing key), the victims and the policies."""
    stored = root.store(fixture.secret, VALUE, access=_grants(fixture))
    assert stored.status_code == 201, stored.text
    signing = root.store(fixture.values["J"], _rsa_private_key_pem(), type="jwt_token")
    assert signing.status_code == 201, signing.text
    for route in VICTIM_ROUTES:
        fixture.victims[route] = f"ms-victim-{route.replace('_', '')}-{fixture.run}"
        created = root.post("/principals", {"principalId": fixture.victims[route]})
        assert created.status_code == 201, created.text
    run = fixture.run
    for policy in (fixture.values["P"], f"mx-del-{run}-off", f"mx-del-{run}-valid"):
        put = root.put(f"/policies/{policy}", {"pattern": f"mx-none-{run}/*", "allow": {}})
        assert put.status_code == 200, put.text


def _disable_and_expire(api: str, root: Client, fixture: ServiceMatrix) -> None:
    for (role, _pair), name in fixture.names.items():
        if role == "disabled":
            assert root.post(f"/principals/{name}/disable").status_code == 200
    expired = Client(api, fixture.tokens[("expired", "")])
    try:
        deadline = time.monotonic() + 10
        while expired.get("/auth/whoami").status_code != 401:  # its token lives 1 s
            assert time.monotonic() < deadline, "the short-lived token did not expire"
            time.sleep(0.2)
    finally:
        expired.close()


def _note_an_event_of(fixture: ServiceMatrix) -> None:
    """A real event of S for ``/audit/streams/{stream}/events/{seq}``."""
    event = audit_events(secret_id=fixture.secret)[0]
    fixture.values.update(stream=quote(str(event["stream_id"]), safe=""), seq=str(event["seq"]))


@pytest.fixture(scope="module")
def service_matrix(local_aws: str, api_server: str, root_token: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceMatrix]:
    run = uuid.uuid4().hex[:6]
    fixture = ServiceMatrix(run=run, values={
        "S": f"ms/{run}/granted", "J": f"ms-jwks-{run}", "G": f"ms-group-{run}", "G2": f"ms-group2-{run}",
        "P": f"mx-get-{run}", "P2": f"mx-put-{run}", "run": run})
    _make_principals(api_server, root_token, fixture)
    root = Client(api_server, root_token)
    try:
        _store_objects(root, fixture)
        _disable_and_expire(api_server, root, fixture)
    finally:
        root.close()
    _note_an_event_of(fixture)
    allow_list = {"V_SECURE_IP_WHITELIST": f"{ALLOWED_IP}/32"}
    with ExitStack() as servers:
        fixture.urls["ip"] = servers.enter_context(
            api_process(local_aws, allow_list, tmp_path_factory.mktemp("server-ip")))
        fixture.urls["guarded"] = servers.enter_context(
            api_process(local_aws, {**allow_list, "V_SECURE_REQUIRE_MFA": "true"},
                        tmp_path_factory.mktemp("server-guarded")))
        yield fixture


# --- running the cells -------------------------------------------------------------------------


@dataclass
class Outcome:
    cell: Cell
    principal_id: str
    status: int
    body: dict[str, Any]
    text: str
    request_id: str


def _unclaimed_code(mode: str, seed: str) -> str | None:
    """The code of a cell whose route never checks one: valid now (nobody claims it), or wrong."""
    if mode in ("off", "none"):
        return None
    return wrong_code(seed) if mode == "wrong" else totp_code(seed)


def _code(cell: Cell, key: PrincipalKey, fixture: ServiceMatrix, used: dict[PrincipalKey, str]) -> str | None:
    if cell.route.checks_mfa:
        return code_for(cell, key, fixture, used)
    return _unclaimed_code(cell.mode, fixture.seeds.get(key) or UNENROLLED_SEED)


def _placeholders(cell: Cell, key: PrincipalKey, fixture: ServiceMatrix) -> dict[str, str]:
    return {**fixture.values, "me": fixture.names[key], "V": fixture.victims.get(cell.route.name, ""),
            "mode": cell.mode, "today": datetime.now(UTC).date().isoformat(),
            "fresh": f"ms-new-{fixture.run}-{uuid.uuid4().hex[:8]}"}


def _fill(template: Any, values: Mapping[str, str]) -> Any:
    if isinstance(template, str):
        return template.format_map(values)
    if isinstance(template, dict):
        return {name: _fill(part, values) for name, part in template.items()}
    return template


def _body(answer: httpx.Response) -> dict[str, Any]:
    if "json" not in answer.headers.get("content-type", "") or not answer.content:
        return {}
    body = answer.json()
    return body if isinstance(body, dict) else {}


class _Clients:
    """One keep-alive client per (principal, source address, server), closed together."""

    def __init__(self, fixture: ServiceMatrix) -> None:
        self.fixture = fixture
        self._open: dict[tuple[PrincipalKey, str, str], Client] = {}

    def get(self, key: PrincipalKey, ip: str, server: str) -> Client:
        if (key, ip, server) not in self._open:
            self._open[(key, ip, server)] = Client(self.fixture.urls[server], self.fixture.tokens[key], source=ip)
        return self._open[(key, ip, server)]

    def close(self) -> None:
        for client in self._open.values():
            client.close()


def _send(clients: _Clients, cell: Cell, key: PrincipalKey, code: str | None) -> Outcome:
    route, values = cell.route, _placeholders(cell, key, clients.fixture)
    client = clients.get(key, cell.ip, "ip" if cell.mode == "off" else "guarded")
    answer = client.request(route.method, route.path.format_map(values), json=_fill(route.body, values),
                            params={name: value.format_map(values) for name, value in route.params} or None,
                            mfa=code)
    return Outcome(cell, clients.fixture.names[key], answer.status_code, _body(answer), answer.text,
                   answer.headers.get("x-amzn-requestid", ""))


def _run_route(fixture: ServiceMatrix, route: Route) -> list[Outcome]:
    """One route's cells, in order (a "reused" cell replays the code its "valid" cell just used)."""
    clients = _Clients(fixture)
    used: dict[PrincipalKey, str] = {}
    outcomes = []
    try:
        for cell in cells((route,)):
            key = cell.principal_key()
            code = _code(cell, key, fixture, used)
            outcomes.append(_send(clients, cell, key, code))
            if route.checks_mfa and cell.mode == "valid" and cell.expected()[1] is None:
                used[key] = code or ""
    finally:
        clients.close()
    return outcomes


# --- judging them ------------------------------------------------------------------------------


def _answer_problems(outcome: Outcome, secret_id: str) -> list[str]:
    cell = outcome.cell
    status, reason = cell.expected()
    problems = []
    if outcome.status != status:
        problems.append(f"status {outcome.status} != {status}: {outcome.text[:160]}")
    elif status == 403 and outcome.body.get("reason") != reason:
        problems.append(f"reason {outcome.body.get('reason')} != {reason}")
    if (outcome.status >= 400 or status >= 400) and (
            any(name in outcome.body for name in REFUSED_KEYS) or VALUE in outcome.text):
        problems.append(f"a refused answer carries a token, seed or value: {sorted(outcome.body)}")
    if not outcome.request_id:
        problems.append("no x-amzn-requestid header")
    if cell.route.name == "list_secrets" and outcome.status == 200:
        listed = secret_id in [s.get("secretId") for s in outcome.body.get("secrets", [])]
        if listed != (cell.role in LISTED):
            problems.append(f"S {'is' if listed else 'is not'} listed")
    return problems


def _public_audit_problems(outcome: Outcome, found: list[dict[str, Any]]) -> list[str]:
    """Public routes record no caller event; the JWKS route may record its one system read of J."""
    if outcome.cell.route.name == "jwks":
        if len(found) > 1 or any(e["actor"] != SERVICE_ACTOR for e in found):
            return [f"JWKS events for the request: {[(e['actor'], e['action']) for e in found]}"]
        return []
    return [f"{len(found)} audit events for a public request (expected none)"] if found else []


def _wanted_event(outcome: Outcome) -> tuple[str, frozenset[str], str | None, str, str | None]:
    """(action, allowed statuses, deny reason, source address, authorized_by) of the cell's event."""
    cell = outcome.cell
    status, reason = cell.expected()
    if reason is not None:
        return cell.audited_action(), frozenset({"denied"}), reason, cell.ip, None
    statuses = frozenset({"success" if status < 400 else "failure"})
    if cell.route.name == "audit_verify":  # a concurrent seal may make verification fail
        statuses = frozenset({"success", "failure"})
    return cell.audited_action(), statuses, None, cell.ip, cell.allow_reason(outcome.principal_id)


def _audit_problems(outcome: Outcome, found: list[dict[str, Any]], secret_id: str) -> list[str]:
    if outcome.cell.route.need == PUBLIC:
        return _public_audit_problems(outcome, found)
    if len(found) != 1:
        return [f"{len(found)} audit events for the request (expected 1)"]
    event = found[0]
    action, statuses, reason, ip, allowed_by = _wanted_event(outcome)
    got = (event["action"], event["status"], event.get("deny_reason"), event.get("source_ip"))
    problems = []
    if (got[0], got[2], got[3]) != (action, reason, ip) or got[1] not in statuses:
        problems.append(f"audit event {got} != {(action, '|'.join(sorted(statuses)), reason, ip)}")
    if allowed_by is not None and event.get("authorized_by") != allowed_by:
        problems.append(f"authorized_by {event.get('authorized_by')!r} != {allowed_by!r}")
    if outcome.cell.route.name == "audit_secret" and reason is None and event.get("secret_id") != secret_id:
        problems.append(f"audit event for secret {event.get('secret_id')!r}")
    return problems


def _events_since(start: str) -> dict[str, list[dict[str, Any]]]:
    """Every event since ``start``, by request id, through the by-day index (one Query per day touched)."""
    events: dict[str, list[dict[str, Any]]] = {}
    for day in sorted({start[:10], since(0)[:10]}):
        for request_id, found in events_by_request(day=day, after=start).items():
            events.setdefault(request_id, []).extend(found)
    return events


def _kind(status: int, reason: str | None) -> tuple[int, str | None]:
    return status, reason if status == 403 else None


def _check_routes(fixture: ServiceMatrix, routes: tuple[Route, ...]) -> None:
    start = since()
    # A few routes at a time: enough to keep the (serialized) local AWS endpoint busy.
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = [o for found in pool.map(lambda r: _run_route(fixture, r), routes) for o in found]
    assert len(outcomes) == len(routes) * len(ROLES) * len(IPS) * len(MODES)
    events = _events_since(start)

    failures: list[str] = []
    for outcome in outcomes:
        cell = outcome.cell
        problems = _answer_problems(outcome, fixture.secret)
        problems += _audit_problems(outcome, events.get(outcome.request_id, []), fixture.secret)
        failures.extend(f"{cell.route.name} {cell.role} {cell.ip} mfa={cell.mode}: {p}" for p in problems)
    assert not failures, f"{len(failures)} problems in {len(outcomes)} cells:\n" + "\n".join(failures[:40])

    # These routes exercised every outcome their cells should produce.
    seen = {_kind(o.status, o.body.get("reason")) for o in outcomes}
    wanted = {_kind(*o.cell.expected()) for o in outcomes}
    assert seen >= wanted, f"never seen: {wanted - seen}"


def test_own_principal_listing_and_public_routes(service_matrix: ServiceMatrix) -> None:
    _check_routes(service_matrix, OWN_ROUTES)


def test_principal_group_and_policy_routes(service_matrix: ServiceMatrix) -> None:
    _check_routes(service_matrix, DIRECTORY_ROUTES)


def test_audit_compliance_and_key_routes(service_matrix: ServiceMatrix) -> None:
    _check_routes(service_matrix, AUDIT_ROUTES)
