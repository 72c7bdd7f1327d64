"""DynamoDB storage of secrets and their versions (the SecretRepository adapter).

Every write goes through :meth:`DynamoSecretRepository.commit`, which puts the new META item
(guarded by its revision), the new version (guarded by ``attribute_not_exists``) and the
audit event in one ``TransactWriteItems``: a change without its audit record cannot exist,
and concurrent writers are serialized by DynamoDB conditions, not by locks.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.audit.events import AuditDraft, AuditEvent
from chalicelib.audit.stream import AuditWriter, TransactionCancelled
from chalicelib.errors import DependencyUnavailable, InvalidRequest
from chalicelib.tables import SCHEDULE_INDEX, SECRET_LIST_INDEX
from chalicelib.vault.records import SecretRecord, VersionRecord

META = "META"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class StaleRecord(Exception):
    """The META item changed since it was read (another writer won), or already exists."""


def secret_pk(secret_id: str) -> str:
    return f"SECRET#{secret_id}"


def version_sk(version: int) -> str:
    return f"V#{version:010d}"


def to_attributes(data: dict[str, Any]) -> dict[str, Any]:
    """Plain Python data (datetimes, bytes, nested dicts) to DynamoDB attribute values."""
    return {k: _serializer.serialize(_plain(v)) for k, v in data.items() if v is not None}


def from_attributes(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _unplain(_deserializer.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, Binary):
        return bytes(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def record_item(record: SecretRecord) -> dict[str, Any]:
    data = record.model_dump(mode="python")
    data.update(pk=secret_pk(record.secret_id), sk=META, kind="SECRET")
    return to_attributes(data)


def version_item(version: VersionRecord) -> dict[str, Any]:
    data = version.model_dump(mode="python")
    data.update(pk=secret_pk(version.secret_id), sk=version_sk(version.version))
    return to_attributes(data)


def dynamodb_call(operation: str, method: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a DynamoDB client method; any failure becomes a 503 naming DynamoDB."""
    try:
        result: dict[str, Any] = method(**kwargs)
        return result
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        raise DependencyUnavailable("dynamodb", f"{operation} failed: {code}") from None
    except BotoCoreError as error:
        raise DependencyUnavailable("dynamodb", f"{operation} failed: {type(error).__name__}") from None


class DynamoSecretRepository:
    """Reads and writes secrets in the secrets table; writes carry their audit event.

    Example::

        repo = DynamoSecretRepository(client("dynamodb"), "v-secure-secrets", get_audit_writer())
        record = repo.get("db_password")
    """

    def __init__(self, dynamodb: Any, table: str, audit: AuditWriter) -> None:
        self._db = dynamodb
        self._table = table
        self.audit = audit

    # --- reads ---------------------------------------------------------------------------

    def get(self, secret_id: str, *, consistent: bool = True) -> SecretRecord | None:
        item = self._call("GetItem", self._db.get_item, TableName=self._table,
                          Key={"pk": {"S": secret_pk(secret_id)}, "sk": {"S": META}},
                          ConsistentRead=consistent).get("Item")
        return SecretRecord.model_validate(from_attributes(item)) if item else None

    def get_version(self, secret_id: str, version: int) -> VersionRecord | None:
        item = self._call("GetItem", self._db.get_item, TableName=self._table,
                          Key={"pk": {"S": secret_pk(secret_id)}, "sk": {"S": version_sk(version)}},
                          ConsistentRead=True).get("Item")
        return VersionRecord.model_validate(from_attributes(item)) if item else None

    def list_versions(self, secret_id: str) -> list[VersionRecord]:
        return [VersionRecord.model_validate(from_attributes(item))
                for item in self._query_all(
                    KeyConditionExpression="pk = :pk AND begins_with(sk, :v)",
                    ExpressionAttributeValues={":pk": {"S": secret_pk(secret_id)}, ":v": {"S": "V#"}},
                    ConsistentRead=True)]

    def list_secrets(self, *, prefix: str | None, limit: int,
                     next_token: str | None) -> tuple[list[SecretRecord], str | None]:
        """One page of secrets in id order from the listing index (never a scan)."""
        condition = "kind = :k"
        values: dict[str, Any] = {":k": {"S": "SECRET"}}
        if prefix:
            condition += " AND begins_with(secret_id, :p)"
            values[":p"] = {"S": prefix}
        kwargs: dict[str, Any] = {"TableName": self._table, "IndexName": SECRET_LIST_INDEX,
                                  "KeyConditionExpression": condition,
                                  "ExpressionAttributeValues": values, "Limit": limit}
        if next_token:
            kwargs["ExclusiveStartKey"] = _decode_token(next_token)
        answer = self._call("Query", self._db.query, **kwargs)
        records = [SecretRecord.model_validate(from_attributes(i)) for i in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return records, (_encode_token(last) if last else None)

    def scheduled(self, kind: str, until: str, limit: int = 100) -> list[SecretRecord]:
        """Secrets with something of ``kind`` (``ROTATION``, ``PURGE``) due at or before ``until``."""
        answer = self._call("Query", self._db.query, TableName=self._table, IndexName=SCHEDULE_INDEX,
                            KeyConditionExpression="sched_pk = :k AND sched_at <= :t",
                            ExpressionAttributeValues={":k": {"S": kind}, ":t": {"S": until}}, Limit=limit)
        return [SecretRecord.model_validate(from_attributes(i)) for i in answer.get("Items", [])]

    # --- writes --------------------------------------------------------------------------

    def commit(self, draft: AuditDraft, *, record: SecretRecord, expected_rev: int | None,
               new_version: VersionRecord | None = None, destroy_versions: tuple[int, ...] = (),
               extra_items: tuple[dict[str, Any], ...] = ()) -> AuditEvent:
        """Write ``record`` (and a new version) with its audit event, atomically.

        ``expected_rev`` None means "create": the META item must not exist yet. Raises
        :class:`StaleRecord` when another writer got there first.
        """
        items = [self._meta_put(record, expected_rev)]
        if new_version is not None:
            items.append({"Put": {"TableName": self._table, "Item": version_item(new_version),
                                  "ConditionExpression": "attribute_not_exists(pk)"}})
        items.extend(self._destroy_item(record.secret_id, v, record.updated_at) for v in destroy_versions)
        items.extend(extra_items)
        try:
            return self.audit.commit(draft, items)
        except TransactionCancelled as cancelled:
            if cancelled.reasons[0] == "ConditionalCheckFailed" or (
                    new_version is not None and cancelled.reasons[1] == "ConditionalCheckFailed"):
                raise StaleRecord(record.secret_id) from None
            raise

    def record_event(self, draft: AuditDraft,
                     extra_items: tuple[dict[str, Any], ...] = ()) -> AuditEvent:
        """An audit event with no change (a read), optionally with counters in the same transaction."""
        return self.audit.commit(draft, list(extra_items))

    def destroy_versions(self, secret_id: str, versions: list[int], when: datetime) -> None:
        """Crypto-shred: remove ciphertexts and wrapped keys of ``versions`` (idempotent)."""
        for version in versions:
            update = self._destroy_item(secret_id, version, when)["Update"]
            self._call("UpdateItem", self._db.update_item, **update)

    def _meta_put(self, record: SecretRecord, expected_rev: int | None) -> dict[str, Any]:
        put: dict[str, Any] = {"TableName": self._table, "Item": record_item(record)}
        if expected_rev is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "rev = :rev"
            put["ExpressionAttributeValues"] = {":rev": {"N": str(expected_rev)}}
        return {"Put": put}

    def _destroy_item(self, secret_id: str, version: int, when: datetime) -> dict[str, Any]:
        return {"Update": {
            "TableName": self._table,
            "Key": {"pk": {"S": secret_pk(secret_id)}, "sk": {"S": version_sk(version)}},
            "UpdateExpression": "REMOVE envelope SET destroyed_at = if_not_exists(destroyed_at, :t)",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": {":t": {"S": when.isoformat()}},
        }}

    def _query_all(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        kwargs["TableName"] = self._table
        while True:
            answer = self._call("Query", self._db.query, **kwargs)
            yield from answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    _call = staticmethod(dynamodb_call)


def _encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _decode_token(token: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("nextToken is not valid") from None
    if not isinstance(key, dict) or set(key) - {"pk", "sk", "kind", "secret_id"}:
        raise InvalidRequest("nextToken is not valid")
    return key
