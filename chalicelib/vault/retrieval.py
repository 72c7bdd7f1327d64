"""Authorized decryption: the only place a stored value becomes plaintext again."""

from __future__ import annotations

from chalicelib.errors import DecryptionFailed, VersionNotFound
from chalicelib.ports import KeyProvider
from chalicelib.vault.encryption import Envelope, EnvelopeContext, open_envelope


def decrypt_value(envelope: Envelope | None, secret_id: str, version: int, secret_type: str,
                  keys: KeyProvider) -> str:
    """Open ``envelope`` as version ``version`` of ``secret_id`` and return the text value."""
    if envelope is None:
        raise VersionNotFound(f"version {version} of '{secret_id}' was destroyed")
    context = EnvelopeContext(secret_id=secret_id, version=version, type=secret_type)
    plaintext = open_envelope(envelope, context, keys)
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionFailed(f"version {version} of '{secret_id}' is not UTF-8 text") from None
