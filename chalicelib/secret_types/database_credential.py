"""``database_credential``: how to log in to PostgreSQL, MySQL or MariaDB.

Three shapes are accepted:

* a JSON object in the AWS RDS secret layout: ``username``, ``password``, ``host``, ``port``
  (1..65535), ``engine`` (``postgres``, ``mysql`` or ``mariadb``) and optional ``dbname``;
  extra keys such as ``masterSecretId`` or ``alternateUsers`` are kept as they are;
* a URL: ``postgresql://user:pass@host:5432/db``, ``mysql://...``, ``mariadb://...``
  (a ``+driver`` suffix such as ``postgresql+psycopg`` is allowed);
* a bare password (non-blank, no line breaks), as in
  ``v-secure secret store --type database_credential --value 'super_secret_password_123'``.

A value that starts with ``{`` is always read as JSON, so a malformed object is refused rather
than stored as a password.

Example::

    facts = DatabaseCredentialHandler().validate("postgresql://app:s3cr3t@db.internal:5432/orders")
    facts.engine, facts.username, facts.host, facts.port, facts.dbname
    # ("postgres", "app", "db.internal", 5432, "orders")
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from chalicelib.errors import InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.secret_types.base import (
    ValidatedValue,
    has_control_chars,
    has_whitespace,
    looks_like_json_object,
    optional_str,
    parse_json_object,
    required_str,
)

ENGINES = ("mariadb", "mysql", "postgres")
URL_SCHEMES = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mariadb"}
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "mariadb": 3306}

_URL_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_JSON = "a database_credential JSON object"
_URL = "a database_credential URL"


class DatabaseCredentialHandler:
    """Validates ``database_credential`` values (JSON object, URL or bare password)."""

    type: SecretType = SecretType.DATABASE_CREDENTIAL

    def validate(self, value: str, *, value_schema: dict[str, Any] | None = None) -> ValidatedValue:
        if not value.strip():
            raise InvalidSecretValue("a database_credential value must not be empty")
        if looks_like_json_object(value):
            return validate_json_credential(value)
        if _URL_PREFIX.match(value):
            return validate_url_credential(value)
        return validate_password(value)


def validate_json_credential(value: str) -> ValidatedValue:
    """Validate the AWS RDS-style JSON layout."""
    obj = parse_json_object(value, _JSON)
    engine = required_str(obj, "engine", _JSON)
    if engine not in ENGINES:
        raise InvalidSecretValue(f"{_JSON} field 'engine' must be one of {', '.join(ENGINES)}")
    username = required_str(obj, "username", _JSON)
    required_str(obj, "password", _JSON)
    host = required_str(obj, "host", _JSON)
    return ValidatedValue(
        format="json",
        engine=engine,
        username=username,
        host=host,
        port=_json_port(obj),
        dbname=optional_str(obj, "dbname", _JSON),
    )


def _json_port(obj: dict[str, Any]) -> int:
    port = obj.get("port")
    if port is None:
        raise InvalidSecretValue(f"{_JSON} is missing the required field 'port'")
    if isinstance(port, str) and port.isascii() and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidSecretValue(f"{_JSON} field 'port' must be an integer from 1 to 65535")
    return port


def validate_url_credential(value: str) -> ValidatedValue:
    """Validate ``scheme://user:password@host[:port][/dbname][?options]``."""
    if has_whitespace(value) or has_control_chars(value):
        raise InvalidSecretValue(f"{_URL} must not contain whitespace or control characters")
    parts = urlsplit(value)
    engine = URL_SCHEMES.get(parts.scheme.lower().split("+", 1)[0])
    if engine is None:
        raise InvalidSecretValue(f"{_URL} must start with postgresql://, mysql:// or mariadb://")
    if not parts.username or not parts.password:
        raise InvalidSecretValue(f"{_URL} must include a username and a password (user:password@host)")
    if not parts.hostname:
        raise InvalidSecretValue(f"{_URL} must include a host")
    return ValidatedValue(
        format="url",
        engine=engine,
        username=unquote(parts.username),
        host=parts.hostname,
        port=_url_port(parts) or DEFAULT_PORTS[engine],
        dbname=unquote(parts.path.lstrip("/")) or None,
    )


def _url_port(parts: SplitResult) -> int | None:
    try:
        port = parts.port
    except ValueError:  # its message quotes the port text
        raise InvalidSecretValue(f"{_URL} has a port that is not an integer from 1 to 65535") from None
    if port == 0:
        raise InvalidSecretValue(f"{_URL} has a port that is not an integer from 1 to 65535")
    return port


def validate_password(value: str) -> ValidatedValue:
    """A bare password: non-blank, on one line, no NUL."""
    if any(char in value for char in "\r\n\x00"):
        raise InvalidSecretValue("a database_credential password must not contain line breaks or NUL")
    return ValidatedValue(format="password")
