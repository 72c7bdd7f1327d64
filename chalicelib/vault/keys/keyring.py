"""The keyring: writes with the configured provider, reads with whichever provider a ``kid`` names."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from chalicelib.config import Settings, get_settings
from chalicelib.errors import KeyUnavailable
from chalicelib.ports import DataKey, KeyProvider


class Keyring:
    """Several key providers behind the one KeyProvider interface.

    Example::

        keyring = Keyring(writer=kms_provider, readers=[kms_provider, passphrase_provider])
    """

    def __init__(self, writer: KeyProvider, readers: list[KeyProvider] | None = None) -> None:
        self.writer = writer
        self.name = writer.name
        self._readers = {p.name: p for p in (readers or [])}
        self._readers.setdefault(writer.name, writer)

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        return self.writer.generate_data_key(context)

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        return self.provider_for(kid).decrypt_data_key(wrapped, kid, context)

    def check_health(self) -> None:
        self.writer.check_health()

    def provider_for(self, kid: str) -> KeyProvider:
        name = kid.split(":", 1)[0]
        provider = self._readers.get(name)
        if provider is None:
            raise KeyUnavailable(f"no key provider '{name}' is configured to read this envelope")
        return provider


_lock = threading.Lock()
_keyring: KeyProvider | None = None


def build_provider(name: str, settings: Settings) -> KeyProvider:
    """Build one provider by name from settings (imports are lazy: PKCS#11 is heavy)."""
    from chalicelib.aws import client

    if name == "kms":
        from chalicelib.vault.keys.kms import KmsKeyProvider

        return KmsKeyProvider(client("kms"), settings.kms_key_id)
    if name == "passphrase":
        from chalicelib.vault.keys.params_store import DynamoKeyParamsStore
        from chalicelib.vault.keys.passphrase import PassphraseKeyProvider

        store = DynamoKeyParamsStore(client("dynamodb"), settings.secrets_table)
        return PassphraseKeyProvider(settings.encryption_key or "", store,
                                     settings.key_derivation_iterations)
    raise KeyUnavailable(f"unknown key provider '{name}'")


def get_keyring() -> KeyProvider:
    """The process's keyring (built once), with the data-key cache when enabled."""
    global _keyring
    if _keyring is None:
        with _lock:
            if _keyring is None:
                _keyring = _build(get_settings())
    return _keyring


def reset_keyring() -> None:
    global _keyring
    with _lock:
        _keyring = None


def _build(settings: Settings) -> KeyProvider:
    from chalicelib.vault.keys.cache import CachingKeyring

    writer = build_provider(settings.key_provider, settings)
    keyring: KeyProvider = Keyring(writer)
    if settings.cache_enabled:
        keyring = CachingKeyring(keyring, ttl=settings.cache_ttl, max_entries=settings.cache_max_entries,
                                 max_uses=settings.cache_max_uses)
    return keyring
