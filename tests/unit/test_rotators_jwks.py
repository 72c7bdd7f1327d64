"""The JWK set publisher behind ``GET /jwks/{secretId}``, over the fake repository and key provider."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from chalicelib.audit.events import Action
from chalicelib.errors import AuditUnavailable, NotFound
from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext
from chalicelib.rotation.rotators.jwt_token import ROTATOR, public_jwk
from chalicelib.vault.encryption import EnvelopeContext, seal
from chalicelib.vault.records import CURRENT, PENDING, PREVIOUS, SecretRecord, VersionRecord
from tests.fakes import FakeKeyProvider, FakeRepository

NOW = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


def new_key(alg: str) -> str:
    return ROTATOR.generate(RotationContext("auth", SecretType.JWT_TOKEN, {"algorithm": alg, "keySize": 2048}))


class Vault:
    def __init__(self) -> None:
        self.repo = FakeRepository()
        self.keys = FakeKeyProvider()

    def put(self, secret_id: str, values: list[str], labels: dict[str, int], *, type: str = "jwt_token",
            staged: tuple[str, ...] = (), **fields: Any) -> SecretRecord:
        envelopes = {}
        for number, value in enumerate(values, start=1):
            envelope = seal(value.encode(), EnvelopeContext(secret_id=secret_id, version=number, type=type), self.keys)
            envelopes[number] = envelope
            self.repo.versions[(secret_id, number)] = VersionRecord(secret_id=secret_id, version=number,
                                                                    created_at=NOW, created_by="root",
                                                                    envelope=envelope)
        current = labels[CURRENT]
        record = SecretRecord(secret_id=secret_id, type=type, current_version=current, latest_version=len(values),
                              labels=labels, created_at=NOW, created_by="root", updated_at=NOW,
                              current=envelopes[current], rev=fields.pop("rev", 1),
                              staged={label: envelopes[labels[label]] for label in staged}, **fields)
        self.repo.records[secret_id] = record
        return record


@pytest.fixture
def vault() -> Vault:
    return Vault()


def publisher(vault: Vault) -> Any:
    from chalicelib.api.jwks import JwksPublisher

    return JwksPublisher(vault.repo, vault.keys)


def test_current_pending_and_previous_keys_are_published_without_private_parts(vault: Vault) -> None:
    values = [new_key("ES256"), new_key("RS256"), new_key("EdDSA"), new_key("ES384")]
    vault.put("auth", values, {PREVIOUS: 2, CURRENT: 3, PENDING: 4}, staged=(PENDING,))
    answer = publisher(vault).jwk_set("auth", source_ip="10.0.0.9", request_id="r-1")
    kids = [key["kid"] for key in answer["keys"]]
    assert kids == [public_jwk(values[2])["kid"], public_jwk(values[3])["kid"],  # type: ignore[index]
                    public_jwk(values[1])["kid"]]  # type: ignore[index]
    assert all(not PRIVATE_MEMBERS & set(key) for key in answer["keys"])
    assert all(value.split('"privateKey":"')[1][:40] not in str(answer) for value in values)
    jwk_set = jwt.PyJWKSet.from_dict(answer)
    for value in values[1:]:
        parsed = json.loads(value)
        token = jwt.encode({"sub": "u"}, parsed["privateKey"], algorithm=parsed["alg"], headers={"kid": parsed["kid"]})
        assert jwt.decode(token, jwk_set[parsed["kid"]].key, algorithms=[parsed["alg"]])["sub"] == "u"
    event = vault.repo.events[-1]
    assert (event.action, event.actor, event.actor_type, event.secret_id) == (Action.SECRET_READ, "v-secure",
                                                                             "system", "auth")
    assert event.details == {"purpose": "jwks", "versions": [3, 4, 2]} and event.source_ip == "10.0.0.9"


def test_both_sides_of_a_rollout_are_published(vault: Vault) -> None:
    values = [new_key("ES256"), new_key("ES256")]
    vault.put("auth", values, {CURRENT: 1}, rollout={"old_version": 1, "new_version": 2, "percent": 5})
    answer = publisher(vault).jwk_set("auth", source_ip=None, request_id=None)
    assert len(answer["keys"]) == 2


def test_the_set_is_cached_per_revision_and_audited_once_per_change(vault: Vault) -> None:
    vault.put("auth", [new_key("ES256")], {CURRENT: 1})
    jwks = publisher(vault)
    first = jwks.jwk_set("auth", source_ip=None, request_id=None)
    decrypts, events = vault.keys.decrypted, len(vault.repo.events)
    assert jwks.jwk_set("auth", source_ip=None, request_id=None) == first
    assert (vault.keys.decrypted, len(vault.repo.events)) == (decrypts, events)
    vault.put("auth", [new_key("ES256"), new_key("ES256")], {CURRENT: 2, PREVIOUS: 1}, rev=2)
    assert len(jwks.jwk_set("auth", source_ip=None, request_id=None)["keys"]) == 2
    assert len(vault.repo.events) == events + 1


@pytest.mark.parametrize("case", ["missing", "api_key", "deleted", "hmac", "bad id"])
def test_not_found_alike_for_everything_but_a_published_jwt_key(vault: Vault, case: str) -> None:
    vault.put("api", ["sk_live_0123456789"], {CURRENT: 1}, type="api_key")
    vault.put("gone", [new_key("ES256")], {CURRENT: 1}, deletion={"scheduled_for": "2026-02-01T00:00:00+00:00"})
    vault.put("hmac", [new_key("HS256")], {CURRENT: 1})
    secret_id = {"missing": "nope", "api_key": "api", "deleted": "gone", "hmac": "hmac", "bad id": "../x"}[case]
    with pytest.raises(NotFound) as raised:
        publisher(vault).jwk_set(secret_id, source_ip=None, request_id=None)
    assert raised.value.message == f"no JWK set for '{secret_id}'"
    assert vault.repo.events == []


def test_nothing_is_published_when_the_audit_log_fails(vault: Vault) -> None:
    vault.put("auth", [new_key("ES256")], {CURRENT: 1})
    vault.repo.fail_audit = True
    jwks = publisher(vault)
    with pytest.raises(AuditUnavailable):
        jwks.jwk_set("auth", source_ip=None, request_id=None)
    vault.repo.fail_audit = False
    assert len(jwks.jwk_set("auth", source_ip=None, request_id=None)["keys"]) == 1
    assert len(vault.repo.events) == 1
