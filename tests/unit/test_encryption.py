"""Envelope encryption: AES-256-GCM, fresh keys and nonces, binding to (secret id, version, type)."""

from __future__ import annotations

import pytest

from chalicelib.errors import DecryptionFailed
from chalicelib.vault.encryption import DATA_KEY_BYTES, Envelope, EnvelopeContext, open_envelope, seal
from chalicelib.vault.keys.cache import CachingKeyring
from tests.fakes import FakeKeyProvider

CANARY = "canary-7f3a9c-super-secret"


@pytest.fixture
def keys() -> FakeKeyProvider:
    return FakeKeyProvider()


def context(secret_id: str = "db_password", version: int = 1, secret_type: str = "api_key") -> EnvelopeContext:
    return EnvelopeContext(secret_id=secret_id, version=version, type=secret_type)


def test_round_trip(keys: FakeKeyProvider) -> None:
    envelope = seal(CANARY.encode(), context(), keys)
    assert open_envelope(envelope, context(), keys) == CANARY.encode()
    assert envelope.alg == "AES-256-GCM" and len(envelope.iv) == 12 and len(envelope.tag) == 16
    assert CANARY.encode() not in envelope.ct


def test_fresh_data_key_and_nonce_per_value(keys: FakeKeyProvider) -> None:
    first, second = seal(b"same", context(), keys), seal(b"same", context(), keys)
    assert first.iv != second.iv and first.edk != second.edk and first.ct != second.ct
    assert keys.generated == 2


@pytest.mark.parametrize("field", ["ct", "tag", "iv", "edk"])
def test_flipping_any_byte_fails_clearly(keys: FakeKeyProvider, field: str) -> None:
    envelope = seal(CANARY.encode(), context(), keys)
    original: bytes = getattr(envelope, field)
    for index in range(len(original)):
        tampered = bytearray(original)
        tampered[index] ^= 0x01
        broken = envelope.model_copy(update={field: bytes(tampered)})
        with pytest.raises(DecryptionFailed) as failure:
            open_envelope(broken, context(), keys)
        assert CANARY not in str(failure.value)


@pytest.mark.parametrize("other", [context(secret_id="other"), context(version=2),
                                   context(secret_type="ssh_key")])
def test_envelope_moved_to_another_secret_or_version_fails(keys: FakeKeyProvider, other: EnvelopeContext) -> None:
    envelope = seal(CANARY.encode(), context(), keys)
    with pytest.raises(DecryptionFailed):
        open_envelope(envelope, other, keys)
    relabelled = envelope.model_copy(update={"ctx": other})
    with pytest.raises(DecryptionFailed):
        open_envelope(relabelled, other, keys)


def test_unknown_format_is_refused(keys: FakeKeyProvider) -> None:
    envelope = seal(b"x", context(), keys)
    with pytest.raises(DecryptionFailed, match="unsupported"):
        open_envelope(envelope.model_copy(update={"alg": "AES-128-CBC"}), context(), keys)


def test_envelope_survives_storage_round_trip(keys: FakeKeyProvider) -> None:
    envelope = seal(CANARY.encode(), context(), keys)
    restored = Envelope.from_item({k: bytearray(v) if isinstance(v, bytes) else v
                                   for k, v in envelope.to_item().items()})
    assert open_envelope(restored, context(), keys) == CANARY.encode()


def test_data_key_is_256_bits(keys: FakeKeyProvider) -> None:
    assert len(keys.generate_data_key(context().as_map()).plaintext) == DATA_KEY_BYTES


class TestDataKeyCache:
    def test_unwrap_is_cached_and_generation_never_is(self, keys: FakeKeyProvider) -> None:
        cache = CachingKeyring(keys, ttl=60)
        envelope = seal(b"v", context(), cache)
        for _ in range(3):
            open_envelope(envelope, context(), cache)
        seal(b"v2", context(version=2), cache)
        assert keys.decrypted == 1 and keys.generated == 2 and cache.hits == 2

    def test_entries_expire_by_age_and_uses(self, keys: FakeKeyProvider) -> None:
        now = [0.0]
        cache = CachingKeyring(keys, ttl=10, max_uses=2, clock=lambda: now[0])
        envelope = seal(b"v", context(), cache)
        open_envelope(envelope, context(), cache)
        open_envelope(envelope, context(), cache)
        open_envelope(envelope, context(), cache)
        open_envelope(envelope, context(), cache)
        assert keys.decrypted == 2  # the third open hit the use limit and unwrapped again
        now[0] = 11.0
        open_envelope(envelope, context(), cache)
        assert keys.decrypted == 3

    def test_bounded_entries(self, keys: FakeKeyProvider) -> None:
        cache = CachingKeyring(keys, ttl=60, max_entries=5)
        for version in range(1, 20):
            open_envelope(seal(b"v", context(version=version), cache), context(version=version), cache)
        assert len(cache) == 5

    def test_cache_is_keyed_by_context(self, keys: FakeKeyProvider) -> None:
        cache = CachingKeyring(keys, ttl=60)
        envelope = seal(b"v", context(), cache)
        open_envelope(envelope, context(), cache)
        with pytest.raises(DecryptionFailed):
            open_envelope(envelope.model_copy(update={"ctx": context(version=9)}), context(version=9), cache)
