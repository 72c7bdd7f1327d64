"""``oauth_token``: an OAuth 2.0 access token, bare or with what is needed to refresh it.

Accepted shapes:

* a bare bearer token: 8 to 8192 characters, no whitespace or control characters;
* a JSON object with ``access_token`` (same rules) and optional ``refresh_token``,
  ``token_type`` (e.g. ``Bearer``), ``expires_at`` (epoch seconds or ISO 8601), ``scope``
  (space-separated string or list), ``client_id``, ``client_secret`` and ``token_endpoint``
  (``https://``, or ``http://`` to localhost). Other keys are kept as they are.

Facts: ``token_type``, ``expires_at``, ``expired``, ``scopes`` and ``client_id``.

Example::

    OauthTokenHandler().validate('{"access_token": "ya29.a0Af...", "expires_at": 1767225600}').expires_at
    # datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from chalicelib.clock import Clock, SystemClock
from chalicelib.errors import InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.secret_types.base import (
    ValidatedValue,
    has_control_chars,
    has_whitespace,
    is_expired,
    looks_like_json_object,
    optional_str,
    parse_json_object,
    required_str,
)

MIN_TOKEN_LENGTH = 8
MAX_TOKEN_LENGTH = 8192
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

_TOKEN_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]{1,256}")  # RFC 6749 section 3.3
_JSON = "an oauth_token JSON object"


class OauthTokenHandler:
    """Validates ``oauth_token`` values; ``clock`` decides whether the token has expired."""

    type: SecretType = SecretType.OAUTH_TOKEN

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()

    def validate(self, value: str, *, value_schema: dict[str, Any] | None = None) -> ValidatedValue:
        if looks_like_json_object(value):
            return validate_token_object(value, now=self._clock.now())
        check_bearer_token(value, "an oauth_token bearer token")
        return ValidatedValue(format="bearer")


def check_bearer_token(token: str, what: str) -> None:
    """8..8192 characters, no whitespace, no control characters."""
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        raise InvalidSecretValue(f"{what} must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters long")
    if has_whitespace(token) or has_control_chars(token):
        raise InvalidSecretValue(f"{what} must not contain whitespace or control characters")


def validate_token_object(value: str, *, now: datetime) -> ValidatedValue:
    """The JSON shape: ``access_token`` plus optional refresh material."""
    obj = parse_json_object(value, _JSON)
    check_bearer_token(required_str(obj, "access_token", _JSON), f"{_JSON} field 'access_token'")
    optional_str(obj, "refresh_token", _JSON)
    optional_str(obj, "client_secret", _JSON)
    _check_token_endpoint(optional_str(obj, "token_endpoint", _JSON))
    expires_at = _expires_at(obj.get("expires_at"))
    return ValidatedValue(
        format="json",
        token_type=_token_type(optional_str(obj, "token_type", _JSON)),
        expires_at=expires_at,
        expired=is_expired(expires_at, now),
        scopes=_scopes(obj.get("scope")),
        client_id=optional_str(obj, "client_id", _JSON),
    )


def _token_type(token_type: str | None) -> str | None:
    if token_type is not None and not _TOKEN_TYPE.fullmatch(token_type):
        raise InvalidSecretValue(f"{_JSON} field 'token_type' must be a short word such as Bearer")
    return token_type


def _expires_at(raw: Any) -> datetime | None:
    """Epoch seconds or an ISO 8601 string; naive times are taken as UTC."""
    if raw is None:
        return None
    try:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return datetime.fromtimestamp(raw, UTC)
        if isinstance(raw, str):
            moment = datetime.fromisoformat(raw)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise InvalidSecretValue(f"{_JSON} field 'expires_at' must be epoch seconds or an ISO 8601 time")


def _scopes(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    scopes = raw.split() if isinstance(raw, str) else raw
    if not isinstance(scopes, list) or not all(
        isinstance(scope, str) and _SCOPE_TOKEN.fullmatch(scope) for scope in scopes
    ):
        raise InvalidSecretValue(
            f"{_JSON} field 'scope' must be a space-separated string or a list of scope tokens"
        )
    return tuple(scopes)


def _check_token_endpoint(url: str | None) -> None:
    if url is not None and not _is_secure_url(url):
        raise InvalidSecretValue(
            f"{_JSON} field 'token_endpoint' must be an https:// URL (http:// only to localhost)"
        )


def _is_secure_url(url: str) -> bool:
    if has_whitespace(url) or has_control_chars(url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if not host:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and host in LOCAL_HOSTS)
