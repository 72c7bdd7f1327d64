"""What the access-control integration tests share (this module holds no tests).

- :func:`audit_events`: events from the audit table through its ``by_secret`` / ``by_actor`` / ``by_day``
  indexes, as the canonical event documents (with ``request_id``, ``deny_reason``, ...).
- :class:`Client`: a keep-alive HTTP client for one principal, optionally bound to another
  loopback source address (``127.0.0.2``), with the MFA header.
- :func:`totp_code`: the code of a TOTP seed for the current step (+ ``steps``).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pyotp

from chalicelib.aws import client
from chalicelib.clock import isoformat
from chalicelib.config import get_settings
from chalicelib.tables import AUDIT_BY_ACTOR, AUDIT_BY_DAY, AUDIT_BY_SECRET


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
