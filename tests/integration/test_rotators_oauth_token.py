"""The oauth_token rotator against an authorization server on loopback: refresh and client-credentials
grants, RFC 7662 introspection, RFC 7009 revocation, storing through the real API."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationTestFailed
from chalicelib.rotation.rotators.oauth_token import ROTATOR
from chalicelib.secret_types import validate_value
from tests.integration.helpers import Api, secret_url, unique
from tests.rotator_support import LoopbackServer, Seen, rotate_like_engine

CLIENT_ID, CLIENT_SECRET = "billing-service", "s3cret-client-" + "y" * 12
ALLOWED = {"invoices:read", "invoices:write", "customers:read"}


class AuthorizationServer:
    """Issues tokens for one client (HTTP Basic); ``granted`` caps the scopes it grants."""

    def __init__(self, server: LoopbackServer) -> None:
        self.active: dict[str, set[str]] = {}
        self.refresh_tokens: set[str] = set()
        self.granted = set(ALLOWED)
        server.route("POST", "/oauth/token", self.token)
        server.route("POST", "/oauth/introspect", self.introspect)
        server.route("POST", "/oauth/revoke", self.revoke)

    def _client_ok(self, seen: Seen) -> bool:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        return seen.headers.get("authorization") == f"Basic {expected}"

    def token(self, seen: Seen) -> tuple[int, dict[str, Any] | str]:
        if not self._client_ok(seen):
            return 401, {"error": "invalid_client"}
        form = seen.form()
        if form["grant_type"] == "refresh_token" and form.get("refresh_token") not in self.refresh_tokens:
            return 400, {"error": "invalid_grant"}
        scopes = set(form.get("scope", "").split()) & self.granted
        access, refresh = "at_" + secrets.token_urlsafe(24), "rt_" + secrets.token_urlsafe(24)
        self.active[access] = scopes
        self.refresh_tokens.add(refresh)
        return 200, {"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                     "refresh_token": refresh, "scope": " ".join(sorted(scopes))}

    def introspect(self, seen: Seen) -> tuple[int, dict[str, Any] | str]:
        if not self._client_ok(seen):
            return 401, {"error": "invalid_client"}
        token = seen.form()["token"]
        if token not in self.active:
            return 200, {"active": False}
        return 200, {"active": True, "client_id": CLIENT_ID, "scope": " ".join(sorted(self.active[token]))}

    def revoke(self, seen: Seen) -> tuple[int, dict[str, Any] | str]:
        if not self._client_ok(seen):
            return 401, {"error": "invalid_client"}
        self.active.pop(seen.form()["token"], None)
        return 200, ""


@pytest.fixture
def auth() -> Iterator[tuple[LoopbackServer, AuthorizationServer]]:
    with LoopbackServer() as server:
        yield server, AuthorizationServer(server)


def test_refresh_rotation_with_introspection_and_revocation(auth: tuple[LoopbackServer, AuthorizationServer],
                                                            api_server: str, root_token: str) -> None:
    server, authz = auth
    api = Api(api_server, root_token)
    secret_id = unique("oauth")
    config = {"tokenEndpoint": server.url("/oauth/token"), "clientId": CLIENT_ID, "clientSecretId": "oauth/client",
              "requiredScopes": ["invoices:read", "invoices:write"],
              "introspectionEndpoint": server.url("/oauth/introspect"),
              "revocationEndpoint": server.url("/oauth/revoke")}
    ctx = RotationContext(secret_id=secret_id, secret_type=SecretType.OAUTH_TOKEN, config=config,
                          resolve_secret={"oauth/client": CLIENT_SECRET}.__getitem__)
    first = ROTATOR.generate(ctx)  # no current value: client-credentials grant
    assert json.loads(first)["scope"] == "invoices:read invoices:write"
    assert api.store(secret_id, first, type="oauth_token").status_code == 201

    new = rotate_like_engine(ROTATOR, replace(ctx, current_value=first),
                             store=lambda value: api.store(secret_id, value))
    assert json.loads(new)["refresh_token"] != json.loads(first)["refresh_token"]
    assert server.calls("/oauth/token")[-1].form()["grant_type"] == "refresh_token"
    assert validate_value(SecretType.OAUTH_TOKEN, new).scopes == ("invoices:read", "invoices:write")
    assert json.loads(first)["access_token"] not in authz.active, "the old access token is revoked"
    assert json.loads(new)["access_token"] in authz.active
    served = api.get(secret_url(secret_id)).json()
    assert (served["version"], served["value"]) == (2, new)

    authz.granted = {"invoices:read"}  # the server now grants less than required
    with pytest.raises(RotationTestFailed, match="invoices:write"):
        rotate_like_engine(ROTATOR, replace(ctx, current_value=new), store=lambda value: api.store(secret_id, value))
    served = api.get(secret_url(secret_id)).json()
    assert (served["version"], served["value"]) == (2, new), "a failed test leaves the secret unchanged"
    assert set(authz.active) == {json.loads(new)["access_token"]}, "the token that failed its test is revoked"
