"""What is stored is ciphertext, bound to its secret and version (KMS on the moto server)."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import pytest
from boto3.dynamodb.types import Binary
from click.testing import CliRunner

from chalicelib.audit.sealer import AuditLocation, build_sealer
from chalicelib.aws import client
from chalicelib.cli.main import cli
from chalicelib.config import get_settings
from chalicelib.vault.storage import secret_pk, version_sk
from tests.integration.helpers import Api, secret_url, unique


@pytest.fixture
def root(api_server: str, root_token: str) -> Api:
    return Api(api_server, root_token)


def _version_item(secret_id: str, version: int) -> dict[str, Any]:
    return client("dynamodb").get_item(
        TableName=get_settings().secrets_table,
        Key={"pk": {"S": secret_pk(secret_id)}, "sk": {"S": version_sk(version)}})["Item"]


def _put(item: dict[str, Any]) -> None:
    client("dynamodb").put_item(TableName=get_settings().secrets_table, Item=item)


@pytest.mark.parametrize("field", ["ct", "tag", "iv", "edk"])
def test_flipping_a_stored_byte_fails_clearly(root: Api, field: str) -> None:
    secret_id = unique("tamper")
    root.store(secret_id, "sk_live_abcdefgh", type="api_key")
    root.store(secret_id, "sk_live_12345678")
    item = _version_item(secret_id, 1)
    data = bytearray(item["envelope"]["M"][field]["B"])
    data[len(data) // 2] ^= 0x01
    item["envelope"]["M"][field] = {"B": bytes(data)}
    _put(item)
    answer = root.get(secret_url(secret_id), version=1)
    assert answer.status_code == 500 and answer.json()["code"] == "decryption_failed"
    assert "sk_live" not in answer.text
    assert root.get(secret_url(secret_id)).json()["value"] == "sk_live_12345678"


def test_envelope_copied_to_another_secret_or_version_fails(root: Api) -> None:
    source, target = unique("src"), unique("dst")
    root.store(source, "sk_live_source01", type="api_key")
    root.store(target, "sk_live_target01", type="api_key")
    root.store(target, "sk_live_target02")
    stolen = _version_item(source, 1)["envelope"]
    # another secret, same version number
    item = _version_item(target, 1)
    item["envelope"] = stolen
    _put(item)
    assert root.get(secret_url(target), version=1).json()["code"] == "decryption_failed"
    # same secret, another version: version 2's envelope under version 1
    item = _version_item(target, 1)
    item["envelope"] = _version_item(target, 2)["envelope"]
    _put(item)
    assert root.get(secret_url(target), version=1).json()["code"] == "decryption_failed"
    # even with the stored context rewritten to match, the KMS context and AAD refuse it
    forged = json.loads(json.dumps(_version_item(source, 1)["envelope"], default=lambda b: b.decode("latin1")))
    forged["M"]["ctx"]["M"]["secret_id"] = {"S": target}
    item = _version_item(target, 1)
    item["envelope"] = _rebinary(forged)
    _put(item)
    assert root.get(secret_url(target), version=1).json()["code"] == "decryption_failed"


def _rebinary(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ({"B": v["B"].encode("latin1")} if isinstance(v, dict) and set(v) == {"B"} else _rebinary(v))
                for k, v in value.items()}
    return value


def _everything_stored() -> str:
    settings = get_settings()
    dynamodb, s3 = client("dynamodb"), client("s3")
    chunks: list[str] = []
    for table in (settings.secrets_table, settings.audit_table):
        kwargs: dict[str, Any] = {"TableName": table}
        while True:
            page = dynamodb.scan(**kwargs)
            chunks.append(json.dumps(page["Items"], default=_raw))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    # The stack's only bucket; other tests' isolated buckets hold nothing of this stack.
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=settings.audit_bucket)
    for version in (v for page in pages for v in page.get("Versions", [])):
        body = s3.get_object(Bucket=settings.audit_bucket, Key=version["Key"], VersionId=version["VersionId"])
        chunks.append(body["Body"].read().decode("latin1"))
    return "\n".join(chunks)


def _sealed_segments() -> str:
    settings = get_settings()
    s3 = client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.audit_bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return "\n".join(s3.get_object(Bucket=settings.audit_bucket, Key=k)["Body"].read().decode("latin1")
                     for k in keys)


def _raw(value: Any) -> str:
    return bytes(value.value if isinstance(value, Binary) else value).decode("latin1")


def test_no_plaintext_anywhere_after_a_cli_session(api_server: str, root_token: str) -> None:
    canary = f"CANARY{unique('value')}"
    secret_id = unique("canary")
    env = {"V_SECURE_ENDPOINT": api_server, "V_SECURE_TOKEN": root_token}
    runner = CliRunner()
    for args in (["secret", "store", "--secret-id", secret_id, "--type", "api_key", "--value", canary,
                  "--metadata", "owner=payments", "--reason", "initial"],
                 ["secret", "get", "--secret-id", secret_id],
                 ["secret", "store", "--secret-id", secret_id, "--value", canary + "-v2"],
                 ["secret", "versions", "--secret-id", secret_id],
                 ["secret", "rollback", "--secret-id", secret_id, "--version", "1"],
                 ["secret", "get", "--secret-id", secret_id, "--version", "2"],
                 ["secret", "list"],
                 ["secret", "delete", "--secret-id", secret_id, "--recovery-window-days", "7"],
                 ["secret", "restore", "--secret-id", secret_id]):
        assert runner.invoke(cli, args, env=env).exit_code == 0, args
    # Seal now, this session's events included (the scheduled job waits for the seal interval).
    build_sealer(dataclasses.replace(AuditLocation.from_settings(), seal_interval_seconds=0)).seal()
    stored = _everything_stored()
    assert f'"secret_id":"{secret_id}"' in _sealed_segments()  # its events did reach S3
    assert secret_id in stored  # we did look at the right data
    assert canary not in stored and canary.encode().hex() not in stored


def test_sixteen_writers_race_with_expected_version(root: Api, api_server: str, root_token: str) -> None:
    secret_id = unique("race")
    root.store(secret_id, "sk_live_version0", type="api_key")
    outcomes: dict[int, list[int]] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def writer(n: int) -> None:
        api = Api(api_server, root_token)
        barrier.wait()
        for _round in range(4):
            latest = api.get(secret_url(secret_id, "metadata")).json()["latestVersion"]
            answer = api.store(secret_id, f"sk_live_writer{n:02d}", expectedVersion=latest)
            with lock:
                outcomes.setdefault(answer.status_code, []).append(n)
            if answer.status_code == 201:
                with lock:
                    outcomes.setdefault(-answer.json()["version"], []).append(n)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(outcomes) - {201, 409} == {-v for v in range(2, len(outcomes.get(201, [])) + 2)}
    wins = len(outcomes[201])
    assert wins >= 1 and wins + len(outcomes.get(409, [])) == 64
    for version in range(2, wins + 2):
        assert len(outcomes[-version]) == 1  # exactly one winner per version
    versions = [v["version"] for v in root.get(secret_url(secret_id, "versions")).json()["versions"]]
    assert versions == list(range(1, wins + 2))  # no gaps, nothing lost
    for version in range(2, wins + 2):
        value = root.get(secret_url(secret_id), version=version).json()["value"]
        assert value == f"sk_live_writer{outcomes[-version][0]:02d}"
