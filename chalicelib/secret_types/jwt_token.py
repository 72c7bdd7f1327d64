"""``jwt_token``: a JWT signing key, or a JWT itself used as a bearer token.

Accepted shapes:

* a PEM private key: EC P-256 (``ES256``), EC P-384 (``ES384``), RSA of 2048 bits or more
  (``RS*``/``PS*``) or Ed25519 (``EdDSA``);
* a JSON HMAC key: ``{"alg": "HS256" | "HS384" | "HS512", "key": "<at least 32 bytes>"}``;
* a JSON asymmetric key: ``{"alg": "ES256" | "ES384" | "RS256" | ... | "EdDSA", "privateKey": "<PEM>"}``;
  the key must suit ``alg``;
* a compact JWT (``header.payload.signature``, base64url) whose header is JSON naming a
  registered ``alg`` other than ``none``. The signature is not verified.

Example::

    JwtTokenHandler().validate('{"alg": "HS256", "key": "' + secrets.token_urlsafe(48) + '"}').algorithm
    # "HS256"
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from chalicelib.clock import Clock, SystemClock
from chalicelib.errors import InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.secret_types.base import (
    ValidatedValue,
    describe_private_key,
    is_expired,
    load_pem_key,
    looks_like_json_object,
    parse_json_object,
    required_str,
)

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
MIN_HMAC_KEY_BYTES = 32
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
ASYMMETRIC_ALGORITHMS = ("ES256", "ES384", *RSA_ALGORITHMS, "EdDSA")
MIN_RSA_BITS = 2048
JWS_ALGORITHMS = frozenset(
    {*HMAC_ALGORITHMS, *ASYMMETRIC_ALGORITHMS, "ES512", "ES256K", "Ed25519", "Ed448"}
)
"""``alg`` values accepted in a compact JWT's header (IANA JWS registry, minus ``none``)."""

_EC_ALGORITHM_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384"}
_COMPACT_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_JSON = "a jwt_token JSON key"
_PEM = "the jwt_token private key"


class JwtTokenHandler:
    """Validates ``jwt_token`` values; ``clock`` decides whether a bearer JWT has expired."""

    type: SecretType = SecretType.JWT_TOKEN

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()

    def validate(self, value: str, *, value_schema: dict[str, Any] | None = None) -> ValidatedValue:
        stripped = value.strip()
        if stripped.startswith("-----BEGIN"):
            return validate_pem_signing_key(stripped)
        if looks_like_json_object(value):
            return validate_json_signing_key(value)
        if _COMPACT_JWT.fullmatch(value):
            return validate_compact_jwt(value, now=self._clock.now())
        raise InvalidSecretValue(
            "a jwt_token must be a PEM private key, a JSON signing-key object "
            "or a compact JWT (header.payload.signature, no whitespace)"
        )


def validate_pem_signing_key(pem: str) -> ValidatedValue:
    """A bare PEM private key; the algorithm is implied by the key where it is unambiguous."""
    key = load_pem_key(pem, _PEM)
    algorithm = _implied_algorithm(key)
    key_type, key_size = describe_private_key(key)
    return ValidatedValue(format="pem", algorithm=algorithm, key_type=key_type, key_size=key_size)


def _implied_algorithm(key: PrivateKeyTypes) -> str | None:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGORITHM_BY_CURVE:
        return _EC_ALGORITHM_BY_CURVE[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, rsa.RSAPrivateKey):
        _check_rsa_size(key)
        return None  # any of RS256..PS512
    raise InvalidSecretValue(
        f"{_PEM} must be EC P-256, EC P-384, RSA of at least {MIN_RSA_BITS} bits, or Ed25519"
    )


def _check_rsa_size(key: rsa.RSAPrivateKey) -> None:
    if key.key_size < MIN_RSA_BITS:
        raise InvalidSecretValue(f"{_PEM} is RSA shorter than {MIN_RSA_BITS} bits")


def validate_json_signing_key(value: str) -> ValidatedValue:
    """``{"alg": "HS*", "key": ...}`` or ``{"alg": "ES256" | "RS256" | "EdDSA" | ..., "privateKey": PEM}``."""
    obj = parse_json_object(value, _JSON)
    alg = required_str(obj, "alg", _JSON)
    if alg in HMAC_ALGORITHMS:
        return _hmac_key(obj, alg)
    if alg in ASYMMETRIC_ALGORITHMS:
        return _asymmetric_key(obj, alg)
    allowed = ", ".join((*HMAC_ALGORITHMS, *ASYMMETRIC_ALGORITHMS))
    raise InvalidSecretValue(f"{_JSON} field 'alg' must be one of {allowed}")


def _hmac_key(obj: dict[str, Any], alg: str) -> ValidatedValue:
    key = required_str(obj, "key", _JSON)
    if len(key.encode()) < MIN_HMAC_KEY_BYTES:
        raise InvalidSecretValue(f"{_JSON} field 'key' must be at least {MIN_HMAC_KEY_BYTES} bytes")
    return ValidatedValue(format="json", algorithm=alg, key_type="hmac")


def _asymmetric_key(obj: dict[str, Any], alg: str) -> ValidatedValue:
    key = load_pem_key(required_str(obj, "privateKey", _JSON), f"{_JSON} field 'privateKey'")
    if not _key_suits(key, alg):
        raise InvalidSecretValue(f"{_JSON} field 'privateKey' is not a key for alg {alg}")
    key_type, key_size = describe_private_key(key)
    return ValidatedValue(format="json", algorithm=alg, key_type=key_type, key_size=key_size)


def _key_suits(key: PrivateKeyTypes, alg: str) -> bool:
    if alg in RSA_ALGORITHMS:
        if isinstance(key, rsa.RSAPrivateKey):
            _check_rsa_size(key)
            return True
        return False
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PrivateKey)
    return isinstance(key, ec.EllipticCurvePrivateKey) and _EC_ALGORITHM_BY_CURVE.get(key.curve.name) == alg


def validate_compact_jwt(token: str, *, now: datetime) -> ValidatedValue:
    """A JWT used as a bearer token: the header must name a registered, non-``none`` ``alg``."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:  # replaced: never surface library text about the token
        raise InvalidSecretValue("a jwt_token JWT must have a base64url-encoded JSON header") from None
    alg = header.get("alg")
    if alg == "none":
        raise InvalidSecretValue("a jwt_token JWT must be signed (alg 'none' is refused)")
    if not isinstance(alg, str) or alg not in JWS_ALGORITHMS:
        raise InvalidSecretValue("a jwt_token JWT header must name a registered JWS 'alg'")
    expires_at = _expiry(token.split(".")[1])
    return ValidatedValue(
        format="jwt", algorithm=alg, expires_at=expires_at, expired=is_expired(expires_at, now)
    )


def _expiry(payload_segment: str) -> datetime | None:
    """The ``exp`` claim, best effort: a payload that is not a JSON claims set has none."""
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload_segment + "=" * (-len(payload_segment) % 4)))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            return datetime.fromtimestamp(exp, UTC)
    except (ValueError, binascii.Error, OverflowError, OSError, RecursionError):
        return None
    return None
