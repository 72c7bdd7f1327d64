"""The keyring: writes with the configured provider, reads with whichever provider a ``kid`` names."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from chalicelib.config import Settings, get_settings
from chalicelib.errors import DecryptionFailed, KeyUnavailable, VSecureError
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

    def providers(self) -> list[KeyProvider]:
        """The writer first, then every other provider this keyring reads with."""
        return [self.writer, *(p for name, p in self._readers.items() if name != self.writer.name)]

    def provider_for(self, kid: str) -> KeyProvider:
        name = kid.split(":", 1)[0]
        provider = self._readers.get(name)
        if provider is None:
            raise KeyUnavailable(f"no key provider '{name}' is configured to read this envelope")
        return provider


_lock = threading.RLock()
_keyring: KeyProvider | None = None
_unchecked: KeyProvider | None = None


def build_provider(name: str, settings: Settings) -> KeyProvider:
    """Build one provider by name from settings (imports are lazy: PKCS#11 is heavy)."""
    from chalicelib.aws import client

    if name == "kms":
        from chalicelib.vault.keys.kms import KmsKeyProvider

        return KmsKeyProvider(client("kms"), settings.kms_key_id)
    if name == "passphrase":
        from chalicelib.vault.keys.passphrase_versions import (
            DynamoPassphraseVersions,
            VersionedPassphraseKeyProvider,
        )

        return VersionedPassphraseKeyProvider(settings.encryption_key or "",
                                              DynamoPassphraseVersions(client("dynamodb"), settings.secrets_table),
                                              settings.key_derivation_iterations)
    if name == "pkcs11":
        from chalicelib.vault.keys.pkcs11 import Pkcs11KeyProvider

        return Pkcs11KeyProvider.from_settings(settings)
    raise KeyUnavailable(f"unknown key provider '{name}'")


def get_keyring() -> KeyProvider:
    """The process's keyring (built once), with the data-key cache when enabled.

    The first call is the start-up check: the writer must wrap and unwrap a test key, else
    ``KeyUnavailable`` says why (wrong PIN, missing module, disabled KMS key...) and the next
    call checks again.
    """
    global _keyring
    if _keyring is None:
        with _lock:
            if _keyring is None:
                keyring = get_admin_keyring()
                _start_up_check(keyring)
                _keyring = keyring
    return _keyring


def get_admin_keyring() -> KeyProvider:
    """The process's keyring without the start-up check (key administration must work on a
    provider that has no key yet, e.g. to create the first PKCS#11 key version)."""
    global _unchecked
    if _keyring is not None:
        return _keyring
    with _lock:
        if _unchecked is None:
            _unchecked = _build(get_settings())
        return _unchecked


def reset_keyring() -> None:
    global _keyring, _unchecked
    with _lock:
        _keyring = None
        _unchecked = None


def _start_up_check(keyring: KeyProvider) -> None:
    from chalicelib.logging import logger

    try:
        keyring.check_health()
    except VSecureError as error:
        logger.error("key provider failed its start-up check", extra={"provider": keyring.name,
                                                                       "reason": error.message})
        if not isinstance(error, KeyUnavailable | DecryptionFailed):
            raise
        raise KeyUnavailable(f"key provider '{keyring.name}' failed its start-up check: "
                             f"{error.message.removeprefix('key_provider: ')}") from None


def _build(settings: Settings) -> KeyProvider:
    from chalicelib.vault.keys.cache import CachingKeyring

    writer = build_provider(settings.key_provider, settings)
    readers = [build_provider(name, settings) for name in _names(settings.key_providers_read)
               if name != writer.name]
    keyring: KeyProvider = Keyring(writer, readers)
    if settings.cache_enabled:
        keyring = CachingKeyring(keyring, ttl=settings.cache_ttl, max_entries=settings.cache_max_entries,
                                 max_uses=settings.cache_max_uses)
    return keyring


def _names(text: str) -> list[str]:
    return list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
