"""Passphrase key versions: rotation by a new salt, older versions readable, the plain provider's format kept."""

from __future__ import annotations

import pytest

from chalicelib.errors import DecryptionFailed, KeyUnavailable
from chalicelib.vault.keys.passphrase import PassphraseKeyProvider
from chalicelib.vault.keys.passphrase_versions import PassphraseVersion, VersionedPassphraseKeyProvider

PASSPHRASE = "correct horse battery staple"
CONTEXT = {"secret_id": "db", "version": "1", "type": "api_key"}
ITERATIONS = 1000


class MemoryVersions:
    """The version store in memory; :meth:`legacy` is the plain provider's KeyParamsStore view of version 1."""

    def __init__(self) -> None:
        self.items: dict[int, PassphraseVersion] = {}

    def versions(self) -> list[PassphraseVersion]:
        return [self.items[n] for n in sorted(self.items)]

    def add(self, version: PassphraseVersion) -> bool:
        if version.number in self.items:
            return False
        self.items[version.number] = version
        return True

    def load(self) -> tuple[bytes, int, str] | None:
        first = self.items.get(1)
        return (first.salt, first.iterations, first.check) if first else None

    def save_if_absent(self, salt: bytes, iterations: int, check: str) -> tuple[bytes, int, str]:
        self.add(PassphraseVersion(1, salt, iterations, check))
        found = self.load()
        assert found is not None
        return found


def versioned(store: MemoryVersions, passphrase: str = PASSPHRASE, **kwargs: object) -> VersionedPassphraseKeyProvider:
    return VersionedPassphraseKeyProvider(passphrase, store, ITERATIONS, **kwargs)  # type: ignore[arg-type]


def test_reads_what_the_plain_provider_wrote_with_the_same_kid() -> None:
    store = MemoryVersions()
    plain = PassphraseKeyProvider(PASSPHRASE, store, ITERATIONS)
    old = plain.generate_data_key(CONTEXT)

    provider = versioned(store)
    assert provider.current_kid() == old.kid
    assert provider.decrypt_data_key(old.wrapped, old.kid, CONTEXT) == old.plaintext
    new = provider.generate_data_key(CONTEXT)
    assert plain.decrypt_data_key(new.wrapped, new.kid, CONTEXT) == new.plaintext


def test_a_new_version_writes_and_the_old_one_still_reads() -> None:
    store = MemoryVersions()
    provider = versioned(store)
    old = provider.generate_data_key(CONTEXT)

    kid = provider.create_key_version()
    new = provider.generate_data_key(CONTEXT)

    assert [v.number for v in store.versions()] == [1, 2]
    assert new.kid == kid != old.kid
    assert provider.decrypt_data_key(old.wrapped, old.kid, CONTEXT) == old.plaintext
    moved, moved_kid = provider.rewrap_data_key(old.wrapped, old.kid, CONTEXT)
    assert moved_kid == kid and versioned(store).decrypt_data_key(moved, kid, CONTEXT) == old.plaintext

    del store.items[1]
    fresh = versioned(store)
    assert not fresh.has_key(old.kid)
    with pytest.raises(KeyUnavailable, match="not a passphrase key version of this vault"):
        fresh.decrypt_data_key(old.wrapped, old.kid, CONTEXT)
    assert fresh.decrypt_data_key(moved, moved_kid, CONTEXT) == old.plaintext


def test_other_processes_see_the_new_version_after_the_refresh_interval() -> None:
    store = MemoryVersions()
    now = [0.0]
    reader = versioned(store, clock=lambda: now[0])
    before = reader.current_kid()
    created = versioned(store).create_key_version()

    assert reader.current_kid() == before
    now[0] = 31
    assert reader.current_kid() == created


def test_an_unknown_kid_is_looked_up_again_before_giving_up() -> None:
    store = MemoryVersions()
    reader = versioned(store)
    reader.current_kid()
    writer = versioned(store)
    writer.create_key_version()
    new = writer.generate_data_key(CONTEXT)

    assert reader.decrypt_data_key(new.wrapped, new.kid, CONTEXT) == new.plaintext


def test_wrong_passphrase_and_tampering_are_clear_errors() -> None:
    store = MemoryVersions()
    data_key = versioned(store).generate_data_key(CONTEXT)

    with pytest.raises(KeyUnavailable, match="wrong passphrase"):
        versioned(store, "another passphrase entirely").decrypt_data_key(data_key.wrapped, data_key.kid, CONTEXT)
    with pytest.raises(DecryptionFailed):
        versioned(store).decrypt_data_key(data_key.wrapped, data_key.kid, {**CONTEXT, "version": "2"})
    with pytest.raises(KeyUnavailable, match="at least 16 characters"):
        versioned(store, "short")


def test_concurrent_creators_get_distinct_versions() -> None:
    store = MemoryVersions()
    first, second = versioned(store), versioned(store)
    first.current_kid()
    second.current_kid()

    kids = {first.create_key_version(), second.create_key_version()}

    assert [v.number for v in store.versions()] == [1, 2, 3] and len(kids) == 2
