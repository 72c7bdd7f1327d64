"""infra/stateful.yaml: the tables match chalicelib/tables.py, and every protection is declared.

These checks read the template itself. They also cover what the moto deploy test cannot see,
because moto's CloudFormation ignores it: table TTL and point-in-time recovery, the bucket's
Object Lock and versioning, the KMS key specs and the bucket policy.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import tables
from chalicelib.config import Settings
from tests.aws_actions import CANONICAL
from tests.cfn_template import REPO, Resolver, load_template

STATEFUL = REPO / "infra" / "stateful.yaml"
APP_MERGE = REPO / "infra" / "app.yaml"
CRYPTO_ACTIONS = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKey*", "kms:ReEncrypt*",
                  "kms:Sign", "kms:*"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(STATEFUL)


@pytest.fixture(scope="module")
def resolved(template: dict[str, Any]) -> dict[str, Any]:
    """Resources with the default parameters (NamePrefix=v-secure)."""
    result: dict[str, Any] = Resolver(template).resolve(template["Resources"])
    return result


def _by_name(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def _table_layout(definition: dict[str, Any]) -> dict[str, Any]:
    return {
        "KeySchema": definition["KeySchema"],
        "AttributeDefinitions": sorted(definition["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
        "GlobalSecondaryIndexes": _by_name(definition.get("GlobalSecondaryIndexes", []), "IndexName"),
        "BillingMode": definition["BillingMode"],
    }


@pytest.mark.parametrize(("logical_id", "definition"), [
    ("SecretsTable", tables.secrets_table_definition),
    ("AuditTable", tables.audit_table_definition),
])
def test_tables_match_chalicelib_tables(resolved: dict[str, Any], logical_id: str, definition: Any) -> None:
    properties = resolved[logical_id]["Properties"]
    expected = definition(properties["TableName"])
    assert _table_layout(properties) == _table_layout(expected)


def test_table_names_are_the_production_names(resolved: dict[str, Any]) -> None:
    assert resolved["SecretsTable"]["Properties"]["TableName"] == CANONICAL["secrets_table"]
    assert resolved["AuditTable"]["Properties"]["TableName"] == CANONICAL["audit_table"]
    assert resolved["AuditBucket"]["Properties"]["BucketName"] == CANONICAL["audit_bucket"]
    assert resolved["EventBus"]["Properties"]["Name"] == CANONICAL["event_bus"]
    assert resolved["DataKeyAlias"]["Properties"]["AliasName"] == CANONICAL["kms_key_id"]
    assert resolved["SigningKeyAlias"]["Properties"]["AliasName"] == CANONICAL["audit_signing_key_id"]


@pytest.mark.parametrize("logical_id", ["SecretsTable", "AuditTable"])
def test_tables_are_protected(template: dict[str, Any], resolved: dict[str, Any], logical_id: str) -> None:
    """On-demand, PITR, SSE with the customer key, deletion protection, retained on stack delete."""
    properties = resolved[logical_id]["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS",
                                              "KMSMasterKeyId": "<DataKey.Arn>"}
    assert properties["DeletionProtectionEnabled"] is True
    assert template["Resources"][logical_id]["DeletionPolicy"] == "Retain"
    assert template["Resources"][logical_id]["UpdateReplacePolicy"] == "Retain"


def test_ttl_on_the_secrets_table_only(resolved: dict[str, Any]) -> None:
    assert resolved["SecretsTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": tables.TTL_ATTRIBUTE, "Enabled": True}
    assert tables.TTL_ATTRIBUTE == "ttl"
    assert "TimeToLiveSpecification" not in resolved["AuditTable"]["Properties"]


def test_kms_keys(template: dict[str, Any], resolved: dict[str, Any]) -> None:
    data = resolved["DataKey"]["Properties"]
    assert (data["KeySpec"], data["KeyUsage"], data["EnableKeyRotation"]) == (
        "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", True)
    signing = resolved["SigningKey"]["Properties"]
    assert (signing["KeySpec"], signing["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    for logical_id in ("DataKey", "SigningKey"):
        assert template["Resources"][logical_id]["DeletionPolicy"] == "Retain"


def _statements(resolved: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    return _by_name(resolved[key]["Properties"]["KeyPolicy"]["Statement"], "Sid")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def function_names() -> set[str]:
    """The Lambda functions ``chalice package`` creates: the API handler and each scheduled one."""
    from app import app

    return {"api_handler", *(source.name for source in app.event_sources)}


def test_key_policies_name_exactly_the_function_roles(resolved: dict[str, Any]) -> None:
    expected = {f"arn:aws:iam::123456789012:role/v-secure-{name}" for name in function_names()}
    checked = 0
    for key in ("DataKey", "SigningKey"):
        for statement in _statements(resolved, key).values():
            if not statement["Sid"].startswith("App"):
                continue
            assert set(_as_list(statement["Condition"]["ArnEquals"]["aws:PrincipalArn"])) == expected, \
                statement["Sid"]
            checked += 1
    assert checked == 4


def test_data_key_use_requires_an_encryption_context(resolved: dict[str, Any]) -> None:
    statements = _statements(resolved, "DataKey")
    secrets = statements["AppWrapsSecretDataKeys"]["Condition"]
    assert secrets["ForAnyValue:StringEquals"] == {"kms:EncryptionContextKeys": "secret_id"}
    assert set(secrets["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == {"secret_id", "version", "type"}
    checks = statements["AppKeyChecks"]["Condition"]
    assert checks["ForAllValues:StringEquals"] == {"kms:EncryptionContextKeys": ["purpose"]}
    assert "health-check" in checks["StringEquals"]["kms:EncryptionContext:purpose"]
    via = statements["TablesAndAuditBucketThroughTheirServices"]["Condition"]["StringEquals"]
    assert set(via["kms:ViaService"]) == {"dynamodb.us-east-1.amazonaws.com", "s3.us-east-1.amazonaws.com"}


def test_key_administrators_cannot_use_the_keys(resolved: dict[str, Any]) -> None:
    for key in ("DataKey", "SigningKey"):
        admin = _statements(resolved, key)["KeyAdministration"]
        assert not CRYPTO_ACTIONS & set(admin["Action"]), key
        assert "Condition" not in admin  # KeyAdminRoleArn empty by default: account-wide, admin actions only


def test_key_admin_role_parameter_narrows_administration(template: dict[str, Any]) -> None:
    role = "arn:aws:iam::123456789012:role/security-admin"
    resources = Resolver(template, {"KeyAdminRoleArn": role}).resolve(template["Resources"])
    admin = _statements(resources, "DataKey")["KeyAdministration"]
    assert admin["Condition"] == {"ArnEquals": {"aws:PrincipalArn": role}}


def test_signing_is_restricted_to_the_algorithm_the_sealer_uses(resolved: dict[str, Any]) -> None:
    from chalicelib.audit import sealer

    sign = _statements(resolved, "SigningKey")["AppSignsAuditDigests"]
    assert sign["Action"] == ["kms:Sign"]
    assert sign["Condition"]["StringEquals"]["kms:SigningAlgorithm"] == sealer.SIGNING_ALGORITHM


def test_audit_bucket_object_lock_versioning_encryption(template: dict[str, Any], resolved: dict[str, Any]) -> None:
    properties = resolved["AuditBucket"]["Properties"]
    assert properties["ObjectLockEnabled"] is True
    assert properties["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": "2555"}}}
    assert template["Parameters"]["AuditRetentionDays"]["Default"] == Settings().retention_days == 2555
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [{
        "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "<DataKey.Arn>"},
        "BucketKeyEnabled": True}]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert template["Resources"]["AuditBucket"]["DeletionPolicy"] == "Retain"


def test_bucket_policy_denies_plain_http_and_deletion(resolved: dict[str, Any]) -> None:
    policy = resolved["AuditBucketPolicy"]["Properties"]
    assert policy["Bucket"] == "<AuditBucket>"
    statements = _by_name(policy["PolicyDocument"]["Statement"], "Sid")
    tls = statements["DenyInsecureTransport"]
    assert (tls["Effect"], tls["Principal"], tls["Action"]) == ("Deny", "*", "s3:*")
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    deletion = statements["DenyObjectDeletionAndRetentionBypass"]
    assert (deletion["Effect"], deletion["Principal"]) == ("Deny", "*")
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"} <= set(deletion["Action"])
    assert set(deletion["Resource"]) == {"<AuditBucket.Arn>", "<AuditBucket.Arn>/*"}


def test_sealed_uploads_may_name_the_data_key_by_alias(resolved: dict[str, Any]) -> None:
    """The sealer sends ``SSEKMSKeyId=<V_SECURE_KMS_KEY_ID>`` (an alias): the bucket policy accepts it."""
    statements = _by_name(resolved["AuditBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"], "Sid")
    allowed = statements["DenyUnencryptedOrForeignKeyUploads"]["Condition"]["StringNotEqualsIfExists"][
        "s3:x-amz-server-side-encryption-aws-kms-key-id"]
    assert CANONICAL["kms_key_id"] in allowed


def test_outputs_cover_every_resource_setting(template: dict[str, Any]) -> None:
    mapping: dict[str, str] = template["Metadata"]["VSecure"]["EnvironmentOutputs"]
    fields = {f"V_SECURE_{name.upper()}" for name in Settings.model_fields} | {"V_SECURE_AWS_REGION"}
    assert set(mapping.values()) <= fields
    assert {"V_SECURE_SECRETS_TABLE", "V_SECURE_AUDIT_TABLE", "V_SECURE_AUDIT_BUCKET", "V_SECURE_EVENT_BUS",
            "V_SECURE_KMS_KEY_ID", "V_SECURE_AUDIT_SIGNING_KEY_ID", "V_SECURE_RETENTION_DAYS"} <= set(mapping.values())
    resolver = Resolver(template)
    for output in mapping:
        spec = template["Outputs"][output]
        assert resolver.resolve(spec["Export"]["Name"]) == f"v-secure-stateful-{output}"


def test_app_stack_imports_every_output() -> None:
    mapping = load_template(STATEFUL)["Metadata"]["VSecure"]["EnvironmentOutputs"]
    variables = load_template(APP_MERGE)["Globals"]["Function"]["Environment"]["Variables"]
    imported = {name: value["Fn::ImportValue"]["Fn::Sub"] for name, value in variables.items()
                if isinstance(value, dict) and "Fn::ImportValue" in value}
    assert imported == {env: f"${{StatefulStackName}}-{output}" for output, env in mapping.items()}


def test_cfn_lint_passes() -> None:
    from cfnlint.api import lint_file

    assert [str(match) for match in lint_file(STATEFUL)] == []
