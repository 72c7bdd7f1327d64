"""The contract every secret-type handler follows, and small helpers they share.

A handler checks values of one :class:`~chalicelib.models.SecretType` before they are
encrypted and returns a :class:`ValidatedValue`: non-secret facts worth recording as version
provenance.

Two rules hold for every handler:

* a :class:`ValidatedValue` never contains the secret, nor any part of it;
* an :class:`~chalicelib.errors.InvalidSecretValue` message never echoes the value, nor any part
  of it. Library exceptions are replaced with our own message and suppressed (``from None``),
  never quoted, because their text often embeds the input.

Example::

    class PinHandler:
        type = SecretType.API_KEY

        def validate(self, value: str, *, value_schema: dict[str, Any] | None = None) -> ValidatedValue:
            if not value.isdigit():
                raise InvalidSecretValue("a PIN must contain digits only")
            return ValidatedValue(format="pin")

    register(PinHandler())
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from chalicelib.errors import InvalidSecretValue
from chalicelib.models import SecretType

MAX_JSON_DEPTH = 32
"""JSON values nested deeper than this are refused; no legitimate secret needs more."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatedValue:
    """Non-secret facts about a validated value, recorded with the version it becomes.

    Every field is optional; a handler fills in only what it knows. None may hold the secret
    or a fragment of it.

    Example::

        ValidatedValue(format="openssh", key_type="ed25519", fingerprint="SHA256:kW1...").as_facts()
        # {"format": "openssh", "key_type": "ed25519", "fingerprint": "SHA256:kW1..."}
    """

    format: str | None = None
    """The accepted shape: ``json``, ``url``, ``password``, ``pem``, ``openssh``, ``jwt``, ``bearer``."""
    algorithm: str | None = None
    """JWS algorithm (``ES256``, ``HS512``, ``EdDSA``) or SSH key algorithm (``ssh-ed25519``)."""
    key_type: str | None = None
    """``rsa``, ``ec``, ``ed25519``, ``ed448``, ``dsa`` or ``hmac``."""
    key_size: int | None = None
    """Bits: RSA modulus, EC curve or DSA size."""
    fingerprint: str | None = None
    """``SHA256:<base64, no padding>`` (OpenSSH form) for SSH keys; ``sha256:<hex>`` for certificates."""
    subject: str | None = None
    issuer: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    sans: tuple[str, ...] = ()
    engine: str | None = None
    username: str | None = None
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    token_type: str | None = None
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()
    client_id: str | None = None
    expired: bool | None = None
    """Whether ``not_after`` / ``expires_at`` had already passed at validation time."""

    def as_facts(self) -> dict[str, Any]:
        """The facts that are set, JSON-ready (datetimes as ISO 8601, tuples as lists)."""
        facts: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None or value == ():
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            facts[field.name] = value
        return facts


@runtime_checkable
class SecretTypeHandler(Protocol):
    """Validates values of one secret type.

    Example::

        handler = get_handler(SecretType.SSH_KEY)
        handler.validate(openssh_private_key).fingerprint  # "SHA256:..."
    """

    type: SecretType

    def validate(self, value: str, *, value_schema: dict[str, Any] | None = None) -> ValidatedValue:
        """Return the value's non-secret facts, or raise ``InvalidSecretValue``.

        ``value_schema`` is a JSON Schema; handlers for which it has no meaning ignore it.
        """
        ...


# --- helpers shared by handlers ---------------------------------------------------------------


def has_control_chars(text: str) -> bool:
    """True if ``text`` holds a C0/C1 control character or DEL (tab and newlines included)."""
    return any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in text)


def has_whitespace(text: str) -> bool:
    return any(char.isspace() for char in text)


def looks_like_json_object(value: str) -> bool:
    return value.lstrip().startswith("{")


def parse_json_object(value: str, what: str) -> dict[str, Any]:
    """Parse ``value`` as a JSON object or raise ``InvalidSecretValue`` naming ``what``.

    Example::

        parse_json_object('{"alg": "HS256"}', "a JWT signing key")  # {"alg": "HS256"}
    """
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        raise InvalidSecretValue(f"{what} is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidSecretValue(f"{what} must be a JSON object")
    if _depth(parsed) > MAX_JSON_DEPTH:
        raise InvalidSecretValue(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return parsed


def _depth(node: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(node, dict):
        children = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        return level
    return max((_depth(child, level + 1) for child in children), default=level)


def required_str(obj: dict[str, Any], key: str, what: str) -> str:
    """``obj[key]``, which must be a non-blank string.

    Messages name the key (ours, from the spec), never the content.
    """
    if obj.get(key) is None:
        raise InvalidSecretValue(f"{what} is missing the required field '{key}'")
    return _non_blank(obj[key], key, what)


def optional_str(obj: dict[str, Any], key: str, what: str) -> str | None:
    """``obj[key]`` if present (and then a non-blank string), else ``None``."""
    if obj.get(key) is None:
        return None
    return _non_blank(obj[key], key, what)


def _non_blank(item: Any, key: str, what: str) -> str:
    if not isinstance(item, str) or not item.strip():
        raise InvalidSecretValue(f"{what} field '{key}' must be a non-empty string")
    return item


def load_pem_key(data: str | bytes, what: str) -> PrivateKeyTypes:
    """Load an unencrypted PEM private key; library errors become our own message.

    Example::

        key = load_pem_key(pem_text, "the TLS private key")
    """
    raw = data.encode() if isinstance(data, str) else data
    try:
        return load_pem_private_key(raw, password=None)
    except TypeError:
        raise InvalidSecretValue(
            f"{what} is encrypted; store it unencrypted (v-secure encrypts every value)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidSecretValue(f"{what} is not a readable PEM private key") from None


def describe_private_key(key: PrivateKeyTypes) -> tuple[str, int | None]:
    """``(key_type, key_size)``, e.g. ``("ec", 256)``, ``("rsa", 3072)``, ``("ed25519", None)``."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519", None
    if isinstance(key, ed448.Ed448PrivateKey):
        return "ed448", None
    if isinstance(key, dsa.DSAPrivateKey):
        return "dsa", key.key_size
    return "other", None


def is_expired(moment: datetime | None, now: datetime) -> bool | None:
    return None if moment is None else moment <= now
