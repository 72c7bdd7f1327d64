"""Envelope encryption: AES-256-GCM under a fresh data key wrapped by a key provider.

The envelope binds the ciphertext to ``(secret_id, version, type)``: the canonical JSON of
that context is the AES-GCM associated data *and* the key provider's encryption context,
so an envelope copied to another secret or version fails to decrypt.

Example::

    context = EnvelopeContext(secret_id="db_password", version=1, type="database_credential")
    envelope = seal(b"s3cr3t", context, keyring)
    assert open_envelope(envelope, context, keyring) == b"s3cr3t"
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict

from chalicelib.errors import DecryptionFailed
from chalicelib.ports import DataKey

ENVELOPE_VERSION = 1
ALGORITHM = "AES-256-GCM"
NONCE_BYTES = 12
TAG_BYTES = 16
DATA_KEY_BYTES = 32


class EnvelopeContext(BaseModel):
    """What a ciphertext is bound to."""

    model_config = ConfigDict(frozen=True)

    secret_id: str
    version: int
    type: str

    def as_map(self) -> dict[str, str]:
        """String map for the KMS encryption context."""
        return {"secret_id": self.secret_id, "version": str(self.version), "type": self.type}

    def aad(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces) used as AES-GCM associated data."""
        return json.dumps(self.as_map(), sort_keys=True, separators=(",", ":")).encode()


class Envelope(BaseModel):
    """One encrypted value, as stored (a DynamoDB map)."""

    model_config = ConfigDict(frozen=True)

    v: int = ENVELOPE_VERSION
    alg: str = ALGORITHM
    kid: str
    edk: bytes
    iv: bytes
    ct: bytes
    tag: bytes
    ctx: EnvelopeContext

    def to_item(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Envelope:
        return cls.model_validate({k: (bytes(v) if isinstance(v, bytearray | memoryview) else v)
                                   for k, v in item.items()})


class DataKeySource(Protocol):
    """Where envelopes get data keys: a key provider, or a cache in front of one."""

    def generate_data_key(self, context: dict[str, str]) -> DataKey: ...

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: dict[str, str]) -> bytes: ...


def seal(plaintext: bytes, context: EnvelopeContext, keys: DataKeySource) -> Envelope:
    """Encrypt ``plaintext`` under a fresh data key and a fresh 96-bit nonce."""
    data_key = keys.generate_data_key(context.as_map())
    if len(data_key.plaintext) != DATA_KEY_BYTES:
        raise DecryptionFailed("key provider returned a data key of the wrong length")
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(data_key.plaintext).encrypt(nonce, plaintext, context.aad())
    return Envelope(
        kid=data_key.kid,
        edk=data_key.wrapped,
        iv=nonce,
        ct=sealed[:-TAG_BYTES],
        tag=sealed[-TAG_BYTES:],
        ctx=context,
    )


def open_envelope(envelope: Envelope, expected: EnvelopeContext, keys: DataKeySource) -> bytes:
    """Decrypt ``envelope``, refusing it unless it belongs to ``expected``.

    The stored ``ctx`` is not trusted on its own: the AAD and the key provider's context are
    built from ``expected``, so an envelope moved to another secret or version fails.
    """
    _check_format(envelope)
    if envelope.ctx != expected:
        raise DecryptionFailed(
            f"envelope belongs to another secret or version (expected {expected.secret_id} "
            f"v{expected.version})"
        )
    data_key = keys.decrypt_data_key(envelope.edk, envelope.kid, expected.as_map())
    try:
        return AESGCM(data_key).decrypt(envelope.iv, envelope.ct + envelope.tag, expected.aad())
    except InvalidTag:
        raise DecryptionFailed(
            f"envelope for {expected.secret_id} v{expected.version} failed authentication "
            "(ciphertext, tag, nonce or context altered)"
        ) from None


def _check_format(envelope: Envelope) -> None:
    if envelope.v != ENVELOPE_VERSION or envelope.alg != ALGORITHM:
        raise DecryptionFailed(f"unsupported envelope format v{envelope.v} {envelope.alg}")
    if len(envelope.iv) != NONCE_BYTES or len(envelope.tag) != TAG_BYTES:
        raise DecryptionFailed("envelope nonce or tag has the wrong length")
