"""No PIN and no plaintext data key in logs, audit events, stored items or error bodies.

A whole key-administration session with the PKCS#11 provider (canary PINs, a failed login, key
rotation, a rewrap inside the token, a passphrase-to-PKCS#11 move): then every captured log
line, every audit event and every stored item is searched for the PINs and for each data key
(raw, hex, base64) of the secrets written.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from boto3.dynamodb.types import Binary

from chalicelib import errors
from chalicelib.aws import client
from chalicelib.client import VSecurity
from chalicelib.config import get_settings
from chalicelib.vault.keys.passphrase_versions import DynamoPassphraseVersions, VersionedPassphraseKeyProvider
from chalicelib.vault.keys.pkcs11 import Pkcs11KeyProvider
from tests.integration.helpers import unique
from tests.integration.keys_tools import bulk_secrets, dedicated_table, stored_envelopes
from tests.keys_support import KEY_LABEL, PIN, provider_env, softhsm

WRONG_PIN = "wrong-pin-canary-77e1d9"
PASSPHRASE = "passphrase canary 3b9f0c2e77"


def forms(secret: bytes) -> list[str]:
    return [secret.decode("latin1"), secret.hex(), base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode().rstrip("=")]


def everything_stored(tables: list[str]) -> str:
    chunks = []
    for table in tables:
        kwargs: dict[str, Any] = {"TableName": table}
        while True:
            page = client("dynamodb").scan(**kwargs)
            chunks.append(json.dumps(page["Items"], default=_raw))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return "\n".join(chunks)


def _raw(value: Any) -> str:
    return bytes(value.value if isinstance(value, Binary) else value).decode("latin1")


def test_no_pin_or_data_key_in_logs_audit_or_storage(api_server: str, caplog: pytest.LogCaptureFixture,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    hsm = softhsm()
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="v-secure")
    bodies: list[str] = []
    env = {**hsm.env("vs-logs"), "V_SECURE_KEY_PROVIDERS_READ": "passphrase", "V_SECURE_ENCRYPTION_KEY": PASSPHRASE,
           "V_SECURE_KEY_DERIVATION_ITERATIONS": "1000"}
    with dedicated_table("secrecy") as token, VSecurity(api_server, token) as sdk:
        table = get_settings().secrets_table
        old = VersionedPassphraseKeyProvider(PASSPHRASE, DynamoPassphraseVersions(client("dynamodb"), table), 1000)
        from_passphrase = bulk_secrets(unique("sc"), 3, old)
        with provider_env(env):
            if not Pkcs11KeyProvider(hsm.module, "vs-logs", KEY_LABEL, PIN).key_versions():
                sdk.rotate_key()
            ids = [unique("sc") for _ in range(4)]
            for secret_id in ids:
                sdk.store(secret_id, f"secrecy-value-{secret_id}", type="api_key")
            sdk.rotate_key()
            progress = list(sdk.iter_rewrap(limit=2))[-1]
            assert progress.done and progress.rewrapped == 4 * 2 + 3 * 2
            bodies.append(json.dumps(sdk.key_status_all().wire()))

            token_keys = Pkcs11KeyProvider(hsm.module, "vs-logs", KEY_LABEL, PIN)
            data_keys = set()
            for copies in stored_envelopes().values():
                for envelope in copies.values():
                    data_keys.add(token_keys.decrypt_data_key(envelope.edk, envelope.kid, envelope.ctx.as_map()))
            assert len(data_keys) == len(ids) + len(from_passphrase)
            for secret_id in [*ids, *from_passphrase]:
                assert sdk.retrieve(secret_id).value.endswith(secret_id)
        # A wrong PIN for the token this process is logged in to, and for one it is not.
        for bad in ({"V_SECURE_PKCS11_PIN": WRONG_PIN}, {"V_SECURE_PKCS11_PIN": WRONG_PIN,
                                                        "V_SECURE_PKCS11_TOKEN_LABEL": "vs-wrongpin"}):
            with provider_env({**env, **bad}):
                with pytest.raises(errors.KeyUnavailable, match="wrong PIN") as caught:
                    sdk.store(unique("sc"), "never-stored-1", type="api_key")
                bodies.append(caught.value.message)
        stored = everything_stored([table, get_settings().audit_table])

    captured = capfd.readouterr()
    records = [json.dumps(record.__dict__, default=str) for record in caplog.records]  # extras included
    logs = "\n".join([caplog.text, *records, captured.out, captured.err])
    assert "key provider failed its start-up check" in logs  # the failures were logged...
    for canary in (PIN, WRONG_PIN, PASSPHRASE):  # ...without the PIN or the passphrase
        for where, text in (("logs", logs), ("storage and audit", stored), ("error bodies", "\n".join(bodies))):
            assert canary not in text, f"{canary!r} found in {where}"
    for data_key in data_keys:
        for form in forms(data_key):
            assert form not in logs and form not in stored, "a plaintext data key was written"
