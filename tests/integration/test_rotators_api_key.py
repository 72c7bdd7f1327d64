"""The api_key rotator against a provider on loopback (issue, check, revoke), storing through the real API.

The provider honours ``Idempotency-Key`` (a repeated key gets the key issued the first time), so a run
whose worker died after the key was issued and before it was stored does not leave an orphan key.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.clock import FrozenClock
from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationTestFailed
from chalicelib.rotation.rotators.api_key import ROTATOR, ApiKeyRotator
from chalicelib.rotation.runs import RunStatus, RunStep
from chalicelib.rotation.scheduler import tick
from tests.integration.helpers import Api, secret_url, unique
from tests.integration.test_rotation_recovery import LEASE_SECONDS, Crash, crash_at, engine_at, served
from tests.rotator_support import LoopbackServer, Seen, rotate_like_engine
from tests.unit.test_rotation_support import installed

ADMIN_TOKEN = "provider-admin-" + "x" * 16


class KeyProvider:
    """Issues keys, answers a check endpoint for live keys only, revokes keys. ``broken``: keys it issues
    are not activated (the check then refuses them). A request with an ``Idempotency-Key`` it has seen
    gets the key issued for it the first time; ``minted`` lists every key it made."""

    def __init__(self, server: LoopbackServer) -> None:
        self.live: set[str] = set()
        self.broken = False
        self.minted: list[str] = []
        self.by_idempotency_key: dict[str, str] = {}
        server.route("POST", "/keys", self.issue)
        server.route("POST", "/keys/revoke", self.revoke)
        server.route("GET", "/v1/account", self.check)

    def issue(self, seen: Seen) -> tuple[int, dict[str, Any] | str]:
        if seen.headers.get("authorization") != f"Bearer {ADMIN_TOKEN}":
            return 401, {"error": "unauthorized"}
        idempotency_key = seen.headers.get("idempotency-key")
        if idempotency_key is not None and idempotency_key in self.by_idempotency_key:
            key = self.by_idempotency_key[idempotency_key]
            return 200, {"id": "key_" + key[-6:], "key": key}
        key = "sk_live_" + secrets.token_hex(16)
        self.minted.append(key)
        if idempotency_key is not None:
            self.by_idempotency_key[idempotency_key] = key
        if not self.broken:
            self.live.add(key)
        return 200, {"id": "key_" + key[-6:], "key": key}

    def revoke(self, seen: Seen) -> tuple[int, dict[str, Any] | str]:
        key = seen.json()["key"]
        if key not in self.live:
            return 404, {"error": "unknown_key"}
        self.live.discard(key)
        return 200, {"revoked": True}

    def check(self, seen: Seen) -> tuple[int, dict[str, Any] | str]:
        token = seen.headers.get("authorization", "").removeprefix("Bearer ")
        return (200, {"account": "acct_1"}) if token in self.live else (401, {"error": "invalid_api_key"})


@pytest.fixture
def provider() -> Iterator[tuple[LoopbackServer, KeyProvider]]:
    with LoopbackServer() as server:
        yield server, KeyProvider(server)


def test_rotation_through_the_provider_and_the_vault(provider: tuple[LoopbackServer, KeyProvider],
                                                     api_server: str, root_token: str) -> None:
    server, keys = provider
    api = Api(api_server, root_token)
    secret_id = f"payments/{unique('stripe')}"
    config = {"provider": {"url": server.url("/keys"), "revokeUrl": server.url("/keys/revoke"),
                           "checkUrl": server.url("/v1/account"), "authSecretId": "stripe/admin"}}
    context = RotationContext(secret_id=secret_id, secret_type=SecretType.API_KEY, config=config,
                              resolve_secret={"stripe/admin": ADMIN_TOKEN}.__getitem__)
    first = ROTATOR.generate(context)
    assert api.store(secret_id, first, type="api_key").status_code == 201

    ctx = replace(context, current_value=first)
    new = rotate_like_engine(ROTATOR, ctx, store=lambda value: api.store(secret_id, value))
    served = api.get(secret_url(secret_id)).json()
    assert (served["version"], served["value"]) == (2, new)
    assert keys.live == {new}, "the old key is revoked at the provider, the new one works"
    check_calls = server.calls("/v1/account")
    assert check_calls[-1].headers["authorization"] == f"Bearer {new}"

    keys.broken = True
    ctx = replace(context, current_value=new)
    with pytest.raises(RotationTestFailed, match="answered 401"):
        rotate_like_engine(ROTATOR, ctx, store=lambda value: api.store(secret_id, value))
    served = api.get(secret_url(secret_id)).json()
    assert (served["version"], served["value"]) == (2, new), "a failed test leaves the secret unchanged"
    assert keys.live == {new}
    failed_key = server.calls("/keys/revoke")[-1].json()["key"]
    assert failed_key not in (first, new), "the engine revokes the new key that failed its test"


def test_a_provider_without_a_check_url_is_trusted_for_the_shape_only(
        provider: tuple[LoopbackServer, KeyProvider]) -> None:
    server, keys = provider
    rotator = ApiKeyRotator()
    ctx = RotationContext(secret_id="s", secret_type=SecretType.API_KEY,
                          config={"provider": {"url": server.url("/keys"), "authSecretId": "a"}},
                          resolve_secret={"a": ADMIN_TOKEN}.__getitem__)
    key = rotator.generate(ctx)
    rotator.test(ctx, key)
    assert key in keys.live and server.calls("/v1/account") == []


def test_a_run_resumed_after_the_key_was_issued_stores_that_key_and_leaves_no_orphan(
        provider: tuple[LoopbackServer, KeyProvider], api_server: str, root_token: str) -> None:
    server, keys = provider
    api = Api(api_server, root_token)
    secret_id, admin_id = f"payments/{unique('idem')}", f"payments/{unique('idem-admin')}"
    assert api.store(admin_id, ADMIN_TOKEN, type="api_key").status_code == 201
    first = "sk_live_" + secrets.token_hex(16)
    keys.live.add(first)
    assert api.store(secret_id, first, type="api_key").status_code == 201
    rotation = {"strategy": "immediate", "retireAfter": "0s",
                "provider": {"url": server.url("/keys"), "revokeUrl": server.url("/keys/revoke"),
                             "checkUrl": server.url("/v1/account"), "authSecretId": admin_id}}
    answer = api.http.put(secret_url(secret_id, "config"), json={"rotation": rotation})
    assert answer.status_code == 200, answer.text
    clock = FrozenClock(datetime.now(UTC))

    with installed(ROTATOR):  # the built-in rotator, whatever another test registered
        dying = engine_at(clock, "dying-idempotent", crash_at("create:generated"))
        with pytest.raises(Crash):
            dying.drive(dying.start(secret_id))
        assert len(keys.minted) == 1, "the provider issued a key, then the worker died before storing it"
        assert served(api, secret_id) == (1, first)

        recovering = engine_at(clock, "recovering-idempotent")
        for _ in range(6):
            clock.advance(LEASE_SECONDS + 10)
            tick(engine=recovering, respect_interval=False)
            [run] = recovering.runs.recent(secret_id, 5)
            if run.step is RunStep.DONE:
                break

    assert (run.status, run.step) == (RunStatus.COMPLETED, RunStep.DONE), run.history
    assert len(server.calls("/keys")) == 2, "the resumed run asked the provider again"
    assert len(keys.minted) == 1, f"the provider minted {len(keys.minted)} keys for one rotation"
    [issued] = keys.minted
    assert served(api, secret_id) == (2, issued), "CURRENT is the key issued before the crash"
    assert keys.live == {issued}, "the old key is revoked and no second key was left valid"
