"""``api_key``: an opaque token handed to a third-party API.

Rules: 8 to 4096 characters, no leading or trailing whitespace, no control characters.
No facts are recorded beyond the shape: an API key has none that are not part of it.

Example::

    ApiKeyHandler().validate("sk_live_4eC39HqLyjWDarjtT1zdp7dc")  # ValidatedValue(format="opaque")
"""

from __future__ import annotations

from typing import Any

from chalicelib.errors import InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.secret_types.base import ValidatedValue, has_control_chars

MIN_LENGTH = 8
MAX_LENGTH = 4096


class ApiKeyHandler:
    """Validates ``api_key`` values."""

    type: SecretType = SecretType.API_KEY

    def validate(self, value: str, *, value_schema: dict[str, Any] | None = None) -> ValidatedValue:
        check_api_key(value)
        return ValidatedValue(format="opaque")


def check_api_key(value: str) -> None:
    """Raise ``InvalidSecretValue`` unless ``value`` is a well-formed API key."""
    if not value:
        raise InvalidSecretValue("an api_key value must not be empty")
    if not MIN_LENGTH <= len(value) <= MAX_LENGTH:
        raise InvalidSecretValue(f"an api_key must be {MIN_LENGTH} to {MAX_LENGTH} characters long")
    if value != value.strip():
        raise InvalidSecretValue("an api_key must not start or end with whitespace")
    if has_control_chars(value):
        raise InvalidSecretValue("an api_key must not contain control characters")
