"""The api_key rotator against an ``httpx.MockTransport`` provider: hooks, HTTP check, revoke, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from chalicelib.errors import DependencyUnavailable
from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationTestFailed, get_rotator
from chalicelib.rotation.rotators._common import RevokeRefused, RotationConfigInvalid
from chalicelib.rotation.rotators.api_key import ApiKeyRotator
from chalicelib.secret_types import validate_value

OLD = "sk_live_old_0123456789abcdef"
NEW = "sk_live_new_abcdef0123456789"
ADMIN = "provider-admin-token-xyz"
PROVIDER = {"url": "https://keys.example/new", "revokeUrl": "https://keys.example/revoke",
            "checkUrl": "https://api.example/v1/me", "authSecretId": "stripe/admin"}


class Provider:
    """Records requests; answers with ``handler``."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def default_answers(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/new":
        return httpx.Response(200, json={"key": NEW, "id": "key_2"})
    if request.url.path == "/revoke":
        return httpx.Response(200, json={"revoked": True})
    valid = request.headers.get("authorization") == f"Bearer {NEW}"
    return httpx.Response(200 if valid else 401)


def rotator_with(handler: Callable[[httpx.Request], httpx.Response] = default_answers
                 ) -> tuple[ApiKeyRotator, Provider]:
    provider = Provider(handler)
    return ApiKeyRotator(transport=httpx.MockTransport(provider)), provider


def context(provider: dict[str, Any] | None = None, current: str | None = OLD) -> RotationContext:
    secrets = {"stripe/admin": ADMIN}
    return RotationContext(secret_id="stripe", secret_type=SecretType.API_KEY,
                           config={"strategy": "rolling", "provider": provider or PROVIDER},
                           current_value=current, resolve_secret=secrets.__getitem__)


def test_registered_for_api_key() -> None:
    assert get_rotator("api_key").secret_type is SecretType.API_KEY


def test_generate_asks_the_provider_with_the_admin_token() -> None:
    rotator, provider = rotator_with()
    key = rotator.generate(context())
    assert key == NEW
    validate_value(SecretType.API_KEY, key)
    request = provider.requests[0]
    assert (request.method, str(request.url)) == ("POST", PROVIDER["url"])
    assert request.headers["authorization"] == f"Bearer {ADMIN}"
    assert json.loads(request.content) == {"secretId": "stripe"}


def test_generate_in_a_rotation_run_sends_an_idempotency_key_naming_the_run() -> None:
    rotator, provider = rotator_with()
    assert rotator.generate(replace(context(), rotation_id="rot_20260101_abc")) == NEW
    assert rotator.generate(replace(context(), rotation_id="rot_20260101_abc")) == NEW
    keys = [request.headers["idempotency-key"] for request in provider.requests]
    assert keys == ["stripe/rot_20260101_abc/create"] * 2, "a resumed run repeats the same key"
    assert provider.requests[0].headers["authorization"] == f"Bearer {ADMIN}"
    rotator.generate(context())
    assert "idempotency-key" not in provider.requests[-1].headers, "no run, no idempotency key"


def test_generate_reads_a_text_answer_and_a_named_field() -> None:
    rotator, _ = rotator_with(lambda request: httpx.Response(200, text=f"{NEW}\n"))
    assert rotator.generate(context()) == NEW
    rotator, _ = rotator_with(lambda request: httpx.Response(200, json={"secret": NEW}))
    assert rotator.generate(context({**PROVIDER, "keyField": "secret"})) == NEW
    with pytest.raises(DependencyUnavailable, match="no string field 'key'"):
        rotator.generate(context())


@pytest.mark.parametrize(("status", "body"), [(500, {}), (403, {"error": "forbidden"}), (200, {"key": "short"})])
def test_generate_failures_are_dependency_errors_that_never_quote_a_key(status: int, body: dict[str, Any]) -> None:
    rotator, _ = rotator_with(lambda request: httpx.Response(status, json=body))
    with pytest.raises(DependencyUnavailable) as raised:
        rotator.generate(context())
    assert raised.value.dependency == "api_key provider"
    assert "short" not in raised.value.message and ADMIN not in raised.value.message


def test_generate_network_failure_names_the_host_only() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("boom", request=request)

    rotator, _ = rotator_with(refuse)
    with pytest.raises(DependencyUnavailable, match=r"keys\.example could not be reached"):
        rotator.generate(context())


def test_http_check_sends_the_new_key_as_bearer_and_needs_2xx() -> None:
    rotator, provider = rotator_with()
    rotator.test(context(), NEW)
    assert provider.requests[-1].headers["authorization"] == f"Bearer {NEW}"
    with pytest.raises(RotationTestFailed, match="answered 401") as raised:
        rotator.test(context(), "sk_live_not_accepted_123")
    assert "sk_live_not_accepted_123" not in str(raised.value)


def test_http_check_with_a_named_header() -> None:
    def needs_header(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204 if request.headers.get("x-api-key") == NEW else 403)

    rotator, provider = rotator_with(needs_header)
    rotator.test(context({**PROVIDER, "checkHeader": "X-Api-Key", "checkMethod": "POST"}), NEW)
    assert provider.requests[-1].method == "POST" and "authorization" not in provider.requests[-1].headers


def test_http_check_5xx_is_retryable_not_a_failed_test() -> None:
    rotator, _ = rotator_with(lambda request: httpx.Response(503))
    with pytest.raises(DependencyUnavailable):
        rotator.test(context(), NEW)


def test_without_check_url_the_test_validates_the_shape_only() -> None:
    rotator, provider = rotator_with()
    config = {"url": PROVIDER["url"]}
    rotator.test(context(config), NEW)
    assert provider.requests == []
    with pytest.raises(RotationTestFailed, match="not a valid api_key"):
        rotator.test(context(config), "bad key with spaces\n")


def test_revoke_posts_the_old_key_and_accepts_404() -> None:
    rotator, provider = rotator_with()
    rotator.revoke(context(current=NEW), OLD)
    request = provider.requests[-1]
    assert str(request.url) == PROVIDER["revokeUrl"] and json.loads(request.content) == {"secretId": "stripe",
                                                                                          "key": OLD}
    assert request.headers["authorization"] == f"Bearer {ADMIN}"
    gone, _ = rotator_with(lambda request: httpx.Response(404))
    gone.revoke(context(current=NEW), OLD)
    broken, _ = rotator_with(lambda request: httpx.Response(400))
    with pytest.raises(DependencyUnavailable):
        broken.revoke(context(current=NEW), OLD)


def test_revoke_refuses_the_current_value_and_skips_without_a_hook() -> None:
    rotator, provider = rotator_with()
    with pytest.raises(RevokeRefused):
        rotator.revoke(context(current=OLD), OLD)
    rotator.revoke(context({"url": PROVIDER["url"]}, current=NEW), OLD)
    assert provider.requests == []


@pytest.mark.parametrize("provider", [
    {},
    {"url": "http://keys.example/new"},
    {"url": "https://keys.example/new", "checkUrl": "ftp://x"},
    {"url": "https://keys.example/new", "checkMethod": "DELETE"},
    {"url": "https://keys.example/new", "timeoutSeconds": 0},
])
def test_bad_options_are_refused(provider: dict[str, Any]) -> None:
    rotator, calls = rotator_with()
    with pytest.raises(RotationConfigInvalid):
        rotator.check_config({"provider": provider})
    with pytest.raises(RotationConfigInvalid):
        rotator.generate(RotationContext("s", SecretType.API_KEY, {"provider": provider}))
    assert calls.requests == []


def test_loopback_http_is_allowed() -> None:
    ApiKeyRotator().check_config({"provider": {"url": "http://127.0.0.1:9/new", "checkUrl": "http://localhost/x"}})
