"""The floor: the AWS calls an operation needs, made bare on the same moto server.

A retrieve cannot be faster than the one ``GetItem`` it needs; ``retrieve / GetItem`` says
what authentication, authorization, decryption, the audit write and (through HTTP) the API
hop cost on top of it. The ``GetItem`` reads the very META item a retrieve reads, with the
same consistency, from a client built with the same settings as ours.

For a store the floor is its own two calls made bare: a KMS ``GenerateDataKey`` and one
``TransactWriteItems`` of the same three items (a copy of the secret's META item, a version
item and an audit event item). On moto a ``TransactWriteItems`` deep-copies every table it
touches (to roll back on failure), so it grows with the tables; the floor pays that too.
For a list it is the same ``Query`` page.

Example::

    floor = Floor.connect(endpoint, "v-secure-secrets", "v-secure-audit", "alias/v-secure-data")
    floor.get_meta("bench/hot")
"""

from __future__ import annotations

import copy
import itertools
import secrets as random
from dataclasses import dataclass, field
from typing import Any

import boto3

from bench.peers import CLIENT_CONFIG
from chalicelib.tables import AUDIT_BY_SECRET, SECRET_LIST_INDEX
from chalicelib.vault.storage import META, secret_pk, version_sk

FLOOR_PK = "FLOOR#store"


@dataclass
class Floor:
    """Plain boto3 clients outside ``chalicelib.aws`` (their calls are not counted as ours)."""

    dynamodb: Any
    kms: Any
    secrets_table: str
    audit_table: str
    key_id: str
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _stream: str = field(default_factory=lambda: f"STREAM#bench-floor-{random.token_hex(6)}")

    @classmethod
    def connect(cls, endpoint: str, secrets_table: str, audit_table: str, key_id: str,
                region: str = "us-east-1") -> Floor:
        session = boto3.session.Session(region_name=region)
        return cls(dynamodb=session.client("dynamodb", endpoint_url=endpoint, config=CLIENT_CONFIG),
                   kms=session.client("kms", endpoint_url=endpoint, config=CLIENT_CONFIG),
                   secrets_table=secrets_table, audit_table=audit_table, key_id=key_id)

    def get_meta(self, secret_id: str) -> dict[str, Any]:
        """``GetItem`` of the secret's META item (strongly consistent, as a retrieve reads it)."""
        item: dict[str, Any] = self.dynamodb.get_item(
            TableName=self.secrets_table, Key={"pk": {"S": secret_pk(secret_id)}, "sk": {"S": META}},
            ConsistentRead=True)["Item"]
        return item

    def store_like(self, meta: dict[str, Any], version: dict[str, Any], event: dict[str, Any]) -> None:
        """``GenerateDataKey`` + one ``TransactWriteItems`` of copies of a real META, version and event item."""
        seq = next(self._seq)
        self.kms.generate_data_key(KeyId=self.key_id, KeySpec="AES_256",
                                   EncryptionContext={"secret_id": FLOOR_PK, "version": str(seq), "type": "api_key"})
        meta_copy = {**meta, "pk": {"S": FLOOR_PK}, "sk": {"S": META}}
        meta_copy.pop("kind", None)  # stays out of the listing index
        version_copy = {**version, "pk": {"S": FLOOR_PK}, "sk": {"S": version_sk(seq)}}
        event_copy = {**event, "pk": {"S": self._stream}, "sk": {"N": str(seq)}}
        self.dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": self.secrets_table, "Item": meta_copy}},
            {"Put": {"TableName": self.secrets_table, "Item": version_copy,
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"TableName": self.audit_table, "Item": event_copy,
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ])

    def real_items(self, secret_id: str, version: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """A secret's META and version items and one audit event about it, as stored (for :meth:`store_like`)."""
        meta = self.get_meta(secret_id)
        stored = self.dynamodb.get_item(TableName=self.secrets_table, ConsistentRead=True,
                                        Key={"pk": {"S": secret_pk(secret_id)}, "sk": {"S": version_sk(version)}})
        events = self.dynamodb.query(TableName=self.audit_table, IndexName=AUDIT_BY_SECRET, Limit=1,
                                     ScanIndexForward=False, KeyConditionExpression="secret_id = :s",
                                     ExpressionAttributeValues={":s": {"S": secret_id}})["Items"]
        if not events:
            raise LookupError(f"no audit event about {secret_id}")
        return copy.deepcopy(meta), stored["Item"], events[0]

    def audit_page(self, secret_id: str, limit: int = 100) -> dict[str, Any]:
        """The ``Query`` an audit query by secret makes: its index partition, newest first, one page."""
        answer: dict[str, Any] = self.dynamodb.query(
            TableName=self.audit_table, IndexName=AUDIT_BY_SECRET, ScanIndexForward=False, Limit=limit,
            KeyConditionExpression="#h = :h AND #ts < :high", ExpressionAttributeNames={"#h": "secret_id", "#ts": "ts"},
            ExpressionAttributeValues={":h": {"S": secret_id}, ":high": {"S": "~"}})
        return answer

    def list_page(self, limit: int = 50) -> dict[str, Any]:
        """The ``Query`` a list of secrets makes for its first page."""
        answer: dict[str, Any] = self.dynamodb.query(
            TableName=self.secrets_table, IndexName=SECRET_LIST_INDEX, KeyConditionExpression="kind = :k",
            ExpressionAttributeValues={":k": {"S": "SECRET"}}, Limit=limit)
        return answer
