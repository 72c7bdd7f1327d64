"""The process keyring: read providers from settings, and the start-up check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.config import Settings
from chalicelib.errors import KeyUnavailable
from chalicelib.ports import KeyProvider
from chalicelib.vault.keys import keyring as keyring_module
from chalicelib.vault.keys.keyring import Keyring, _build, get_admin_keyring, get_keyring, reset_keyring
from tests.unit.test_keys_rewrap import VersionedFake


@pytest.fixture(autouse=True)
def fresh_keyring() -> Iterator[None]:
    reset_keyring()
    yield
    reset_keyring()


class Broken(VersionedFake):
    def __init__(self, message: str) -> None:
        super().__init__("pkcs11")
        self.message = message
        self.checks = 0

    def check_health(self) -> None:
        self.checks += 1
        raise KeyUnavailable(self.message)


def test_read_providers_come_from_settings_and_the_writer_stays_first() -> None:
    settings = Settings(key_provider="kms", key_providers_read="passphrase, kms,passphrase",
                        encryption_key="a passphrase of enough length", cache_enabled=False)
    keyring = _build(settings)

    assert isinstance(keyring, Keyring)
    assert [p.name for p in keyring.providers()] == ["kms", "passphrase"]
    assert keyring.provider_for("passphrase:0123abcd").name == "passphrase"
    with pytest.raises(KeyUnavailable, match="no key provider 'pkcs11' is configured"):
        keyring.provider_for("pkcs11:tok/label#1")
    with pytest.raises(KeyUnavailable, match="unknown key provider 'hsm'"):
        _build(Settings(key_providers_read="hsm"))


def test_the_start_up_check_fails_with_a_clear_message_and_runs_again(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Broken("PKCS#11 login to token 'vault' failed: wrong PIN")
    monkeypatch.setattr(keyring_module, "_build", lambda settings: Keyring(broken))

    for attempt in (1, 2):
        with pytest.raises(KeyUnavailable) as caught:
            get_keyring()
        assert caught.value.status == 503 and broken.checks == attempt
        assert caught.value.message == ("key_provider: key provider 'pkcs11' failed its start-up check: "
                                        "PKCS#11 login to token 'vault' failed: wrong PIN")
    assert get_admin_keyring().name == "pkcs11"  # administration still works (e.g. to create the key)


def test_a_healthy_keyring_is_checked_once_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[KeyProvider] = []
    provider = VersionedFake("local")
    monkeypatch.setattr(provider, "check_health", lambda: checks.append(provider))
    monkeypatch.setattr(keyring_module, "_build", lambda settings: Keyring(provider))

    first = get_keyring()
    assert get_keyring() is first and get_admin_keyring() is first and len(checks) == 1
