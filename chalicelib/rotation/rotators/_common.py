"""Small pieces the rotators share: reading their options, guarding revoke, checking what they make.

Per-type options live in the secret's ``rotation`` block (``ctx.config``), in camelCase, e.g.
``{"interval": "30d", "strategy": "rolling", "provider": {"url": "https://keys.example/new"}}``.
A missing or malformed option raises :class:`RotationConfigInvalid` naming the option, never a value.

Example::

    provider = section(ctx.config, "provider")
    url = required_text(provider, "url", "provider")
"""

from __future__ import annotations

import hmac
from typing import Any

from chalicelib.errors import Conflict, InvalidRequest, InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.rotation.rotators.base import RotationContext, RotationTestFailed
from chalicelib.secret_types import ValidatedValue, validate_value


class RotationConfigInvalid(InvalidRequest):
    """The secret's rotation options are missing something the rotator needs, or hold a bad value."""

    code = "rotation_config_invalid"


class RevokeRefused(Conflict):
    """The value to revoke is the one labelled ``CURRENT``: revoking it would break every reader."""

    code = "revoke_refused"


def section(config: dict[str, Any], key: str) -> dict[str, Any]:
    """``config[key]`` as an object (empty when absent)."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RotationConfigInvalid(f"rotation option '{key}' must be an object")
    return value


def optional_text(config: dict[str, Any], key: str, where: str = "rotation") -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RotationConfigInvalid(f"{where} option '{key}' must be a non-empty string")
    return value


def required_text(config: dict[str, Any], key: str, where: str = "rotation") -> str:
    value = optional_text(config, key, where)
    if value is None:
        raise RotationConfigInvalid(f"{where} option '{key}' is required")
    return value


def choice(config: dict[str, Any], key: str, allowed: tuple[str, ...], default: str | None,
           where: str = "rotation") -> str | None:
    value = optional_text(config, key, where)
    if value is None:
        return default
    if value not in allowed:
        raise RotationConfigInvalid(f"{where} option '{key}' must be one of {', '.join(allowed)}")
    return value


def positive_int(config: dict[str, Any], key: str, default: int, *, minimum: int = 1, maximum: int | None = None,
                 where: str = "rotation") -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise RotationConfigInvalid(f"{where} option '{key}' must be an integer of at least {minimum}{upper}")
    return value


def text_list(config: dict[str, Any], key: str, where: str = "rotation") -> list[str]:
    """A list of strings, or a space-separated string (as OAuth writes scopes)."""
    value = config.get(key)
    if value is None:
        return []
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        raise RotationConfigInvalid(f"{where} option '{key}' must be a list of strings")
    return list(items)


def resolve(ctx: RotationContext, secret_id: str, option: str) -> str:
    """Read another secret (a master credential, a CA, a provider token) through the engine."""
    if ctx.resolve_secret is None:
        raise RotationConfigInvalid(f"rotation option '{option}' needs the engine to read other secrets")
    return ctx.resolve_secret(secret_id)


def same_secret(left: str | None, right: str | None) -> bool:
    """Constant-time equality of two values (``None`` equals nothing)."""
    if left is None or right is None:
        return False
    return hmac.compare_digest(left.encode(), right.encode())


def refuse_current(ctx: RotationContext, old_value: str) -> None:
    """Raise :class:`RevokeRefused` when asked to revoke the value that is still ``CURRENT``."""
    if same_secret(ctx.current_value, old_value):
        raise RevokeRefused(f"refusing to revoke the CURRENT value of '{ctx.secret_id}'")


def checked(secret_type: SecretType, value: str) -> ValidatedValue:
    """Validate a value this rotator is about to test; a bad one fails the test step."""
    try:
        return validate_value(secret_type, value)
    except InvalidSecretValue as error:
        raise RotationTestFailed(f"the new value is not a valid {secret_type.value}: {error.message}") from None


IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_headers(ctx: RotationContext, step: str) -> dict[str, str]:
    """``{"Idempotency-Key": "<secret id>/<rotation id>/<step>"}`` for a request that makes something at a
    provider, or ``{}`` outside a rotation run (no ``rotation_id``).

    A run resumed after a crash has the same id, so it sends the same key again: a provider that honours
    the header answers with what it made the first time instead of making a second one.
    """
    if ctx.rotation_id is None:
        return {}
    return {IDEMPOTENCY_HEADER: f"{ctx.secret_id}/{ctx.rotation_id}/{step}"}
