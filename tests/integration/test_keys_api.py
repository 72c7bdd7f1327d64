"""``/keys/...`` over HTTP with the KMS provider (moto): admin only and audited, status, rotate, rewrap
from the command line, and a rewrap from another provider into KMS."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from chalicelib.aws import client
from chalicelib.cli.context import CliState
from chalicelib.cli.main import cli
from chalicelib.client import VSecurity
from chalicelib.config import get_settings
from chalicelib.vault.keys.kms import KmsKeyProvider
from chalicelib.vault.keys.passphrase_versions import DynamoPassphraseVersions, VersionedPassphraseKeyProvider
from tests.integration.helpers import Api, unique
from tests.integration.keys_tools import bulk_secrets, dedicated_table, new_kms_key, stored_envelopes
from tests.keys_support import provider_env


def audit_events(action: str, actor: str) -> list[dict[str, Any]]:
    """Events of ``action`` by ``actor``, through the audit table's by_actor index."""
    answer = client("dynamodb").query(
        TableName=get_settings().audit_table, IndexName="by_actor", KeyConditionExpression="actor = :a",
        FilterExpression="#action = :x", ExpressionAttributeNames={"#action": "action"},
        ExpressionAttributeValues={":a": {"S": actor}, ":x": {"S": action}})
    return [json.loads(item["event"]["S"]) for item in answer["Items"]]


def keys_command(api_server: str, token: str, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--endpoint-url", api_server, "--token", token, "keys", *args],
                                obj=CliState())
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_only_global_admins_may_and_denials_are_audited(api_server: str, root_token: str) -> None:
    principal, token = Api(api_server, root_token).new_principal()
    other = Api(api_server, token)

    for response in (other.get("/keys/status"), other.post("/keys/rotate"), other.post("/keys/rewrap")):
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "access_denied" and "global admin" in response.json()["message"]
    denied = audit_events("key_rewrap", principal) + audit_events("key_rotate", principal)
    assert sorted(e["details"]["operation"] for e in denied) == ["rewrap", "rotate", "status"]
    assert {e["status"] for e in denied} == {"denied"}


def test_status_counts_envelopes_by_key_and_names_the_writer(api_server: str, root_token: str) -> None:
    api = Api(api_server, root_token)
    secret_id = unique("ks")
    for value in ("first-value-1", "second-value-2"):
        assert api.store(secret_id, value, type="api_key").status_code in (200, 201)

    with VSecurity(api_server, root_token) as sdk:
        status = sdk.key_status_all(limit=50)
    writer = status.writer
    assert writer is not None and writer.startswith("kms:arn:aws:kms:")
    [usage] = [k for k in status.keys if k.kid == writer]
    assert usage.writer and usage.state == "Enabled" and usage.versions >= 2 and usage.copies >= 1
    assert usage.envelopes == usage.versions + usage.copies + usage.mfa_seeds
    assert status.providers == ["kms"] and status.secrets >= 1 and status.next_token is None
    assert api.get("/keys/status", nextToken="bogus").status_code == 400


def test_rotate_enables_kms_rotation_and_rotates_on_demand(api_server: str, root_token: str) -> None:
    rotation = keys_command(api_server, root_token, "rotate", "--on-demand", "--rotation-period-days", "180")

    arn = rotation["kid"].removeprefix("kms:")
    assert rotation["provider"] == "kms" and rotation["automaticRotation"] is True and rotation["rotatedOnDemand"]
    assert "keys rewrap --include-target" in rotation["message"]
    kms = client("kms")
    assert kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"] is True
    assert any(r["RotationType"] == "ON_DEMAND" for r in kms.list_key_rotations(KeyId=arn)["Rotations"])
    events = audit_events("key_rotate", "root")
    assert events[-1]["details"]["kid"] == rotation["kid"] and events[-1]["status"] == "success"


def test_rewrap_from_the_command_line_moves_only_the_chosen_key(api_server: str, root_token: str) -> None:
    key_a, key_b = new_kms_key("cli-a"), new_kms_key("cli-b")
    envelopes = bulk_secrets(unique("kc"), 12, KmsKeyProvider(client("kms"), key_a))
    api = Api(api_server, root_token)
    untouched = unique("kc")
    api.store(untouched, "a-value-under-the-writer", type="api_key")

    progress = keys_command(api_server, root_token, "rewrap", "--from", f"kms:{key_a}", "--to", f"kms:{key_b}",
                            "--batch-size", "5", "--progress")

    assert progress["done"] and progress["to"] == f"kms:{key_b}" and progress["rewrapped"] == 24
    assert progress["dataKeys"] == 12 and progress["batches"] >= 3 and progress["conflicts"] == 0
    stored = stored_envelopes()
    assert {e.kid for s in envelopes for e in stored[s].values()} == {f"kms:{key_b}"}
    assert stored[untouched]["current"].kid != f"kms:{key_b}"
    for secret_id in list(envelopes)[:3]:
        assert api.get(f"/secrets/{secret_id.replace('/', '%2F')}").json()["value"] == f"value-of-{secret_id}"
    events = [e["details"] for e in audit_events("key_rewrap", "root") if e["details"].get("job") == progress["jobId"]]
    assert events[0]["event"] == "started" and events[-1]["event"] == "completed"
    assert sum(e.get("envelopes", 0) for e in events) == 24
    status = keys_command(api_server, root_token, "status")
    assert f"kms:{key_a}" not in {k["kid"] for k in status["keys"]}


def test_envelopes_of_an_older_provider_stay_readable_and_move_into_kms(api_server: str) -> None:
    passphrase = "an older passphrase of enough length"
    reading_both = {"V_SECURE_KEY_PROVIDERS_READ": "passphrase", "V_SECURE_ENCRYPTION_KEY": passphrase,
                    "V_SECURE_KEY_DERIVATION_ITERATIONS": "1000"}
    with dedicated_table("older") as token, VSecurity(api_server, token) as sdk:
        settings = get_settings()
        old = VersionedPassphraseKeyProvider(passphrase, DynamoPassphraseVersions(client("dynamodb"),
                                                                                  settings.secrets_table), 1000)
        envelopes = bulk_secrets(unique("pk"), 6, old)
        first = next(iter(envelopes))
        with pytest.raises(Exception, match="no key provider 'passphrase' is configured"):
            sdk.retrieve(first)

        with provider_env(reading_both):
            assert sdk.retrieve(first).value == f"value-of-{first}"  # read with the older provider
            sdk.store(unique("pk"), "written-with-kms-1", type="api_key")
            progress = list(sdk.iter_rewrap(from_key="passphrase", to_key="kms", limit=4))[-1]
            assert progress.done and progress.rewrapped == 12 and progress.data_keys == 6

        assert {e.kid.split(":")[0] for s in envelopes for e in stored_envelopes()[s].values()} == {"kms"}
        for secret_id in envelopes:  # the passphrase provider is gone, KMS reads everything
            assert sdk.retrieve(secret_id).value == f"value-of-{secret_id}"
        assert httpx.get(f"{api_server}/health").json()["checks"]["keyProvider"]["provider"] == "kms"
