"""The jwt_token rotator and ``GET /jwks/{secretId}`` over real HTTP: a verifier that fetches the JWK set
(PyJWT's ``PyJWKClient``) accepts tokens signed with the old and the new key after a rotation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import quote

import httpx
import jwt
import pytest

from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationTestFailed
from chalicelib.rotation.rotators.jwt_token import ROTATOR, JwtSigningKeyRotator, public_jwk
from tests.integration.helpers import Api, secret_url, unique
from tests.rotator_support import rotate_like_engine

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


@pytest.fixture(scope="module")
def jwks_server(local_aws: str) -> Iterator[str]:
    """``app.py`` served with the JWKS blueprint (registered here until app.py registers it itself)."""
    from chalicelib.api.jwks import jwks_api
    from chalicelib.local.server import load_app, start_api_server

    app = load_app()
    if "/jwks/{secret_id}" not in app.routes:
        app.register_blueprint(jwks_api)
    server = start_api_server(app, "127.0.0.1", 0)
    try:
        yield server.url
    finally:
        server.stop()


def jwks_url(base: str, secret_id: str) -> str:
    return f"{base}/jwks/{quote(secret_id, safe='')}"


def sign(value: str, subject: str) -> str:
    key = json.loads(value)
    return jwt.encode({"sub": subject}, key["privateKey"], algorithm=key["alg"], headers={"kid": key["kid"]})


class WrongKid(JwtSigningKeyRotator):
    def generate(self, ctx: RotationContext) -> str:
        return json.dumps({**json.loads(super().generate(ctx)), "kid": "stale-kid"})


def test_verifiers_accept_old_and_new_keys_after_a_rotation(jwks_server: str, root_token: str) -> None:
    api = Api(jwks_server, root_token)
    secret_id = f"auth/{unique('signing')}"
    ctx = RotationContext(secret_id=secret_id, secret_type=SecretType.JWT_TOKEN, config={"algorithm": "ES256"})
    first = ROTATOR.generate(ctx)
    assert api.store(secret_id, first, type="jwt_token").status_code == 201
    new = rotate_like_engine(ROTATOR, replace(ctx, current_value=first), store=lambda v: api.store(secret_id, v))
    assert api.get(secret_url(secret_id, "metadata")).json()["labels"] == {"CURRENT": 2, "PREVIOUS": 1}

    answer = httpx.get(jwks_url(jwks_server, secret_id))  # no token: public keys only
    assert answer.status_code == 200 and "max-age" in answer.headers["cache-control"]
    keys = answer.json()["keys"]
    assert [k["kid"] for k in keys] == [public_jwk(new)["kid"], public_jwk(first)["kid"]]  # type: ignore[index]
    assert all(not PRIVATE_MEMBERS & set(k) for k in keys)
    assert json.loads(new)["privateKey"].splitlines()[1] not in answer.text

    verifier = jwt.PyJWKClient(jwks_url(jwks_server, secret_id), cache_keys=False)
    for value, subject in ((first, "signed-before"), (new, "signed-after")):
        token = sign(value, subject)
        signing_key = verifier.get_signing_key_from_jwt(token)
        assert jwt.decode(token, signing_key.key, algorithms=["ES256"])["sub"] == subject

    with pytest.raises(RotationTestFailed, match="thumbprint"):
        rotate_like_engine(WrongKid(), replace(ctx, current_value=new), store=lambda v: api.store(secret_id, v))
    assert [k["kid"] for k in httpx.get(jwks_url(jwks_server, secret_id)).json()["keys"]] == [
        k["kid"] for k in keys], "a failed test changes neither the secret nor the published keys"


def test_the_route_reveals_nothing_about_other_secrets(jwks_server: str, root_token: str) -> None:
    api = Api(jwks_server, root_token)
    api_key_id, hmac_id = unique("stripe"), unique("hmac")
    assert api.store(api_key_id, "sk_live_0123456789abcdef", type="api_key").status_code == 201
    hmac_value = ROTATOR.generate(RotationContext(hmac_id, SecretType.JWT_TOKEN, {"algorithm": "HS256"}))
    assert api.store(hmac_id, hmac_value, type="jwt_token").status_code == 201
    bodies = []
    for secret_id in (api_key_id, hmac_id, unique("missing")):
        answer = httpx.get(jwks_url(jwks_server, secret_id))
        assert answer.status_code == 404
        bodies.append(answer.json()["code"])
        assert "sk_live" not in answer.text and json.loads(hmac_value)["key"] not in answer.text
    assert set(bodies) == {"not_found"}
