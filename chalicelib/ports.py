"""The ports the service layer depends on.

Adapters (DynamoDB, KMS, S3, EventBridge) implement these; unit tests use the fakes in
``tests/fakes.py``. boto3 never appears in service code.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import NamedTuple, Protocol


class DataKey(NamedTuple):
    """A fresh data key: ``plaintext`` is used once and dropped; ``wrapped`` is stored."""

    plaintext: bytes
    wrapped: bytes
    kid: str
    """Names provider and master key, e.g. ``kms:arn:aws:kms:...:key/...`` or ``passphrase:1``."""


class KeyProvider(Protocol):
    """Wraps and unwraps data keys under a master key that never leaves the provider.

    ``context`` is bound to the wrapped key (KMS encryption context, AAD for local providers):
    unwrapping with a different context fails.
    """

    name: str

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey: ...

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes: ...

    def check_health(self) -> None:
        """Wrap and unwrap a test key; raise ``KeyUnavailable`` with a clear message if not."""
        ...


def check_round_trip(provider: KeyProvider, problem: str) -> None:
    """A provider's health check: wrap a fresh data key and unwrap it; ``problem`` says what failed.

    Example::

        def check_health(self) -> None:
            check_round_trip(self, "KMS returned a different data key on unwrap")
    """
    from chalicelib.errors import KeyUnavailable

    context = {"purpose": "health-check"}
    data_key = provider.generate_data_key(context)
    if not hmac.compare_digest(provider.decrypt_data_key(data_key.wrapped, data_key.kid, context),
                               data_key.plaintext):
        raise KeyUnavailable(problem)


class Notifier(Protocol):
    """Publishes domain events (``SecretRotated``, ``RotationFailed``, ...).

    ``publish`` answers whether the event was accepted; a refused event is not raised, the caller
    keeps it to try again (the rotation outbox).
    """

    def publish(self, detail_type: str, detail: Mapping[str, object]) -> bool: ...
