"""Deploy infra/stateful.yaml as a CloudFormation stack in a moto server and run the app on it.

The stack is created in a moto server of this test's own (so the shared stack of the session is
untouched), the app is pointed at the stack's outputs exactly as the packaged template does it
(the ``V_SECURE_*`` variables named in the template's ``EnvironmentOutputs``), and a smoke suite
runs through the real HTTP server (chalicelib/local/server.py): health, store, retrieve, the audit
trail, and, where those routes exist, sealing and verifying the audit log and rotating the key.

moto's CloudFormation does not implement everything the template declares. Where it ignores a
property, this test says so and the property is checked on the template instead (here, and in
tests/unit/test_infra_stateful.py); where the smoke needs it, the test applies it through the
AWS API after the stack exists, as CloudFormation would have:

- ``AWS::S3::Bucket`` ``ObjectLockEnabled`` / ``ObjectLockConfiguration`` / ``VersioningConfiguration``:
  ignored (checked on the template; applied with PutBucketVersioning + PutObjectLockConfiguration);
- ``AWS::S3::BucketPolicy``: not supported (checked on the template);
- ``AWS::DynamoDB::Table`` ``TimeToLiveSpecification``, ``PointInTimeRecoverySpecification`` and
  ``SSESpecification`` (not reported by DescribeTable): ignored (checked on the template);
- ``AWS::KMS::Key`` ``KeySpec`` / ``KeyUsage``: ignored, every key is symmetric (checked on the
  template; the signing alias is moved to an ECC_NIST_P256 key made through the API);
- ``AWS::KMS::Key`` ``KeyPolicy``: stored unserialized, which makes moto's DescribeKey fail
  (the resolved policy is put again as JSON with PutKeyPolicy).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest

from chalicelib.config import get_settings
from tests.cfn_template import REPO, Resolver, load_template
from tests.conftest import service_unavailable
from tests.integration.helpers import secret_url

STATEFUL = REPO / "infra" / "stateful.yaml"
MOTO_ACCOUNT = "123456789012"
SEAL_INTERVAL = 3  # seconds: events older than this must be sealed, newer ones may wait


@dataclass
class Deployment:
    prefix: str
    outputs: dict[str, str]
    environment: dict[str, str]
    aws: boto3.session.Session
    endpoint: str
    api_url: str
    token: str

    def client(self, service: str) -> Any:
        return self.aws.client(service, endpoint_url=self.endpoint)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)


def _create_stack(aws: boto3.session.Session, endpoint: str, prefix: str) -> dict[str, str]:
    cloudformation = aws.client("cloudformation", endpoint_url=endpoint)
    stack = f"{prefix}-stateful"
    cloudformation.create_stack(StackName=stack, TemplateBody=STATEFUL.read_text(),
                                Parameters=[{"ParameterKey": "NamePrefix", "ParameterValue": prefix}])
    cloudformation.get_waiter("stack_create_complete").wait(StackName=stack, WaiterConfig={"Delay": 1})
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    exports = {e["Name"]: e["Value"] for e in cloudformation.list_exports()["Exports"]}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    assert all(exports[f"{stack}-{key}"] == value for key, value in outputs.items())
    return outputs


def _apply_what_moto_ignores(aws: boto3.session.Session, endpoint: str, prefix: str,
                             outputs: dict[str, str]) -> None:
    """See the module docstring: what CloudFormation would have configured and moto did not."""
    template = load_template(STATEFUL)
    resolver = Resolver(template, {"NamePrefix": prefix})
    kms = aws.client("kms", endpoint_url=endpoint)
    for logical_id, arn_output in (("DataKey", "DataKeyArn"), ("SigningKey", "SigningKeyArn")):
        policy = resolver.resolve(template["Resources"][logical_id]["Properties"]["KeyPolicy"])
        kms.put_key_policy(KeyId=outputs[arn_output], PolicyName="default", Policy=json.dumps(policy))
    signing = kms.describe_key(KeyId=outputs["SigningKeyAlias"])["KeyMetadata"]
    if signing["KeySpec"] != "ECC_NIST_P256":
        ecc = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Description="moto stand-in")
        kms.update_alias(AliasName=outputs["SigningKeyAlias"], TargetKeyId=ecc["KeyMetadata"]["KeyId"])
    s3 = aws.client("s3", endpoint_url=endpoint)
    bucket = outputs["AuditBucketName"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": int(outputs["AuditRetentionDays"])}}})


def reset_singletons() -> None:
    """Forget every process-wide service (settings, clients, and each ``chalicelib`` ``reset_*()``).

    ``reset_process_state`` knows the core singletons; services added later (rotation engine,
    notifier, audit hasher...) follow the same ``reset_<name>()`` convention, so they are found
    by name. Without this, a service first built against the test's stack would keep talking to
    it after the test, and other tests in this process would fail.
    """
    from chalicelib.local.environment import reset_process_state

    reset_process_state()
    for name, module in list(sys.modules.items()):
        if not name.startswith("chalicelib.") or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            if attribute.startswith("reset_") and inspect.isfunction(value) and value.__module__ == name \
                    and not any(p.default is p.empty for p in inspect.signature(value).parameters.values()):
                value()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    try:
        from chalicelib.local.moto_server import MotoServer, MotoServerError
        from chalicelib.local.server import load_app, start_api_server
    except ImportError as error:
        service_unavailable("moto server", error)
    try:
        moto = MotoServer("127.0.0.1", 0).start()
    except MotoServerError as error:
        service_unavailable("moto server", error)
    prefix = f"v-secure-ci{uuid.uuid4().hex[:8]}"
    aws = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                region_name="us-east-1")
    mapping: dict[str, str] = load_template(STATEFUL)["Metadata"]["VSecure"]["EnvironmentOutputs"]
    saved = dict(os.environ)
    api = None
    try:
        outputs = _create_stack(aws, moto.endpoint, prefix)
        _apply_what_moto_ignores(aws, moto.endpoint, prefix, outputs)
        environment = {name: outputs[output] for output, name in mapping.items()}
        for name in environment:
            os.environ.pop(name, None)
        os.environ.update({"V_SECURE_AWS_ENDPOINT": moto.endpoint, "V_SECURE_AWS_REGION": "us-east-1",
                           "V_SECURE_SEAL_INTERVAL": f"{SEAL_INTERVAL}s", "V_SECURE_KEY_PROVIDER": "kms"})
        reset_singletons()
        # The README's first-admin step: names from the stack's outputs, the token to a 0600 file.
        from chalicelib.access_control.bootstrap_cli import main as bootstrap_cli

        token_file = tmp_path_factory.mktemp("bootstrap") / "root-token"
        assert bootstrap_cli(["--from-stack", f"{prefix}-stateful", "--token-file", str(token_file)]) == 0
        assert {name: os.environ.get(name) for name in environment} == environment
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        api = start_api_server(load_app(), "127.0.0.1", 0)
        yield Deployment(prefix, outputs, environment, aws, moto.endpoint, api.url, token)
    finally:
        if api is not None:
            api.stop()
        os.environ.clear()
        os.environ.update(saved)
        reset_singletons()
        moto.stop()


def test_the_app_reads_the_stack_outputs(deployed: Deployment) -> None:
    settings = get_settings()
    assert settings.secrets_table == deployed.outputs["SecretsTableName"] == f"{deployed.prefix}-secrets"
    assert settings.audit_table == f"{deployed.prefix}-audit"
    assert settings.audit_bucket == f"{deployed.prefix}-audit-{MOTO_ACCOUNT}-us-east-1"
    assert settings.event_bus == deployed.prefix
    assert settings.kms_key_id == f"alias/{deployed.prefix}-data"
    assert settings.audit_signing_key_id == f"alias/{deployed.prefix}-audit-signing"
    assert settings.retention_days == 2555


def test_the_stack_resources_are_what_the_app_needs(deployed: Deployment) -> None:
    dynamodb = deployed.client("dynamodb")
    secrets = dynamodb.describe_table(TableName=deployed.outputs["SecretsTableName"])["Table"]
    assert {i["IndexName"] for i in secrets["GlobalSecondaryIndexes"]} == {"by_kind", "scheduled"}
    assert secrets["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert secrets["DeletionProtectionEnabled"] is True
    audit = dynamodb.describe_table(TableName=deployed.outputs["AuditTableName"])["Table"]
    assert {i["IndexName"] for i in audit["GlobalSecondaryIndexes"]} == {"by_secret", "by_actor", "by_action",
                                                                          "by_day"}
    kms = deployed.client("kms")
    assert kms.get_key_rotation_status(KeyId=deployed.outputs["DataKeyArn"])["KeyRotationEnabled"] is True
    encryption = deployed.client("s3").get_bucket_encryption(Bucket=deployed.outputs["AuditBucketName"])
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    events = deployed.client("events").describe_event_bus(Name=deployed.outputs["EventBusName"])
    assert events["Arn"] == deployed.outputs["EventBusArn"]


def test_properties_moto_ignores_are_in_the_template() -> None:
    """Object Lock, versioning, TTL, PITR, SSE, key specs: moto drops them, the template must have them."""
    resources = Resolver(load_template(STATEFUL)).resolve(load_template(STATEFUL)["Resources"])
    bucket = resources["AuditBucket"]["Properties"]
    assert bucket["ObjectLockEnabled"] is True and bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert resources["SecretsTable"]["Properties"]["TimeToLiveSpecification"]["AttributeName"] == "ttl"
    for table in ("SecretsTable", "AuditTable"):
        assert resources[table]["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
        assert resources[table]["Properties"]["SSESpecification"]["KMSMasterKeyId"] == "<DataKey.Arn>"
    assert resources["SigningKey"]["Properties"]["KeySpec"] == "ECC_NIST_P256"
    assert resources["AuditBucketPolicy"]["Type"] == "AWS::S3::BucketPolicy"


def test_store_retrieve_and_audit_smoke(deployed: Deployment) -> None:
    from app import app

    with deployed.api() as api:
        health = api.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text

        secret_id = f"deploy/{uuid.uuid4().hex[:8]}"
        stored = api.post("/secrets", json={"secretId": secret_id, "value": "sk_live_deploy_0001", "type": "api_key"})
        assert stored.status_code == 201, stored.text
        read = api.get(secret_url(secret_id))
        assert read.status_code == 200 and read.json()["value"] == "sk_live_deploy_0001"

        item = deployed.client("dynamodb").get_item(
            TableName=deployed.outputs["SecretsTableName"],
            Key={"pk": {"S": f"SECRET#{secret_id}"}, "sk": {"S": "META"}})["Item"]
        assert b"sk_live_deploy_0001" not in json.dumps(item, default=repr).encode()

        events = deployed.client("dynamodb").query(
            TableName=deployed.outputs["AuditTableName"], IndexName="by_secret",
            KeyConditionExpression="secret_id = :s", ExpressionAttributeValues={":s": {"S": secret_id}})["Items"]
        assert {e["action"]["S"] for e in events} >= {"secret_store", "secret_read"}
        assert all(len(e["hash"]["S"]) == 64 for e in events)

        if "/audit" in app.routes:
            trail = api.get("/audit", params={"secretId": secret_id})
            assert trail.status_code == 200, trail.text
            assert {e["action"] for e in trail.json()["entries"]} >= {"secret_store", "secret_read"}


def test_audit_seal_and_verify_against_the_stack(deployed: Deployment) -> None:
    from app import app

    if "/audit/seal" not in app.routes:
        pytest.skip("the audit sealer has no route in this build")
    with deployed.api() as api:
        assert api.post("/secrets", json={"secretId": f"deploy/{uuid.uuid4().hex[:8]}", "value": "sk_live_seal_0001",
                                          "type": "api_key"}).status_code == 201
        time.sleep(SEAL_INTERVAL + 0.2)
        sealed = api.post("/audit/seal")
        assert sealed.status_code == 200, sealed.text
        assert sealed.json()["segments"] >= 1 and sealed.json()["digests"]
        s3 = deployed.client("s3")
        bucket = deployed.outputs["AuditBucketName"]
        objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert objects
        head = s3.head_object(Bucket=bucket, Key=objects[0]["Key"])  # moto's GetObjectRetention answers 500
        assert head["ObjectLockMode"] == "COMPLIANCE"
        if "/audit/verify" in app.routes:
            verified = api.get("/audit/verify")
            assert verified.status_code == 200 and verified.json()["ok"] is True, verified.text


def test_kms_key_rotation_against_the_stack(deployed: Deployment) -> None:
    from app import app

    if "/keys/rotate" not in app.routes:
        pytest.skip("key rotation has no route in this build")
    with deployed.api() as api:
        rotated = api.post("/keys/rotate", json={})
        assert rotated.status_code == 200, rotated.text
    assert deployed.client("kms").get_key_rotation_status(KeyId=deployed.outputs["DataKeyArn"])["KeyRotationEnabled"]


def test_secret_rotation_against_the_stack(deployed: Deployment) -> None:
    """A configuration secret rotates to a given value (no provider involved), notifying on the stack's bus."""
    from app import app

    if "/secrets/{secret_id}/rotate" not in app.routes:
        pytest.skip("secret rotation has no route in this build")
    secret_id = f"deploy/{uuid.uuid4().hex[:8]}"
    with deployed.api() as api:
        stored = api.post("/secrets", json={"secretId": secret_id, "type": "configuration",
                                            "value": json.dumps({"replicas": 2})})
        assert stored.status_code == 201, stored.text
        rotated = api.post(secret_url(secret_id, "rotate"),
                           json={"value": json.dumps({"replicas": 3}), "strategy": "immediate"})
        assert rotated.status_code == 200 and rotated.json()["status"] == "completed", rotated.text
        read = api.get(secret_url(secret_id)).json()
        assert (read["version"], json.loads(read["value"])) == (2, {"replicas": 3})
