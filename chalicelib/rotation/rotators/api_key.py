"""``api_key`` rotation through provider HTTP hooks, tested by the spec's "HTTP check".

Options (the secret's ``rotation.provider`` block):

* ``url`` (required): ``POST {"secretId": ...}`` answers the new key, as JSON ``{"key": ...}``
  (``keyField`` names another field) or as plain text. Within a rotation run the request carries
  ``Idempotency-Key: <secret id>/<rotation id>/create`` (see below);
* ``revokeUrl``: ``POST {"secretId": ..., "key": <old key>}`` makes the old key useless
  (2xx, or 404 for a key the provider no longer knows). Without it, revoke does nothing:
  the provider is expected to expire keys itself;
* ``checkUrl``: the HTTP check. It is called (``checkMethod``, default ``GET``) with the new key
  as ``Authorization: Bearer <key>``, or as the raw value of ``checkHeader`` when one is named,
  and must answer 2xx. Without it, the test only validates the key's shape;
* ``authSecretId``: a secret holding the provider's admin token, sent as ``Authorization: Bearer``
  to ``url`` and ``revokeUrl``;
* ``timeoutSeconds`` (default 10).

The new key is created by ``generate`` (the provider issues it), so ``apply`` has nothing left to do.
If the worker dies after the provider issued a key but before the engine stored it, the resumed run
(same rotation id) asks again with the same ``Idempotency-Key`` (the header Stripe and the IETF draft
use): a provider that honours it answers with the key it already issued, so that key is the one stored,
later tested and eventually revoked. A provider that ignores the header issues a second key, and the
first one is left for the provider to expire. Direct calls outside the engine (no rotation id) send no
such header.
A check answering anything else than 2xx below 500 fails the test (:class:`RotationTestFailed`);
a network error or a 5xx is :class:`~chalicelib.errors.DependencyUnavailable`, which the engine retries.

Example::

    config = {"provider": {"url": "https://keys.example/new", "revokeUrl": "https://keys.example/revoke",
                           "checkUrl": "https://api.example/v1/me", "authSecretId": "stripe/admin"}}
    key = ROTATOR.generate(ctx)
    ROTATOR.test(ctx, key)
"""

from __future__ import annotations

from typing import Any

import httpx

from chalicelib.errors import DependencyUnavailable, InvalidSecretValue
from chalicelib.logging import logger
from chalicelib.models import SecretType
from chalicelib.rotation.rotators._common import (
    checked,
    choice,
    idempotency_headers,
    optional_text,
    positive_int,
    refuse_current,
    required_text,
    resolve,
    section,
)
from chalicelib.rotation.rotators._http import HttpHook, bearer, check_url, host_of, json_object
from chalicelib.rotation.rotators.base import RotationContext, RotationTestFailed
from chalicelib.secret_types import validate_value

PROVIDER = "provider"
CHECK_METHODS = ("GET", "POST", "HEAD")


class ApiKeyRotator:
    """Asks a provider for a new key, checks it against an API, and revokes the old one."""

    secret_type = SecretType.API_KEY

    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self._transport = transport

    def check_config(self, config: dict[str, Any]) -> None:
        """Raise :class:`RotationConfigInvalid` if the options cannot work (called when they are set)."""
        provider = section(config, PROVIDER)
        check_url(required_text(provider, "url", PROVIDER), "provider.url")
        for option in ("revokeUrl", "checkUrl"):
            url = optional_text(provider, option, PROVIDER)
            if url is not None:
                check_url(url, f"provider.{option}")
        choice(provider, "checkMethod", CHECK_METHODS, "GET", PROVIDER)
        optional_text(provider, "checkHeader", PROVIDER)
        optional_text(provider, "keyField", PROVIDER)
        optional_text(provider, "authSecretId", PROVIDER)
        positive_int(provider, "timeoutSeconds", 10, maximum=120, where=PROVIDER)

    def generate(self, ctx: RotationContext) -> str:
        self.check_config(ctx.config)
        provider = section(ctx.config, PROVIDER)
        url = provider["url"]
        answer = self._hook(provider, "api_key provider").send(
            "POST", url, headers={**self._admin_headers(ctx, provider), **idempotency_headers(ctx, "create")},
            json={"secretId": ctx.secret_id})
        if not answer.is_success:
            raise DependencyUnavailable("api_key provider",
                                        f"{host_of(url)} answered HTTP {answer.status_code} to the key request")
        key = _key_from(answer, provider.get("keyField") or "key")
        try:
            validate_value(SecretType.API_KEY, key)
        except InvalidSecretValue as error:
            raise DependencyUnavailable("api_key provider",
                                        f"{host_of(url)} answered a key that is not valid: {error.message}") from None
        return key

    def apply(self, ctx: RotationContext, new_value: str) -> None:
        """Nothing to do: the provider created the key when it issued it."""

    def test(self, ctx: RotationContext, new_value: str) -> None:
        checked(SecretType.API_KEY, new_value)
        self.check_config(ctx.config)
        provider = section(ctx.config, PROVIDER)
        check = provider.get("checkUrl")
        if check is None:
            return
        header = provider.get("checkHeader")
        headers = {header: new_value} if header else bearer(new_value)
        answer = self._hook(provider, "api_key check").send(provider.get("checkMethod") or "GET", check,
                                                            headers=headers)
        if not answer.is_success:
            raise RotationTestFailed(f"the HTTP check at {host_of(check)} answered {answer.status_code} "
                                     "with the new key")

    def revoke(self, ctx: RotationContext, old_value: str) -> None:
        refuse_current(ctx, old_value)
        self.check_config(ctx.config)
        provider = section(ctx.config, PROVIDER)
        url = provider.get("revokeUrl")
        if url is None:
            logger.info("api_key revoke: no revokeUrl configured", extra={"secret_id": ctx.secret_id})
            return
        answer = self._hook(provider, "api_key provider").send(
            "POST", url, headers=self._admin_headers(ctx, provider),
            json={"secretId": ctx.secret_id, "key": old_value})
        if not answer.is_success and answer.status_code != 404:
            raise DependencyUnavailable("api_key provider",
                                        f"{host_of(url)} answered HTTP {answer.status_code} to the revocation")

    def _hook(self, provider: dict[str, Any], dependency: str) -> HttpHook:
        return HttpHook(dependency, transport=self._transport,
                        timeout=float(provider.get("timeoutSeconds") or 10))

    @staticmethod
    def _admin_headers(ctx: RotationContext, provider: dict[str, Any]) -> dict[str, str]:
        secret_id = provider.get("authSecretId")
        return bearer(resolve(ctx, secret_id, "provider.authSecretId")) if secret_id else {}


def _key_from(answer: httpx.Response, field: str) -> str:
    body = json_object(answer)
    if body is not None:
        key = body.get(field)
        if not isinstance(key, str):
            raise DependencyUnavailable("api_key provider", f"the answer has no string field '{field}'")
        return key
    if answer.headers.get("content-type", "").startswith("application/json"):
        raise DependencyUnavailable("api_key provider", "the answer is JSON but not an object")
    return answer.text.strip()


ROTATOR = ApiKeyRotator()
