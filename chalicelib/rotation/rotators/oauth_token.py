"""``oauth_token`` rotation: a new access token from the token endpoint, tested for its scopes.

Options (``ctx.config``):

* ``tokenEndpoint``: the OAuth 2.0 token endpoint (else the current value's ``token_endpoint``);
* ``grantType``: ``client_credentials`` or ``refresh_token``; by default ``refresh_token`` when the
  current value holds a refresh token, else ``client_credentials``;
* ``clientId`` / ``clientSecretId`` (a secret holding the client secret); by default the current
  value's ``client_id`` / ``client_secret``. ``clientAuth``: ``basic`` (default) or ``post``;
* ``scope``: the scopes to ask for (default: ``requiredScopes``, else the current value's);
* ``requiredScopes``: the test fails unless all of them were granted;
* ``introspectionEndpoint``: if set, the test asks it (RFC 7662) whether the new token is active and
  which scopes it carries, instead of trusting the token answer;
* ``revocationEndpoint``: if set, ``revoke`` revokes the old access token there (RFC 7009). The old
  refresh token is left alone: revoking it could end the grant the new token belongs to;
* ``timeoutSeconds`` (default 10).

Within a rotation run the token request carries ``Idempotency-Key: <secret id>/<rotation id>/create``.
If the worker dies after the token was issued but before the engine stored it, the resumed run (same
rotation id) sends the same key again, and an authorization server that honours the header answers with
the token it already issued instead of a second one. OAuth 2.0 itself does not define the header; a
server that ignores it issues a new token. Direct calls outside the engine send no such header.

A JSON value gets a JSON value back (``access_token``, ``token_type``, ``expires_at``, ``scope``,
the refresh token, and the client fields it had); a bare bearer token gets a bare token back.
A refusal by the authorization server (``invalid_grant``, ``invalid_client``...) and any network
failure are :class:`~chalicelib.errors.DependencyUnavailable` naming the OAuth error code.

Example::

    config = {"tokenEndpoint": "https://auth.example/oauth/token", "clientId": "billing",
              "clientSecretId": "billing/oauth-client", "requiredScopes": ["invoices:read"]}
    value = ROTATOR.generate(ctx)
    ROTATOR.test(ctx, value)
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import httpx

from chalicelib.errors import DependencyUnavailable, InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.rotation.rotators._common import (
    RotationConfigInvalid,
    checked,
    choice,
    idempotency_headers,
    optional_text,
    positive_int,
    refuse_current,
    resolve,
    text_list,
)
from chalicelib.rotation.rotators._http import HttpHook, check_url, host_of, json_object
from chalicelib.rotation.rotators.base import RotationContext, RotationTestFailed
from chalicelib.secret_types import validate_value
from chalicelib.secret_types.base import looks_like_json_object

GRANTS = ("client_credentials", "refresh_token")
CLIENT_AUTH = ("basic", "post")
_OAUTH_ERROR = re.compile(r"[a-z_]{1,64}")
_REPLACED = ("access_token", "token_type", "expires_at", "expires_in", "scope", "refresh_token")


@dataclass(frozen=True)
class Client:
    """The OAuth client the rotation acts as."""

    client_id: str | None
    client_secret: str | None
    method: str

    def authenticate(self, form: dict[str, str]) -> dict[str, str]:
        """Add client authentication (RFC 6749 section 2.3.1); returns the headers to send."""
        if self.client_id is None:
            return {}
        if self.client_secret is None or self.method == "post":
            form["client_id"] = self.client_id
            if self.client_secret is not None:
                form["client_secret"] = self.client_secret
            return {}
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


class OauthTokenRotator:
    """Obtains a new access token by a client-credentials or refresh-token grant."""

    secret_type = SecretType.OAUTH_TOKEN

    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self._transport = transport

    def check_config(self, config: dict[str, Any]) -> None:
        for option in ("tokenEndpoint", "introspectionEndpoint", "revocationEndpoint"):
            url = optional_text(config, option)
            if url is not None:
                check_url(url, option)
        choice(config, "grantType", GRANTS, None)
        choice(config, "clientAuth", CLIENT_AUTH, "basic")
        optional_text(config, "clientId")
        optional_text(config, "clientSecretId")
        text_list(config, "scope")
        text_list(config, "requiredScopes")
        positive_int(config, "timeoutSeconds", 10, maximum=120)

    def generate(self, ctx: RotationContext) -> str:
        self.check_config(ctx.config)
        current = _as_object(ctx.current_value)
        endpoint = _endpoint(ctx.config, current)
        grant = ctx.config.get("grantType") or ("refresh_token" if current.get("refresh_token") else
                                                 "client_credentials")
        form = {"grant_type": grant}
        if grant == "refresh_token":
            if not isinstance(current.get("refresh_token"), str):
                raise RotationConfigInvalid("the refresh_token grant needs a current value with a refresh_token")
            form["refresh_token"] = current["refresh_token"]
        client = _client(ctx, current)
        if grant == "client_credentials" and (client.client_id is None or client.client_secret is None):
            raise RotationConfigInvalid("the client_credentials grant needs 'clientId' and 'clientSecretId' "
                                        "(or client_id and client_secret in the current value)")
        requested = text_list(ctx.config, "scope") or text_list(ctx.config, "requiredScopes") or _scopes(current)
        if requested:
            form["scope"] = " ".join(requested)
        headers = {**client.authenticate(form), **idempotency_headers(ctx, "create")}
        answer = self._hook(ctx).send("POST", endpoint, headers=headers, data=form)
        token = _token_answer(answer, endpoint)
        if ctx.current_value is not None and not looks_like_json_object(ctx.current_value):
            return _issued(token["access_token"], endpoint)
        return _issued(_new_value(current, token, requested), endpoint)

    def apply(self, ctx: RotationContext, new_value: str) -> None:
        """Nothing to do: the authorization server issued the token."""

    def test(self, ctx: RotationContext, new_value: str) -> None:
        facts = checked(SecretType.OAUTH_TOKEN, new_value)
        if facts.expired:
            raise RotationTestFailed("the new access token has already expired")
        self.check_config(ctx.config)
        required = set(text_list(ctx.config, "requiredScopes"))
        value = _as_object(new_value)
        granted: set[str] | None = set(facts.scopes) if facts.scopes else None
        if ctx.config.get("introspectionEndpoint"):
            granted = self._introspect(ctx, value, new_value)
        if not required:
            return
        if granted is None:
            raise RotationTestFailed("the granted scopes are unknown (no scope in the answer and no "
                                     "introspectionEndpoint)")
        missing = sorted(required - granted)
        if missing:
            raise RotationTestFailed(f"the new token lacks the required scopes: {' '.join(missing)}")

    def revoke(self, ctx: RotationContext, old_value: str) -> None:
        refuse_current(ctx, old_value)
        self.check_config(ctx.config)
        endpoint = ctx.config.get("revocationEndpoint")
        if not endpoint:
            return
        old = _as_object(old_value)
        form = {"token": _access_token(old, old_value), "token_type_hint": "access_token"}
        headers = _client(ctx, _as_object(ctx.current_value)).authenticate(form)
        answer = self._hook(ctx).send("POST", endpoint, headers=headers, data=form)
        if not answer.is_success:
            raise DependencyUnavailable("oauth revocation endpoint",
                                        f"{host_of(endpoint)} answered HTTP {answer.status_code}")

    def _introspect(self, ctx: RotationContext, value: dict[str, Any], raw: str) -> set[str] | None:
        endpoint = ctx.config["introspectionEndpoint"]
        form = {"token": _access_token(value, raw), "token_type_hint": "access_token"}
        headers = _client(ctx, value or _as_object(ctx.current_value)).authenticate(form)
        answer = self._hook(ctx).send("POST", endpoint, headers=headers, data=form)
        body = json_object(answer) if answer.is_success else None
        if body is None:
            raise DependencyUnavailable("oauth introspection endpoint",
                                        f"{host_of(endpoint)} answered HTTP {answer.status_code} without a JSON object")
        if body.get("active") is not True:
            raise RotationTestFailed("the introspection endpoint says the new token is not active")
        exp = body.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool) and exp <= time.time():
            raise RotationTestFailed("the introspection endpoint says the new token has expired")
        scope = body.get("scope")
        return set(scope.split()) if isinstance(scope, str) else None

    def _hook(self, ctx: RotationContext) -> HttpHook:
        return HttpHook("oauth token endpoint", transport=self._transport,
                        timeout=float(ctx.config.get("timeoutSeconds") or 10))


def _as_object(value: str | None) -> dict[str, Any]:
    if not value or not looks_like_json_object(value):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _access_token(obj: dict[str, Any], raw: str) -> str:
    token = obj.get("access_token")
    return token if isinstance(token, str) else raw


def _scopes(obj: dict[str, Any]) -> list[str]:
    scope = obj.get("scope")
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scope, list):
        return [item for item in scope if isinstance(item, str)]
    return []


def _endpoint(config: dict[str, Any], current: dict[str, Any]) -> str:
    endpoint = config.get("tokenEndpoint") or current.get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise RotationConfigInvalid("rotation option 'tokenEndpoint' is required")
    return check_url(endpoint, "tokenEndpoint")


def _client(ctx: RotationContext, current: dict[str, Any]) -> Client:
    client_id = ctx.config.get("clientId") or current.get("client_id")
    secret_id = ctx.config.get("clientSecretId")
    client_secret = resolve(ctx, secret_id, "clientSecretId") if secret_id else current.get("client_secret")
    return Client(client_id=client_id if isinstance(client_id, str) else None,
                  client_secret=client_secret if isinstance(client_secret, str) else None,
                  method=ctx.config.get("clientAuth") or "basic")


def _token_answer(answer: httpx.Response, endpoint: str) -> dict[str, Any]:
    body = json_object(answer)
    if not answer.is_success:
        error = body.get("error") if body else None
        code = error if isinstance(error, str) and _OAUTH_ERROR.fullmatch(error) else f"HTTP {answer.status_code}"
        raise DependencyUnavailable("oauth token endpoint", f"{host_of(endpoint)} refused the grant: {code}")
    if body is None or not isinstance(body.get("access_token"), str):
        raise DependencyUnavailable("oauth token endpoint", f"{host_of(endpoint)} answered without an access_token")
    return body


def _new_value(current: dict[str, Any], token: dict[str, Any], requested: list[str]) -> str:
    value = {key: item for key, item in current.items() if key not in _REPLACED}
    value["access_token"] = token["access_token"]
    value["token_type"] = token.get("token_type") if isinstance(token.get("token_type"), str) else "Bearer"
    expires_in = token.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        value["expires_at"] = int(datetime.now(UTC).timestamp() + expires_in)
    granted = token.get("scope") if isinstance(token.get("scope"), str) else " ".join(requested)
    if granted:
        value["scope"] = granted  # RFC 6749 5.1: an omitted scope is the one requested
    refresh = token.get("refresh_token") or current.get("refresh_token")
    if isinstance(refresh, str):
        value["refresh_token"] = refresh
    return json.dumps(value, separators=(",", ":"))


def _issued(value: str, endpoint: str) -> str:
    try:
        validate_value(SecretType.OAUTH_TOKEN, value)
    except InvalidSecretValue as error:
        message = f"{host_of(endpoint)} issued a token v-secure cannot store: {error.message}"
        raise DependencyUnavailable("oauth token endpoint", message) from None
    return value


ROTATOR = OauthTokenRotator()
