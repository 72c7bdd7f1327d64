"""``jwt_token`` rotation: a new signing key, tested by signing and verifying a token.

Options: ``algorithm`` (``ES256`` by default; ``ES384``, ``RS256``..``PS512``, ``EdDSA`` or
``HS256``/``HS384``/``HS512``), ``keySize`` for RSA (default 3072 bits). Without ``algorithm`` the
algorithm of the current key is kept.

The new value has the shape :mod:`chalicelib.secret_types.jwt_token` accepts:
``{"alg": "ES256", "kid": "<RFC 7638 thumbprint>", "privateKey": "<PKCS#8 PEM>"}`` or, for HMAC,
``{"alg": "HS256", "kid": ..., "key": "<random, used as its UTF-8 bytes>"}``. A secret that holds a
bare PEM key gets a bare PEM key again, so its readers keep working.

Nothing is applied or revoked at a provider: verifiers learn the keys from
``GET /jwks/{secretId}`` (:func:`public_jwk`), which publishes the public halves of the versions
labelled ``CURRENT``, ``PENDING`` and ``PREVIOUS``. A key stops being published when it loses its
last label. HMAC keys are never published.

Example::

    ctx = RotationContext(secret_id="auth/signing", secret_type=SecretType.JWT_TOKEN,
                          config={"algorithm": "EdDSA"})
    value = ROTATOR.generate(ctx)
    ROTATOR.test(ctx, value)
    public_jwk(value)  # {"kty": "OKP", "crv": "Ed25519", "x": ..., "kid": ..., "use": "sig", "alg": "EdDSA"}
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from chalicelib.errors import InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.rotation.rotators._common import RotationConfigInvalid, checked, choice, positive_int, refuse_current
from chalicelib.rotation.rotators.base import RotationContext, RotationNotSupported, RotationTestFailed
from chalicelib.secret_types.base import load_pem_key, looks_like_json_object
from chalicelib.secret_types.jwt_token import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS, RSA_ALGORITHMS

ALGORITHMS = (*ASYMMETRIC_ALGORITHMS, *HMAC_ALGORITHMS)
DEFAULT_ALGORITHM = "ES256"
DEFAULT_RSA_BITS = 3072
_HMAC_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}
_EC_ALGORITHM = {"secp256r1": "ES256", "secp384r1": "ES384"}


@dataclass(frozen=True)
class SigningKey:
    """A parsed ``jwt_token`` signing key. ``alg`` is None for a bare RSA PEM (any of RS*/PS*)."""

    alg: str | None
    kid: str | None
    private_key: PrivateKeyTypes | None = None
    hmac_key: bytes | None = None
    bare_pem: bool = False

    def public_key(self) -> PublicKeyTypes | None:
        return None if self.private_key is None else self.private_key.public_key()


class JwtSigningKeyRotator:
    """Makes a new signing key of the configured (or current) algorithm and proves it signs."""

    secret_type = SecretType.JWT_TOKEN

    def check_config(self, config: dict[str, Any]) -> None:
        choice(config, "algorithm", ALGORITHMS, None)
        positive_int(config, "keySize", DEFAULT_RSA_BITS, minimum=2048, maximum=8192)

    def generate(self, ctx: RotationContext) -> str:
        self.check_config(ctx.config)
        current = _current_key(ctx)
        alg = ctx.config.get("algorithm") or (current.alg if current else None) or _implied(current)
        if alg in HMAC_ALGORITHMS:
            key = secrets.token_urlsafe(_HMAC_BYTES[alg])
            return _json({"alg": alg, "kid": thumbprint(_oct_jwk(key.encode())), "key": key})
        private_key = _new_private_key(alg, int(ctx.config.get("keySize") or DEFAULT_RSA_BITS))
        pem = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
        if current is not None and current.bare_pem:
            return pem
        return _json({"alg": alg, "kid": thumbprint(_public_jwk_of(private_key.public_key())), "privateKey": pem})

    def apply(self, ctx: RotationContext, new_value: str) -> None:
        """Nothing to do: verifiers learn the new public key from the JWKS route."""

    def test(self, ctx: RotationContext, new_value: str) -> None:
        checked(SecretType.JWT_TOKEN, new_value)
        try:
            key = parse_signing_key(new_value)
        except (InvalidSecretValue, RotationNotSupported):
            raise RotationTestFailed("the new jwt_token value is not a signing key") from None
        _check_kid(key)
        _sign_and_verify(key, ctx.secret_id)

    def revoke(self, ctx: RotationContext, old_value: str) -> None:
        """Nothing to do at a provider: the old key leaves the JWKS when it loses its last label."""
        refuse_current(ctx, old_value)


def parse_signing_key(value: str) -> SigningKey:
    """Read a PEM or JSON signing key; a compact JWT (a bearer token, not a key) is not supported."""
    stripped = value.strip()
    if stripped.startswith("-----BEGIN"):
        private_key = load_pem_key(stripped, "the jwt_token private key")
        return SigningKey(alg=_implied_from_key(private_key), kid=None, private_key=private_key, bare_pem=True)
    if not looks_like_json_object(value):
        raise RotationNotSupported("a jwt_token holding a JWT (not a signing key) cannot be rotated by v-secure")
    try:
        obj = json.loads(value)
    except ValueError:
        raise InvalidSecretValue("a jwt_token JSON key is not valid JSON") from None
    alg, kid = obj.get("alg"), obj.get("kid")
    kid = kid if isinstance(kid, str) and kid else None
    if alg in HMAC_ALGORITHMS and isinstance(obj.get("key"), str):
        return SigningKey(alg=alg, kid=kid, hmac_key=obj["key"].encode())
    if alg in ASYMMETRIC_ALGORITHMS and isinstance(obj.get("privateKey"), str):
        private_key = load_pem_key(obj["privateKey"], "the jwt_token private key")
        return SigningKey(alg=alg, kid=kid, private_key=private_key)
    raise InvalidSecretValue("a jwt_token JSON key needs 'alg' with 'key' (HMAC) or 'privateKey'")


def public_jwk(value: str) -> dict[str, Any] | None:
    """The public JWK of a signing-key value (``kid``, ``use`` and ``alg`` set), or None for HMAC keys.

    ``kid`` is the key's RFC 7638 thumbprint unless the value names its own ``kid``.
    """
    key = parse_signing_key(value)
    public = key.public_key()
    if public is None:
        return None
    jwk = _public_jwk_of(public)
    jwk.update(kid=key.kid or thumbprint(jwk), use="sig")
    if key.alg is not None:
        jwk["alg"] = key.alg
    return jwk


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url without padding) over the required members."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"),
                "oct": ("k", "kty")}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def _current_key(ctx: RotationContext) -> SigningKey | None:
    if ctx.current_value is None:
        return None
    try:
        return parse_signing_key(ctx.current_value)
    except InvalidSecretValue:
        return None  # an unreadable current value does not stop a rotation to a fresh key


def _implied(current: SigningKey | None) -> str:
    if current is not None and isinstance(current.private_key, rsa.RSAPrivateKey):
        return "RS256"
    return DEFAULT_ALGORITHM


def _implied_from_key(key: PrivateKeyTypes) -> str | None:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _EC_ALGORITHM.get(key.curve.name)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return None


def _new_private_key(alg: str, rsa_bits: int) -> PrivateKeyTypes:
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg]())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg in RSA_ALGORITHMS:
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise RotationConfigInvalid(f"rotation option 'algorithm' must be one of {', '.join(ALGORITHMS)}")


def _public_jwk_of(public: PublicKeyTypes) -> dict[str, Any]:
    if isinstance(public, rsa.RSAPublicKey):
        return dict(RSAAlgorithm.to_jwk(public, as_dict=True))
    if isinstance(public, ec.EllipticCurvePublicKey):
        return dict(ECAlgorithm.to_jwk(public, as_dict=True))
    if isinstance(public, ed25519.Ed25519PublicKey):
        return dict(OKPAlgorithm.to_jwk(public, as_dict=True))
    raise InvalidSecretValue("the jwt_token key type has no JWK form here")


def _oct_jwk(key: bytes) -> dict[str, Any]:
    return {"kty": "oct", "k": _b64url(key)}


def _check_kid(key: SigningKey) -> None:
    if key.kid is None:
        return
    public = key.public_key()
    expected = thumbprint(_public_jwk_of(public)) if public is not None else thumbprint(
        _oct_jwk(key.hmac_key or b""))
    if key.kid != expected:
        raise RotationTestFailed("the new key's kid is not its RFC 7638 thumbprint")


def _sign_and_verify(key: SigningKey, secret_id: str) -> None:
    alg = key.alg or "RS256"
    now = int(time.time())
    claims = {"iss": "v-secure", "sub": secret_id, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
    signing: Any = key.private_key if key.private_key is not None else key.hmac_key
    verifying: Any = key.public_key() if key.private_key is not None else key.hmac_key
    try:
        token = jwt.encode(claims, signing, algorithm=alg, headers={"kid": key.kid} if key.kid else None)
        decoded = jwt.decode(token, verifying, algorithms=[alg], options={"require": ["exp", "iat"]})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise RotationTestFailed(f"a token signed with the new key did not verify ({alg})") from None
    if decoded.get("jti") != claims["jti"]:
        raise RotationTestFailed("a token signed with the new key verified with different claims")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


ROTATOR = JwtSigningKeyRotator()
