"""Rewrap at volume, over the HTTP API: 1 000 secrets move from KMS key A to key B, with a crash midway.

After the job, key A is disabled and scheduled for deletion (and, as moto ignores key state,
the server's KMS client is made to refuse it as AWS would): every secret still decrypts, each
envelope copy is under B exactly once, and the value ciphertexts never changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chalicelib import errors
from chalicelib.aws import client
from chalicelib.client import VSecurity
from chalicelib.vault.encryption import open_envelope
from chalicelib.vault.keys.kms import KmsKeyProvider
from chalicelib.vault.keys.models import RewrapProgress
from tests.integration.helpers import unique
from tests.integration.keys_tools import (
    StateEnforcingKms,
    bulk_secrets,
    dedicated_table,
    new_kms_key,
    server_kms_provider,
    stored_envelopes,
)

COUNT = 1000
CRASH_AFTER = 450


@pytest.fixture
def sdk(api_server: str) -> Iterator[VSecurity]:
    with dedicated_table("rewrap") as token, VSecurity(api_server, token, timeout=120) as api:
        yield api


def test_rewrap_of_1000_from_key_a_to_b_survives_a_crash_and_needs_no_key_a(
        sdk: VSecurity, monkeypatch: pytest.MonkeyPatch) -> None:
    key_a, key_b = new_kms_key("rewrap-a"), new_kms_key("rewrap-b")
    kid_a, kid_b = f"kms:{key_a}", f"kms:{key_b}"
    started = time.monotonic()
    before = bulk_secrets(unique("rw"), COUNT, KmsKeyProvider(client("kms"), key_a))
    ids = sorted(before)
    loaded = time.monotonic() - started

    calls = {"rewrap": 0, "unwrap": 0}
    real_rewrap, real_unwrap = KmsKeyProvider.rewrap_data_key, KmsKeyProvider.decrypt_data_key

    def crashing_rewrap(self: KmsKeyProvider, *args: Any, **kwargs: Any) -> tuple[bytes, str]:
        if calls["rewrap"] >= CRASH_AFTER:
            raise RuntimeError("the process died here")
        calls["rewrap"] += 1
        return real_rewrap(self, *args, **kwargs)

    def counted_unwrap(self: KmsKeyProvider, *args: Any, **kwargs: Any) -> bytes:
        calls["unwrap"] += 1
        return real_unwrap(self, *args, **kwargs)

    monkeypatch.setattr(KmsKeyProvider, "rewrap_data_key", crashing_rewrap)
    monkeypatch.setattr(KmsKeyProvider, "decrypt_data_key", counted_unwrap)
    batches: list[RewrapProgress] = []
    with pytest.raises(errors.VSecureError) as crash:
        batches.extend(sdk.iter_rewrap(from_key=kid_a, to_key=kid_b, limit=100))
    assert crash.value.status == 500 and batches and not batches[-1].done
    job_id = batches[-1].job_id

    monkeypatch.setattr(KmsKeyProvider, "rewrap_data_key", real_rewrap)
    assert 0 < batches[-1].rewrapped < 2 * COUNT
    *_, progress = sdk.iter_rewrap(job_id=job_id, limit=100)
    rewrap_seconds = time.monotonic() - started - loaded

    print(f"\n{COUNT} secrets: load {loaded:.1f}s, rewrap (with crash and rerun) {rewrap_seconds:.1f}s")
    assert progress.done and progress.conflicts == 0
    assert progress.rewrapped == 2 * COUNT  # each version and its META copy
    assert progress.data_keys == COUNT  # each data key re-wrapped once, the crashed batch's included
    assert calls["unwrap"] == 0  # ReEncrypt only: no data key, let alone a value, was decrypted

    kms = client("kms")
    kms.disable_key(KeyId=key_a.rsplit("/", 1)[-1])  # moto wants the key id here, not the ARN
    kms.schedule_key_deletion(KeyId=key_a.rsplit("/", 1)[-1], PendingWindowInDays=7)
    enforcing = KmsKeyProvider(StateEnforcingKms(kms, cache_states=True), key_b)
    monkeypatch.setattr(server_kms_provider(), "_kms", StateEnforcingKms(server_kms_provider()._kms))

    after = stored_envelopes()

    def check(secret_id: str) -> None:
        copies, old = after[secret_id], before[secret_id]
        current, version = copies["current"], copies["V#0000000001"]
        assert current.kid == version.kid == kid_b, secret_id
        assert current.edk == version.edk != old.edk  # one re-wrapped key for both copies
        assert (version.ct, version.iv, version.tag) == (old.ct, old.iv, old.tag)
        assert open_envelope(version, old.ctx, enforcing) == f"value-of-{secret_id}".encode()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(check, ids))
    with pytest.raises(errors.KeyUnavailable, match=f"KMS key {key_a} is not usable in its current state"):
        open_envelope(before[ids[0]], before[ids[0]].ctx, enforcing)
    for secret_id in ids[:: COUNT // 5]:
        assert sdk.retrieve(secret_id).value == f"value-of-{secret_id}"

    assert {copy.kid for copies in after.values() for copy in copies.values()} == {kid_b}


def test_a_disabled_key_is_a_clear_503_on_read_and_in_health(
        sdk: VSecurity, api_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from chalicelib.api import system

    key_a = new_kms_key("disabled")
    [secret_id] = bulk_secrets(unique("dis"), 1, KmsKeyProvider(client("kms"), key_a))
    client("kms").disable_key(KeyId=key_a.rsplit("/", 1)[-1])
    provider = server_kms_provider()
    monkeypatch.setattr(provider, "_kms", StateEnforcingKms(provider._kms))

    with pytest.raises(errors.KeyUnavailable) as caught:
        sdk.retrieve(secret_id)
    assert caught.value.status == 503
    assert f"KMS key {key_a} is disabled: Decrypt refused (DisabledException)" in caught.value.message

    monkeypatch.setattr(provider, "_key_id", key_a)
    system._health.clear()
    try:
        health = httpx.get(f"{api_server}/health")
        assert health.status_code == 503
        check = health.json()["checks"]["keyProvider"]
        assert check["status"] == "failing" and f"KMS key {key_a} is disabled" in check["message"]
        with pytest.raises(errors.KeyUnavailable, match="is disabled: GenerateDataKey refused"):
            sdk.store(unique("dis"), "a-value-1234", type="api_key")
    finally:
        system._health.clear()
