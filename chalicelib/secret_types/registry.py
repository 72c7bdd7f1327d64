"""Which handler validates which :class:`~chalicelib.models.SecretType`.

Every type has a built-in handler. :func:`register` replaces the handler for its ``type``
(the rotation module does this to add engine-specific checks).

Example::

    facts = validate_value(SecretType.SSH_KEY, private_key_text)
    version_record["provenance"] = facts.as_facts()
"""

from __future__ import annotations

from typing import Any

from chalicelib.errors import InvalidRequest, InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.secret_types.api_key import ApiKeyHandler
from chalicelib.secret_types.base import SecretTypeHandler, ValidatedValue
from chalicelib.secret_types.configuration import ConfigurationHandler
from chalicelib.secret_types.database_credential import DatabaseCredentialHandler
from chalicelib.secret_types.jwt_token import JwtTokenHandler
from chalicelib.secret_types.oauth_token import OauthTokenHandler
from chalicelib.secret_types.ssh_key import SshKeyHandler
from chalicelib.secret_types.tls_certificate import TlsCertificateHandler


def default_handlers() -> dict[SecretType, SecretTypeHandler]:
    """A fresh set of the built-in handlers, one per secret type."""
    handlers: list[SecretTypeHandler] = [
        ApiKeyHandler(),
        DatabaseCredentialHandler(),
        JwtTokenHandler(),
        TlsCertificateHandler(),
        SshKeyHandler(),
        OauthTokenHandler(),
        ConfigurationHandler(),
    ]
    return {handler.type: handler for handler in handlers}


_handlers: dict[SecretType, SecretTypeHandler] = default_handlers()


def register(handler: SecretTypeHandler) -> SecretTypeHandler | None:
    """Make ``handler`` the validator for ``handler.type``; return the handler it replaces.

    Example::

        previous = register(StrictApiKeyHandler())
        ...
        register(previous)  # put the old one back
    """
    if not isinstance(handler, SecretTypeHandler):
        raise TypeError("a secret-type handler needs a 'type' and a 'validate' method")
    secret_type = SecretType(handler.type)
    previous = _handlers.get(secret_type)
    _handlers[secret_type] = handler
    return previous


def get_handler(secret_type: SecretType | str) -> SecretTypeHandler:
    """The handler for ``secret_type``; ``InvalidRequest`` if the type is unknown.

    Example::

        get_handler("ssh_key").validate(private_key_text).fingerprint
    """
    try:
        return _handlers[SecretType(secret_type)]
    except (ValueError, KeyError):
        allowed = ", ".join(member.value for member in SecretType)
        raise InvalidRequest(f"unknown secret type; expected one of {allowed}") from None


def validate_value(
    secret_type: SecretType | str, value: str, value_schema: dict[str, Any] | None = None
) -> ValidatedValue:
    """Validate ``value`` as ``secret_type`` before it is encrypted; return its non-secret facts.

    Raises ``InvalidSecretValue`` (never quoting the value) if it is not acceptable.

    Example::

        validate_value(SecretType.DATABASE_CREDENTIAL, "postgresql://app:pw@db:5432/orders").engine
        # "postgres"
    """
    if not isinstance(value, str):
        raise InvalidSecretValue("a secret value must be a string")
    return get_handler(secret_type).validate(value, value_schema=value_schema)
