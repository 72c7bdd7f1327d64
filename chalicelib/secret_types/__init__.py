"""Secret-type registry: validates a value for its type before it is encrypted.

Each :class:`~chalicelib.models.SecretType` has a handler (one module per type) that either
returns a :class:`ValidatedValue` of non-secret facts, recorded as version provenance, or raises
:class:`~chalicelib.errors.InvalidSecretValue` with a message that never quotes the value.

Example::

    from chalicelib.secret_types import validate_value

    facts = validate_value("tls_certificate", cert_and_key_pem)
    facts.subject, facts.not_after, facts.expired
"""

from chalicelib.secret_types.base import SecretTypeHandler, ValidatedValue
from chalicelib.secret_types.registry import get_handler, register, validate_value

__all__ = ["SecretTypeHandler", "ValidatedValue", "get_handler", "register", "validate_value"]
