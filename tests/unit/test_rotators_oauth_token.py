"""The oauth_token rotator against a MockTransport token endpoint: grants, client auth, scopes, RFC 7662/7009."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from chalicelib.errors import DependencyUnavailable
from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationTestFailed
from chalicelib.rotation.rotators._common import RevokeRefused, RotationConfigInvalid
from chalicelib.rotation.rotators.oauth_token import OauthTokenRotator
from chalicelib.secret_types import validate_value

ENDPOINT = "https://auth.example/oauth/token"
CLIENT_SECRET = "client-secret-value-42"
CURRENT = json.dumps({"access_token": "at_old_123456789", "refresh_token": "rt_old_123456789",
                      "token_type": "Bearer", "scope": "invoices:read", "client_id": "billing",
                      "token_endpoint": ENDPOINT, "tenant": "eu-1"})


class AuthServer:
    def __init__(self, answer: Callable[[dict[str, str]], httpx.Response] | None = None) -> None:
        self.forms: list[dict[str, str]] = []
        self.requests: list[httpx.Request] = []
        self.answer = answer or (lambda form: httpx.Response(200, json={
            "access_token": "at_new_987654321", "token_type": "Bearer", "expires_in": 3600,
            "scope": form.get("scope", "invoices:read")}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.requests.append(request)
        self.forms.append(form)
        return self.answer(form)


def rotator(server: AuthServer) -> OauthTokenRotator:
    return OauthTokenRotator(transport=httpx.MockTransport(server))


def context(config: dict[str, Any] | None = None, current: str | None = CURRENT) -> RotationContext:
    return RotationContext(secret_id="billing/oauth", secret_type=SecretType.OAUTH_TOKEN, config=config or {},
                           current_value=current, resolve_secret={"billing/client": CLIENT_SECRET}.__getitem__)


def test_client_credentials_with_basic_auth() -> None:
    server = AuthServer()
    config = {"tokenEndpoint": ENDPOINT, "grantType": "client_credentials", "clientId": "billing",
              "clientSecretId": "billing/client", "requiredScopes": ["invoices:read", "invoices:write"]}
    value = rotator(server).generate(context(config, current=None))
    assert server.forms[0] == {"grant_type": "client_credentials", "scope": "invoices:read invoices:write"}
    expected = base64.b64encode(f"billing:{CLIENT_SECRET}".encode()).decode()
    assert server.requests[0].headers["authorization"] == f"Basic {expected}"
    facts = validate_value(SecretType.OAUTH_TOKEN, value)
    assert facts.scopes == ("invoices:read", "invoices:write") and facts.expired is False
    assert abs(json.loads(value)["expires_at"] - (time.time() + 3600)) < 5
    rotator(server).test(context(config), value)


def test_refresh_grant_keeps_client_fields_and_the_refresh_token_unless_rotated() -> None:
    server = AuthServer()
    value = json.loads(rotator(server).generate(context({"clientSecretId": "billing/client",
                                                         "clientAuth": "post"})))
    assert server.forms[0] == {"grant_type": "refresh_token", "refresh_token": "rt_old_123456789",
                               "scope": "invoices:read", "client_id": "billing", "client_secret": CLIENT_SECRET}
    assert "authorization" not in server.requests[0].headers
    assert value["refresh_token"] == "rt_old_123456789" and value["tenant"] == "eu-1"
    assert (value["access_token"], value["client_id"], value["token_endpoint"]) == ("at_new_987654321", "billing",
                                                                                    ENDPOINT)
    rotated = AuthServer(lambda form: httpx.Response(200, json={"access_token": "at_new_2_987654321",
                                                                "refresh_token": "rt_new_123456789"}))
    value = json.loads(rotator(rotated).generate(context()))
    assert value["refresh_token"] == "rt_new_123456789"
    assert value["scope"] == "invoices:read"  # omitted in the answer: the scope requested


def test_the_token_request_of_a_rotation_run_sends_an_idempotency_key_naming_the_run() -> None:
    server = AuthServer()
    config = {"tokenEndpoint": ENDPOINT, "grantType": "client_credentials", "clientId": "billing",
              "clientSecretId": "billing/client"}
    rotator(server).generate(replace(context(config), rotation_id="rot_20260101_abc"))
    request = server.requests[0]
    assert request.headers["idempotency-key"] == "billing/oauth/rot_20260101_abc/create"
    assert request.headers["authorization"].startswith("Basic ")
    rotator(server).generate(context(config))
    assert "idempotency-key" not in server.requests[-1].headers, "no run, no idempotency key"


def test_a_bare_token_gets_a_bare_token() -> None:
    server = AuthServer()
    config = {"tokenEndpoint": ENDPOINT, "clientId": "billing", "clientSecretId": "billing/client"}
    value = rotator(server).generate(context(config, current="at_bare_123456789"))
    assert value == "at_new_987654321" and server.forms[0]["grant_type"] == "client_credentials"


def test_missing_required_scopes_fail_the_test() -> None:
    value = json.dumps({"access_token": "at_new_987654321", "scope": "invoices:read"})
    with pytest.raises(RotationTestFailed, match="invoices:write"):
        rotator(AuthServer()).test(context({"requiredScopes": "invoices:read invoices:write"}), value)
    with pytest.raises(RotationTestFailed, match="unknown"):
        rotator(AuthServer()).test(context({"requiredScopes": ["invoices:read"]}), "at_bare_123456789")
    expired = json.dumps({"access_token": "at_new_987654321", "expires_at": int(time.time()) - 10})
    with pytest.raises(RotationTestFailed, match="expired"):
        rotator(AuthServer()).test(context(), expired)


def test_introspection_decides_activity_and_scopes() -> None:
    answers = iter([{"active": True, "scope": "invoices:read invoices:write"}, {"active": False},
                    {"active": True, "scope": "invoices:read"}])
    server = AuthServer(lambda form: httpx.Response(200, json=next(answers)))
    config = {"introspectionEndpoint": "https://auth.example/introspect", "requiredScopes": ["invoices:write"],
              "clientSecretId": "billing/client"}
    value = json.dumps({"access_token": "at_new_987654321", "scope": "invoices:read", "client_id": "billing"})
    rotator(server).test(context(config), value)
    assert server.forms[0] == {"token": "at_new_987654321", "token_type_hint": "access_token"}
    assert server.requests[0].headers["authorization"].startswith("Basic ")
    with pytest.raises(RotationTestFailed, match="not active"):
        rotator(server).test(context(config), value)
    with pytest.raises(RotationTestFailed, match="lacks"):
        rotator(server).test(context(config), value)


def test_refusals_name_the_oauth_error_never_a_token() -> None:
    server = AuthServer(lambda form: httpx.Response(400, json={"error": "invalid_grant",
                                                               "error_description": "rt_old_123456789 expired"}))
    with pytest.raises(DependencyUnavailable, match="invalid_grant") as raised:
        rotator(server).generate(context())
    assert "rt_old" not in raised.value.message
    silly = AuthServer(lambda form: httpx.Response(400, json={"error": "rt_old_123456789 <script>"}))
    with pytest.raises(DependencyUnavailable, match="HTTP 400") as raised:
        rotator(silly).generate(context())
    assert "rt_old" not in raised.value.message
    spaced = AuthServer(lambda form: httpx.Response(200, json={"access_token": "has spaces in it"}))
    with pytest.raises(DependencyUnavailable, match="cannot store"):
        rotator(spaced).generate(context())


def test_revoke_revokes_the_old_access_token_only() -> None:
    server = AuthServer(lambda form: httpx.Response(200))
    config = {"revocationEndpoint": "https://auth.example/revoke", "clientSecretId": "billing/client"}
    new = json.dumps({"access_token": "at_new_987654321", "refresh_token": "rt_old_123456789",
                      "client_id": "billing"})
    rotator(server).revoke(context(config, current=new), CURRENT)
    assert server.forms == [{"token": "at_old_123456789", "token_type_hint": "access_token"}]
    with pytest.raises(RevokeRefused):
        rotator(server).revoke(context(config, current=CURRENT), CURRENT)
    rotator(server).revoke(context({}, current=new), CURRENT)
    assert len(server.forms) == 1


def test_options_are_checked() -> None:
    for bad in ({"tokenEndpoint": "http://auth.example/token"}, {"grantType": "password"},
                {"clientAuth": "jwt"}, {"requiredScopes": [1]}):
        with pytest.raises(RotationConfigInvalid):
            rotator(AuthServer()).generate(context(bad))
    with pytest.raises(RotationConfigInvalid, match="tokenEndpoint"):
        rotator(AuthServer()).generate(context({}, current=None))
    with pytest.raises(RotationConfigInvalid, match="client_credentials"):
        rotator(AuthServer()).generate(context({"tokenEndpoint": ENDPOINT}, current=None))
