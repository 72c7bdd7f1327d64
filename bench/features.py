"""Operations of areas that may not be built yet: rotate, audit query, canary retrieve, compliance report.

Each is measured only when its module imports *and* its route is registered in ``app.py``;
a route that answers 404/405/501 counts as missing too. Otherwise the bench prints "not
available yet" for its row, and the figure appears by itself once the code lands.

Example::

    missing = unavailable(stack, ROTATE)
    if missing is None:
        summary = measure(rotate_operation(stack, secret_id), n=20)
"""

from __future__ import annotations

import importlib
import secrets as random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench.harness import BenchError, BenchStack, secret_path

NOT_AVAILABLE = "not available yet"
_MISSING_STATUS = (404, 405, 501)


@dataclass(frozen=True)
class Feature:
    """What must exist for an operation to be measured: a module and a route."""

    name: str
    module: str
    method: str
    route: str


ROTATE = Feature("rotate", "chalicelib.rotation.engine", "POST", "/secrets/{secret_id}/rotate")
ROTATION_CONFIG = Feature("rotation config", "chalicelib.rotation.engine", "PUT", "/secrets/{secret_id}/config")
AUDIT_QUERY = Feature("audit query", "chalicelib.audit.query", "GET", "/audit")
COMPLIANCE = Feature("compliance report", "chalicelib.compliance", "GET", "/compliance/report")


def unavailable(feature: Feature) -> str | None:
    """None when ``feature`` can be measured, else why not (module or route missing)."""
    try:
        importlib.import_module(feature.module)
    except ImportError as error:
        return f"{NOT_AVAILABLE} ({feature.module} missing: {error.name or error})"
    from chalicelib.local.server import load_app

    routes: dict[str, dict[str, Any]] = load_app().routes
    if feature.method not in routes.get(feature.route, {}):
        return f"{NOT_AVAILABLE} (no route {feature.method} {feature.route})"
    return None


def answered_missing(answer: httpx.Response) -> bool:
    """True when the API says the route is not there (yet)."""
    return answer.status_code in _MISSING_STATUS


class FeatureMissing(Exception):
    """The route answered 404/405/501: the operation is not available yet."""


def _checked(answer: httpx.Response, *expected: int) -> httpx.Response:
    if answered_missing(answer) and answer.status_code not in expected:
        raise FeatureMissing(f"{NOT_AVAILABLE} ({answer.request.method} {answer.request.url.path} answered "
                             f"{answer.status_code})")
    if answer.status_code not in expected:
        raise BenchError(f"{answer.request.method} {answer.request.url.path} answered {answer.status_code}: "
                         f"{answer.text[:300]}")
    return answer


# --- rotation ---------------------------------------------------------------------------------

def hmac_signing_key() -> str:
    """A ``jwt_token`` value the rotator can regenerate locally (no provider hook)."""
    return '{"alg": "HS256", "key": "' + random.token_urlsafe(48) + '"}'


def configure_rotation(stack: BenchStack, secret_id: str, strategy: str, **extra: Any) -> None:
    body = {"rotation": {"enabled": True, "interval": "30d", "strategy": strategy, **extra}}
    _checked(stack.http.put(secret_path(secret_id, "config"), json=body), 200)


def rotate(stack: BenchStack, secret_id: str, strategy: str, **extra: Any) -> dict[str, Any]:
    """``POST /secrets/{id}/rotate``; the rotation answer (rotationId, newVersion, status...)."""
    answer = _checked(stack.http.post(secret_path(secret_id, "rotate"), json={"strategy": strategy, **extra}),
                      200, 201, 202)
    body: dict[str, Any] = answer.json()
    return body


def rotate_operation(stack: BenchStack, secret_ids: list[str]) -> Callable[[int], object]:
    """Immediate rotations, round-robin over ``secret_ids`` (each one a ``jwt_token`` HMAC key)."""
    def run(index: int) -> object:
        return rotate(stack, secret_ids[index % len(secret_ids)], "immediate")
    return run


def principal_in_rollout(secret_id: str, percent: int) -> str:
    """A principal id whose rollout bucket for ``secret_id`` is below ``percent`` (served the new version)."""
    from chalicelib.rotation.rollout import bucket

    return next(f"bench-canary-{n}" for n in range(10_000) if bucket(secret_id, f"bench-canary-{n}") < percent)


def new_principal(stack: BenchStack, principal_id: str) -> str:
    """Create a service account (as root) and return a token for it."""
    _checked(stack.root.post("/principals", json={"principalId": principal_id, "type": "service_account"}), 201)
    issued = _checked(stack.root.post(f"/principals/{principal_id}/tokens", json={}), 201)
    return str(issued.json()["token"])


def client_for(stack: BenchStack, token: str) -> httpx.Client:
    """A keep-alive client of the API for another principal."""
    return httpx.Client(base_url=str(stack.http.base_url), headers={"Authorization": f"Bearer {token}"}, timeout=60)


def retrieve_operation(client: httpx.Client, secret_id: str) -> Callable[[int], int]:
    """Retrieve ``secret_id`` (no version: the rollout decides); returns the version served."""
    def run(_i: int) -> int:
        return int(_checked(client.get(secret_path(secret_id)), 200).json()["version"])
    return run


def start_canary(stack: BenchStack, secret_id: str) -> dict[str, Any]:
    """Configure and start a canary rollout; returns the rotation answer (5 % served the new version)."""
    configure_rotation(stack, secret_id, "canary")
    return rotate(stack, secret_id, "canary")


# --- audit and compliance ---------------------------------------------------------------------

def audit_query(client: httpx.Client, secret_id: str, limit: int = 50) -> dict[str, Any]:
    """``GET /audit?secretId=...&limit=...`` (newest first)."""
    answer = _checked(client.get("/audit", params={"secretId": secret_id, "limit": limit}), 200)
    body: dict[str, Any] = answer.json()
    return body


def compliance_report(client: httpx.Client, standard: str = "PCI-DSS") -> dict[str, Any]:
    """``GET /compliance/report?standard=...&period=monthly`` as JSON."""
    answer = _checked(client.get("/compliance/report", params={"standard": standard, "period": "monthly"}), 200)
    body: dict[str, Any] = answer.json()
    return body
