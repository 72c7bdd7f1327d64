"""``GET /jwks/{secretId}``: the public keys of a ``jwt_token`` signing-key secret, as a JWK set.

The set holds the versions labelled ``CURRENT``, ``PENDING`` and ``PREVIOUS`` (and both sides of a
rollout in progress), so verifiers accept tokens signed with the old or the new key while a
rotation rolls out. ``kid`` is each key's RFC 7638 thumbprint (or the ``kid`` the value names).

The route needs no token: it publishes public keys only. It answers 404 alike for a secret that
does not exist, is not a ``jwt_token``, is deleted, or has no public key (HMAC keys are never
published), so it tells nothing about other secrets. Decrypting the keys is a system read, audited
once per change of the secret (the set is cached per secret revision); if the audit log cannot be
written the route answers 503 and publishes nothing.

Example::

    GET /jwks/auth%2Fsigning
    {"keys": [{"kty": "EC", "crv": "P-256", "x": "...", "y": "...", "kid": "NzbLsX...", "use": "sig",
               "alg": "ES256"}]}
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from chalice import Blueprint, Response
from pydantic import BaseModel

from chalicelib.access_control.context import system_draft
from chalicelib.api.http import endpoint, path_id, request_id, source_ip
from chalicelib.api.openapi import register_operations
from chalicelib.audit.events import Action
from chalicelib.errors import InvalidSecretValue, NotFound
from chalicelib.models import SecretType, valid_secret_id
from chalicelib.ports import KeyProvider
from chalicelib.rotation.rotators.base import RotationNotSupported
from chalicelib.rotation.rotators.jwt_token import public_jwk
from chalicelib.singleton import ProcessSingleton
from chalicelib.vault.encryption import Envelope
from chalicelib.vault.records import CURRENT, PENDING, PREVIOUS, SecretRecord
from chalicelib.vault.retrieval import decrypt_value

jwks_api = Blueprint(__name__)
PUBLISHED_LABELS = (CURRENT, PENDING, PREVIOUS)
CACHE_ENTRIES = 512
MAX_AGE_SECONDS = 60


class JwkSet(BaseModel):
    """RFC 7517 JWK set."""

    keys: list[dict[str, Any]]


class JwksPublisher:
    """Builds the JWK set of a secret from its labelled versions; ``repo`` is the secrets repository.

    Example::

        JwksPublisher(service.repo, service.keys).jwk_set("auth/signing", source_ip=None, request_id=None)
    """

    def __init__(self, repo: Any, keys: KeyProvider) -> None:
        self.repo = repo
        self.keys = keys
        self._cache: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def jwk_set(self, secret_id: str, *, source_ip: str | None, request_id: str | None) -> dict[str, Any]:
        not_found = NotFound(f"no JWK set for '{secret_id}'")
        record = self.repo.get(secret_id, consistent=False) if valid_secret_id(secret_id) else None
        if record is None or record.type != SecretType.JWT_TOKEN.value or record.deleted or record.destroyed:
            raise not_found
        with self._lock:
            cached = self._cache.get(secret_id)
        if cached is not None and cached[0] == record.rev:
            return cached[1]
        versions = published_versions(record)
        keys = [jwk for version in versions if (jwk := self._public_jwk(record, version)) is not None]
        if not keys:
            raise not_found
        self.repo.record_event(system_draft(
            Action.SECRET_READ, secret_id=secret_id, source_ip=source_ip, request_id=request_id,
            compliance_standards=record.compliance, details={"purpose": "jwks", "versions": versions}))
        answer = {"keys": keys}
        with self._lock:
            self._cache[secret_id] = (record.rev, answer)
            self._cache.move_to_end(secret_id)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return answer

    def _public_jwk(self, record: SecretRecord, version: int) -> dict[str, Any] | None:
        envelope = self._envelope(record, version)
        if envelope is None:
            return None  # destroyed
        value = decrypt_value(envelope, record.secret_id, version, record.type, self.keys)
        try:
            return public_jwk(value)
        except (InvalidSecretValue, RotationNotSupported):
            return None  # a bearer JWT or an unreadable key: nothing to publish

    def _envelope(self, record: SecretRecord, version: int) -> Envelope | None:
        if version == record.current_version and record.current is not None:
            return record.current
        for envelope in record.staged.values():
            if envelope.ctx.version == version:
                return envelope
        stored = self.repo.get_version(record.secret_id, version)
        return stored.envelope if stored is not None and stored.destroyed_at is None else None


def published_versions(record: SecretRecord) -> list[int]:
    """CURRENT first, then PENDING, PREVIOUS and the two sides of a rollout, without repeats."""
    versions = [record.labels[label] for label in PUBLISHED_LABELS if label in record.labels]
    rollout = record.rollout or {}
    versions += [int(rollout[side]) for side in ("new_version", "old_version") if rollout.get(side)]
    return list(dict.fromkeys(versions))


def _build_publisher() -> JwksPublisher:
    from chalicelib.vault.service import get_vault_service

    service = get_vault_service()
    return JwksPublisher(service.repo, service.keys)


_publisher = ProcessSingleton(_build_publisher)


def get_jwks_publisher() -> JwksPublisher:
    return _publisher.get()


def reset_jwks_publisher() -> None:
    _publisher.reset()


@jwks_api.route("/jwks/{secret_id}", methods=["GET"])
@endpoint(public=True)
def jwks(secret_id: str) -> Response:
    answer = get_jwks_publisher().jwk_set(path_id(secret_id), source_ip=source_ip(), request_id=request_id())
    return Response(status_code=200, body=answer, headers={"Cache-Control": f"public, max-age={MAX_AGE_SECONDS}"})


register_operations([("get", "/jwks/{secretId}", "Public signing keys of a jwt_token secret (no token needed)",
                      None, JwkSet, 200)])
