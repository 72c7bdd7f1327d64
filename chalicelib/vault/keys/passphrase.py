"""Passphrase key provider: a master key derived with PBKDF2-HMAC-SHA256.

For setups without KMS. The salt and iteration count are stored with a key check (an HMAC
of a constant under the derived key) so a wrong passphrase is reported at start-up, not as
a failed decrypt later.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Mapping
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from chalicelib.errors import DecryptionFailed, KeyUnavailable
from chalicelib.ports import DataKey, check_round_trip

PREFIX = "passphrase:"
_CHECK_MESSAGE = b"v-secure passphrase key check"
_NONCE = 12


class KeyParams(Protocol):
    salt: bytes
    iterations: int
    check: str


class KeyParamsStore(Protocol):
    """Where the salt, iteration count and key check live (a SYSTEM item in the secrets table)."""

    def load(self) -> tuple[bytes, int, str] | None: ...

    def save_if_absent(self, salt: bytes, iterations: int, check: str) -> tuple[bytes, int, str]: ...


def _canonical(context: Mapping[str, str]) -> bytes:
    import json

    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


class PassphraseKeyProvider:
    """Wraps data keys with AES-256-GCM under a key derived from a passphrase.

    Example::

        provider = PassphraseKeyProvider("correct horse battery staple", store, iterations=600_000)
    """

    name = "passphrase"

    def __init__(self, passphrase: str, store: KeyParamsStore, iterations: int = 600_000) -> None:
        if not passphrase or len(passphrase) < 16:
            raise KeyUnavailable("V_SECURE_ENCRYPTION_KEY must be set to at least 16 characters")
        self._passphrase = passphrase.encode()
        self._store = store
        self._iterations = iterations
        self._key: bytes | None = None
        self._kid = ""
        self._lock = threading.Lock()

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        key, kid = self._master()
        plaintext = os.urandom(32)
        nonce = os.urandom(_NONCE)
        wrapped = nonce + AESGCM(key).encrypt(nonce, plaintext, _canonical(context))
        return DataKey(plaintext, wrapped, kid)

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        key, own_kid = self._master()
        if kid != own_kid:
            raise KeyUnavailable(f"data key was wrapped by {kid}, this passphrase is {own_kid}")
        try:
            return AESGCM(key).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _canonical(context))
        except InvalidTag:
            raise DecryptionFailed("wrapped data key failed authentication") from None

    def check_health(self) -> None:
        check_round_trip(self, "passphrase provider failed to unwrap its own data key")

    def _master(self) -> tuple[bytes, str]:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key, self._kid = self._derive()
        return self._key, self._kid

    def _derive(self) -> tuple[bytes, str]:
        stored = self._store.load()
        if stored is None:
            salt = os.urandom(16)
            key = self._pbkdf2(salt, self._iterations)
            stored = self._store.save_if_absent(salt, self._iterations, _check(key))
        salt, iterations, check = stored
        key = self._pbkdf2(salt, iterations)
        if not hmac.compare_digest(_check(key), check):
            raise KeyUnavailable("V_SECURE_ENCRYPTION_KEY does not match the key check stored with the "
                                 "vault (wrong passphrase)")
        return key, PREFIX + check[:16]

    def _pbkdf2(self, salt: bytes, iterations: int) -> bytes:
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
        return kdf.derive(self._passphrase)


def _check(key: bytes) -> str:
    return hmac.new(key, _CHECK_MESSAGE, hashlib.sha256).hexdigest()
