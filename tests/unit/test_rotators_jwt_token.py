"""The jwt_token rotator: key generation per algorithm, sign/verify test, JWKs and RFC 7638 thumbprints."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationNotSupported, RotationTestFailed
from chalicelib.rotation.rotators._common import RevokeRefused, RotationConfigInvalid
from chalicelib.rotation.rotators.jwt_token import ROTATOR, public_jwk, thumbprint
from chalicelib.secret_types import validate_value

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


def context(config: dict[str, object] | None = None, current: str | None = None) -> RotationContext:
    return RotationContext(secret_id="auth/signing", secret_type=SecretType.JWT_TOKEN, config=config or {},
                           current_value=current)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "RS256", "PS256", "EdDSA", "HS256", "HS512"])
def test_generate_validates_and_passes_its_test(alg: str) -> None:
    ctx = context({"algorithm": alg, "keySize": 2048})
    value = ROTATOR.generate(ctx)
    facts = validate_value(SecretType.JWT_TOKEN, value)
    assert facts.algorithm == alg and facts.format == "json"
    ROTATOR.apply(ctx, value)
    ROTATOR.test(ctx, value)
    assert ROTATOR.generate(ctx) != value


def test_default_is_es256_and_the_current_algorithm_is_kept() -> None:
    first = ROTATOR.generate(context())
    assert json.loads(first)["alg"] == "ES256"
    eddsa = ROTATOR.generate(context({"algorithm": "EdDSA"}))
    assert json.loads(ROTATOR.generate(context(current=eddsa)))["alg"] == "EdDSA"
    hmac = ROTATOR.generate(context({"algorithm": "HS384"}))
    assert json.loads(ROTATOR.generate(context(current=hmac)))["alg"] == "HS384"


def test_a_bare_pem_key_is_replaced_by_a_bare_pem_key_of_the_same_kind() -> None:
    current = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    new = ROTATOR.generate(context({"keySize": 2048}, current=current))
    assert new.startswith("-----BEGIN PRIVATE KEY-----") and new != current
    facts = validate_value(SecretType.JWT_TOKEN, new)
    assert (facts.format, facts.key_type, facts.key_size) == ("pem", "rsa", 2048)
    ROTATOR.test(context(), new)


def test_public_jwk_publishes_no_private_member_and_kid_is_the_thumbprint() -> None:
    for alg in ("ES256", "RS256", "EdDSA"):
        value = ROTATOR.generate(context({"algorithm": alg, "keySize": 2048}))
        jwk = public_jwk(value)
        assert jwk is not None and not PRIVATE_MEMBERS & set(jwk)
        assert jwk["kid"] == thumbprint(jwk) == json.loads(value)["kid"]
        assert (jwk["use"], jwk["alg"]) == ("sig", alg)
    assert public_jwk(ROTATOR.generate(context({"algorithm": "HS256"}))) is None


def test_tokens_signed_with_the_private_key_verify_with_the_published_jwk() -> None:
    value = ROTATOR.generate(context({"algorithm": "ES256"}))
    private_pem = json.loads(value)["privateKey"]
    jwk = public_jwk(value)
    assert jwk is not None
    token = jwt.encode({"sub": "x"}, private_pem, algorithm="ES256", headers={"kid": jwk["kid"]})
    key = jwt.PyJWKSet.from_dict({"keys": [jwk]})[jwk["kid"]]
    assert jwt.decode(token, key.key, algorithms=["ES256"])["sub"] == "x"


def test_rfc7638_example_thumbprint() -> None:
    jwk = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
           "n": ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
                 "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicA"
                 "taSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPks"
                 "INHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")}
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_a_kid_that_is_not_the_thumbprint_fails_the_test() -> None:
    value = json.loads(ROTATOR.generate(context()))
    value["kid"] = "not-the-thumbprint"
    with pytest.raises(RotationTestFailed, match="thumbprint"):
        ROTATOR.test(context(), json.dumps(value))


def test_a_key_that_does_not_suit_its_alg_fails_the_test() -> None:
    value = json.loads(ROTATOR.generate(context({"algorithm": "ES256"})))
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    value["privateKey"] = other.decode()
    with pytest.raises(RotationTestFailed, match="not a valid jwt_token"):
        ROTATOR.test(context(), json.dumps(value))


def test_a_bearer_jwt_is_not_a_signing_key() -> None:
    token = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")
    with pytest.raises(RotationTestFailed, match="not a signing key"):
        ROTATOR.test(context(), token)
    with pytest.raises(RotationNotSupported):
        ROTATOR.generate(context(current=token))


def test_bad_algorithm_option_and_revoke_of_current() -> None:
    with pytest.raises(RotationConfigInvalid):
        ROTATOR.generate(context({"algorithm": "none"}))
    with pytest.raises(RotationConfigInvalid):
        ROTATOR.generate(context({"algorithm": "RS256", "keySize": 1024}))
    value = ROTATOR.generate(context())
    with pytest.raises(RevokeRefused):
        ROTATOR.revoke(context(current=value), value)
    ROTATOR.revoke(context(current=ROTATOR.generate(context())), value)
