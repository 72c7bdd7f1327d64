"""The PKCS#11 provider (SoftHSM2) behind the real HTTP API: the key-health check, key versions,
rewrap inside the token, and reading after the old key version left the token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chalicelib import errors
from chalicelib.aws import client
from chalicelib.client import VSecurity
from chalicelib.vault.keys.kms import KmsKeyProvider
from chalicelib.vault.keys.pkcs11 import Pkcs11KeyProvider
from tests.integration.helpers import unique
from tests.integration.keys_tools import bulk_secrets, dedicated_table, new_kms_key, stored_envelopes
from tests.keys_support import KEY_LABEL, PIN, SoftHsm, provider_env, softhsm


@pytest.fixture(scope="module")
def hsm() -> SoftHsm:
    return softhsm()


@pytest.fixture
def sdk(api_server: str) -> Iterator[VSecurity]:
    with dedicated_table("hsm") as token, VSecurity(api_server, token) as api:
        yield api


def health(api_server: str) -> tuple[int, dict[str, str]]:
    response = httpx.get(f"{api_server}/health")
    return response.status_code, response.json()["checks"]["keyProvider"]


@pytest.mark.parametrize(("settings", "says"), [
    ({"V_SECURE_PKCS11_PIN": "wrong-pin-canary-51c2", "V_SECURE_PKCS11_TOKEN_LABEL": "vs-wrongpin"},
     "PKCS#11 login to token 'vs-wrongpin' failed: wrong PIN"),
    ({"V_SECURE_PKCS11_MODULE": "/nonexistent/libpkcs11-module.so"},
     "PKCS#11 module not found: /nonexistent/libpkcs11-module.so"),
    ({"V_SECURE_PKCS11_TOKEN_LABEL": "vs-nokey"}, "no AES key labelled 'v-secure-master' on PKCS#11 token 'vs-nokey'"),
    ({"V_SECURE_PKCS11_PIN": None}, "no PKCS#11 PIN: set V_SECURE_PKCS11_PIN"),
])
def test_health_and_start_up_fail_with_a_clear_message(hsm: SoftHsm, api_server: str, root_token: str,
                                                       settings: dict[str, str | None], says: str) -> None:
    with provider_env({**hsm.env("vs-api"), **settings}), VSecurity(api_server, root_token) as sdk:
        status, check = health(api_server)
        assert status == 503 and check["status"] == "failing" and check["provider"] == "pkcs11"
        assert says in check["message"]
        with pytest.raises(errors.KeyUnavailable) as caught:
            sdk.store(unique("hsm"), "a-value-12345", type="api_key")
        assert caught.value.status == 503 and says in caught.value.message
        assert PIN not in caught.value.message and "wrong-pin-canary-51c2" not in caught.value.message
        assert PIN not in check["message"] and "wrong-pin-canary-51c2" not in check["message"]


def test_hsm_keys_rotate_rewrap_inside_the_token_and_the_old_version_can_go(
        hsm: SoftHsm, sdk: VSecurity, api_server: str, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    env = {**hsm.env("vs-api"), "V_SECURE_PKCS11_PIN": None, "V_SECURE_PKCS11_PIN_FILE": str(pin_file),
           "V_SECURE_KEY_PROVIDERS_READ": "kms"}
    key_a = new_kms_key("hsm-from")
    from_kms = bulk_secrets(unique("hk"), 5, KmsKeyProvider(client("kms"), key_a))
    with provider_env(env):
        token = Pkcs11KeyProvider(hsm.module, "vs-api", KEY_LABEL, PIN)
        first = sdk.rotate_key() if not token.key_versions() else None
        v1 = token.current_kid()
        assert first is None or (first.new_version and first.kid == v1 and first.previous_kid is None)
        assert health(api_server) == (200, {"status": "ok", "provider": "pkcs11"})

        ids = [unique("hk") for _ in range(4)]
        for secret_id in ids:
            sdk.store(secret_id, f"hsm-value-{secret_id}", type="api_key")
        rotation = sdk.rotate_key()
        v2 = rotation.kid
        assert rotation.previous_kid == v1 and rotation.new_version and v2.endswith(f"#{int(v1[-1]) + 1}")
        sdk.store(ids[0], f"hsm-value-2-{ids[0]}")  # written under the new version
        status = {k.kid: k for k in sdk.key_status_all().keys}
        assert status[v1].versions == 4 and status[v1].copies == 3 and status[v2].envelopes == 2
        assert status[v2].writer and status[v1].state == "present"
        assert status[f"kms:{key_a}"].envelopes == 10

        progress = list(sdk.iter_rewrap(limit=3))[-1]  # every envelope not under the writer's key
        assert progress.done and progress.target == v2 and progress.rewrapped == 7 + 10

        token.destroy_key_version(v1)
        assert {k.kid: k.state for k in sdk.key_status_all().keys} == {v2: "present"}
        assert sdk.retrieve(ids[0]).value == f"hsm-value-2-{ids[0]}"
        for secret_id in ids:
            assert sdk.retrieve(secret_id, version=1).value == f"hsm-value-{secret_id}"
        for secret_id in from_kms:
            assert sdk.retrieve(secret_id).value == f"value-of-{secret_id}"
    assert {e.kid for copies in stored_envelopes().values() for e in copies.values()} == {v2}
