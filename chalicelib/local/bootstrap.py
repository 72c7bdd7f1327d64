"""Create the AWS resources v-secure needs, idempotently, through ``chalicelib.aws.client``.

Works against the embedded moto server, LocalStack or a real account: only the endpoint
differs, and every step only uses public AWS APIs. Each step first checks whether its resource
exists, so running the bootstrap twice changes nothing (``BootstrapResult.created`` is empty the
second time).

What it creates (names come from :class:`chalicelib.config.Settings`):

- the secrets table (TTL on ``ttl``) and the audit table, from :mod:`chalicelib.tables`;
- a symmetric KMS key for data keys, alias ``kms_key_id``;
- an ECC_NIST_P256 SIGN_VERIFY KMS key for audit digests, alias ``audit_signing_key_id``;
- the audit bucket with Object Lock (COMPLIANCE, ``retention_days``), versioning, SSE-KMS with
  the data key and all public access blocked;
- the EventBridge bus ``event_bus``, an SQS queue ``<event_bus>-events`` and a rule on the bus
  (``source = v-secure``) that forwards to the queue, so tests and developers can read events.

Example::

    from chalicelib.config import get_settings
    from chalicelib.local.bootstrap import bootstrap_resources

    result = bootstrap_resources(get_settings())
    print(result.created)  # ["dynamodb:v-secure-secrets", ...] the first time, [] afterwards
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws import client
from chalicelib.config import Settings
from chalicelib.tables import TTL_ATTRIBUTE, audit_table_definition, secrets_table_definition

logger = logging.getLogger(__name__)

EVENT_SOURCE = "v-secure"
SIGNING_KEY_SPEC = "ECC_NIST_P256"
_TAGS = [{"Key": "app", "Value": "v-secure"}]


class BootstrapError(RuntimeError):
    """An existing resource is not what v-secure needs (wrong key spec, Object Lock off...)."""


@dataclass
class BootstrapResult:
    """What the bootstrap found or created; ``created`` lists what this run created."""

    secrets_table: str
    audit_table: str
    data_key_arn: str
    signing_key_arn: str
    audit_bucket: str
    event_bus_arn: str
    events_queue_url: str
    events_queue_arn: str
    events_rule_arn: str
    created: list[str] = field(default_factory=list)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


# --- DynamoDB -------------------------------------------------------------------------------

def ensure_table(definition: dict[str, Any], *, ttl_attribute: str | None = None,
                 timeout: float = 300) -> bool:
    """Create the table unless it exists, wait until ACTIVE, enable TTL; True if created.

    Example::

        ensure_table(secrets_table_definition("v-secure-secrets"), ttl_attribute="ttl")
    """
    dynamodb = client("dynamodb")
    name = definition["TableName"]
    created = False
    try:
        status = dynamodb.describe_table(TableName=name)["Table"]["TableStatus"]
    except ClientError as error:
        if _error_code(error) != "ResourceNotFoundException":
            raise
        try:
            status = dynamodb.create_table(**definition)["TableDescription"]["TableStatus"]
            created = True
        except ClientError as create_error:
            if _error_code(create_error) != "ResourceInUseException":  # created meanwhile
                raise
            status = "CREATING"
    deadline = time.monotonic() + timeout
    while status != "ACTIVE":
        if time.monotonic() > deadline:
            raise BootstrapError(f"table {name} is still {status} after {timeout:.0f}s")
        time.sleep(1)
        status = dynamodb.describe_table(TableName=name)["Table"]["TableStatus"]
    if ttl_attribute:
        _ensure_ttl(name, ttl_attribute)
    return created


def _ensure_ttl(table: str, attribute: str) -> None:
    dynamodb = client("dynamodb")
    description = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if description.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        if description.get("AttributeName") != attribute:
            raise BootstrapError(f"table {table} has TTL on {description.get('AttributeName')!r}, "
                                 f"expected {attribute!r}")
        return
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute})


# --- KMS ------------------------------------------------------------------------------------

def ensure_kms_key(key_id: str, *, key_spec: str, key_usage: str, description: str) -> tuple[str, bool]:
    """Resolve ``key_id``; if it is an alias that does not exist, create key + alias.

    Returns ``(key ARN, created)``. A key id or ARN (not an alias) must already exist.

    Example::

        arn, created = ensure_kms_key("alias/v-secure-data", key_spec="SYMMETRIC_DEFAULT",
                                      key_usage="ENCRYPT_DECRYPT", description="data keys")
    """
    kms = client("kms")
    try:
        metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as error:
        if _error_code(error) != "NotFoundException" or not key_id.startswith("alias/"):
            raise
        metadata = kms.create_key(KeySpec=key_spec, KeyUsage=key_usage, Description=description,
                                  Tags=[{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _TAGS])[
            "KeyMetadata"]
        if key_spec == "SYMMETRIC_DEFAULT":
            kms.enable_key_rotation(KeyId=metadata["KeyId"])
        try:
            kms.create_alias(AliasName=key_id, TargetKeyId=metadata["KeyId"])
        except ClientError as alias_error:
            if _error_code(alias_error) != "AlreadyExistsException":
                raise
            # Another bootstrap won the race: use its key, retire ours.
            kms.schedule_key_deletion(KeyId=metadata["KeyId"], PendingWindowInDays=7)
            return ensure_kms_key(key_id, key_spec=key_spec, key_usage=key_usage,
                                  description=description)[0], False
        return str(metadata["Arn"]), True
    found_spec = metadata.get("KeySpec") or metadata.get("CustomerMasterKeySpec")
    if found_spec != key_spec or metadata.get("KeyUsage") != key_usage:
        raise BootstrapError(f"KMS key {key_id} is {found_spec}/{metadata.get('KeyUsage')}, "
                             f"expected {key_spec}/{key_usage}")
    if metadata.get("KeyState") not in ("Enabled", None):
        raise BootstrapError(f"KMS key {key_id} is {metadata.get('KeyState')}")
    return str(metadata["Arn"]), False


# --- S3 -------------------------------------------------------------------------------------

def ensure_audit_bucket(bucket: str, *, region: str, retention_days: int, kms_key_arn: str) -> bool:
    """Bucket with Object Lock (COMPLIANCE default retention), versioning, SSE-KMS; True if created.

    Example::

        ensure_audit_bucket("v-secure-audit", region="us-east-1", retention_days=2555,
                            kms_key_arn="arn:aws:kms:...")
    """
    s3 = client("s3")
    created = False
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if _error_code(error) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        arguments: dict[str, Any] = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}
        if region != "us-east-1":
            arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**arguments)
        created = True

    if s3.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    wanted_lock = {"ObjectLockEnabled": "Enabled",
                   "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": retention_days}}}
    if _object_lock(bucket) != wanted_lock:
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=wanted_lock)

    wanted_encryption = {"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_arn},
        "BucketKeyEnabled": True,
    }]}
    if _encryption(bucket) != wanted_encryption:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=wanted_encryption)

    block_all = {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                 "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    try:
        current_block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as error:
        if _error_code(error) != "NoSuchPublicAccessBlockConfiguration":
            raise
        current_block = {}
    if current_block != block_all:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block_all)
    return created


def _object_lock(bucket: str) -> dict[str, Any]:
    try:
        found = client("s3").get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError as error:
        if _error_code(error) != "ObjectLockConfigurationNotFoundError":
            raise
        raise BootstrapError(
            f"bucket {bucket} exists without Object Lock; the audit bucket must be created with it "
            "(delete it, or point V_SECURE_AUDIT_BUCKET at another name)") from error
    retention = dict(found.get("Rule", {}).get("DefaultRetention", {}))
    retention = {key: value for key, value in retention.items() if value}  # moto adds "Years": 0
    return {"ObjectLockEnabled": found.get("ObjectLockEnabled"),
            **({"Rule": {"DefaultRetention": retention}} if retention else {})}


def _encryption(bucket: str) -> dict[str, Any]:
    try:
        return dict(client("s3").get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"])
    except ClientError as error:
        if _error_code(error) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        return {}


# --- EventBridge + SQS ----------------------------------------------------------------------

def ensure_event_bus(name: str) -> tuple[str, bool]:
    """Create the bus unless it exists; returns ``(bus ARN, created)``.

    Example::

        arn, created = ensure_event_bus("v-secure")
    """
    events = client("events")
    try:
        return str(events.describe_event_bus(Name=name)["Arn"]), False
    except ClientError as error:
        if _error_code(error) != "ResourceNotFoundException":
            raise
    return str(events.create_event_bus(Name=name)["EventBusArn"]), True


def ensure_events_queue(queue_name: str) -> tuple[str, str, bool]:
    """Create the SQS queue unless it exists; returns ``(queue URL, queue ARN, created)``.

    Example::

        url, arn, created = ensure_events_queue("v-secure-events")
    """
    sqs = client("sqs")
    created = False
    try:
        url = str(sqs.get_queue_url(QueueName=queue_name)["QueueUrl"])
    except ClientError as error:
        if _error_code(error) not in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise
        url = str(sqs.create_queue(QueueName=queue_name)["QueueUrl"])
        created = True
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, str(arn), created


def ensure_forwarding_rule(*, bus: str, rule_name: str, queue_url: str, queue_arn: str,
                           source: str = EVENT_SOURCE) -> tuple[str, bool]:
    """A rule on ``bus`` matching ``source`` that targets the queue; returns ``(rule ARN, created)``.

    Also gives EventBridge permission to send to the queue (ignored by moto, needed on AWS).

    Example::

        ensure_forwarding_rule(bus="v-secure", rule_name="v-secure-events-forward",
                               queue_url=url, queue_arn=arn)
    """
    events = client("events")
    pattern = json.dumps({"source": [source]})
    created = False
    try:
        rule = events.describe_rule(Name=rule_name, EventBusName=bus)
        rule_arn = str(rule["Arn"])
        same_pattern = json.loads(rule.get("EventPattern") or "{}") == json.loads(pattern)
        if not same_pattern or rule.get("State") != "ENABLED":
            events.put_rule(Name=rule_name, EventBusName=bus, EventPattern=pattern, State="ENABLED")
    except ClientError as error:
        if _error_code(error) != "ResourceNotFoundException":
            raise
        rule_arn = str(events.put_rule(Name=rule_name, EventBusName=bus, EventPattern=pattern,
                                       State="ENABLED", Description="v-secure events to SQS")["RuleArn"])
        created = True
    targets = events.list_targets_by_rule(Rule=rule_name, EventBusName=bus).get("Targets", [])
    if not any(target.get("Arn") == queue_arn for target in targets):
        events.put_targets(Rule=rule_name, EventBusName=bus,
                           Targets=[{"Id": "events-queue", "Arn": queue_arn}])
    _allow_eventbridge(queue_url, queue_arn, rule_arn)
    return rule_arn, created


def _allow_eventbridge(queue_url: str, queue_arn: str, rule_arn: str) -> None:
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "v-secure-events", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage", "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
    }]}
    sqs = client("sqs")
    current = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"]).get("Attributes", {})
    if json.loads(current.get("Policy") or "{}") != policy:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})


# --- all of it ------------------------------------------------------------------------------

def events_queue_name(settings: Settings) -> str:
    """The SQS queue that receives the bus's events: ``<event_bus>-events`` (``v-secure-events``)."""
    return f"{settings.event_bus}-events"


def bootstrap_resources(settings: Settings) -> BootstrapResult:
    """Ensure every resource exists (see the module docstring); safe to run again.

    Example::

        result = bootstrap_resources(get_settings())
        client("sqs").receive_message(QueueUrl=result.events_queue_url)
    """
    created: list[str] = []

    def note(kind: str, name: str, was_created: bool) -> None:
        if was_created:
            created.append(f"{kind}:{name}")
            logger.info("created %s %s", kind, name)

    note("dynamodb", settings.secrets_table,
         ensure_table(secrets_table_definition(settings.secrets_table), ttl_attribute=TTL_ATTRIBUTE))
    note("dynamodb", settings.audit_table, ensure_table(audit_table_definition(settings.audit_table)))

    data_key_arn, was_created = ensure_kms_key(
        settings.kms_key_id, key_spec="SYMMETRIC_DEFAULT", key_usage="ENCRYPT_DECRYPT",
        description="v-secure data-key wrapping key")
    note("kms", settings.kms_key_id, was_created)
    signing_key_arn, was_created = ensure_kms_key(
        settings.audit_signing_key_id, key_spec=SIGNING_KEY_SPEC, key_usage="SIGN_VERIFY",
        description="v-secure audit digest signing key")
    note("kms", settings.audit_signing_key_id, was_created)

    note("s3", settings.audit_bucket,
         ensure_audit_bucket(settings.audit_bucket, region=settings.region,
                             retention_days=settings.retention_days, kms_key_arn=data_key_arn))

    bus_arn, was_created = ensure_event_bus(settings.event_bus)
    note("events", settings.event_bus, was_created)
    queue_name = events_queue_name(settings)
    queue_url, queue_arn, was_created = ensure_events_queue(queue_name)
    note("sqs", queue_name, was_created)
    rule_name = f"{queue_name}-forward"
    rule_arn, was_created = ensure_forwarding_rule(bus=settings.event_bus, rule_name=rule_name,
                                                   queue_url=queue_url, queue_arn=queue_arn)
    note("events-rule", rule_name, was_created)

    return BootstrapResult(
        secrets_table=settings.secrets_table, audit_table=settings.audit_table,
        data_key_arn=data_key_arn, signing_key_arn=signing_key_arn, audit_bucket=settings.audit_bucket,
        event_bus_arn=bus_arn, events_queue_url=queue_url, events_queue_arn=queue_arn,
        events_rule_arn=rule_arn, created=created,
    )
