"""credstash, the peer measured in the same run, against the same moto server.

credstash (PyPI) keeps secrets in a DynamoDB table (``credential-store``: ``name`` hash key,
zero-padded ``version`` range key) encrypted under KMS data keys (alias ``alias/credstash``).
Its ``putSecret`` is one KMS ``GenerateDataKey`` and one ``PutItem``; its ``getSecret`` of the
latest version is one ``Query`` and one KMS ``Decrypt`` (it caches nothing).

It is a library call: no HTTP hop, no authentication, no authorization, no audit event. Our
store/retrieve are measured both through the HTTP API and in-process on the service layer
(:class:`chalicelib.vault.service.VaultService`), so one ratio compares like with like.

Example::

    peer = Credstash.connect("http://127.0.0.1:4566")
    peer.put("bench-peer", "value", 1)
    assert peer.get("bench-peer") == "value"
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

TABLE = "credential-store"
KEY_ALIAS = "alias/credstash"

# The same client settings chalicelib.aws gives our clients, so neither side has an edge.
CLIENT_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=10,
                       max_pool_connections=50, tcp_keepalive=True)


@dataclass
class Credstash:
    """credstash bound to its own boto3 session and clients (pointed at ``endpoint``)."""

    session: boto3.session.Session
    dynamodb: Any
    kms: Any

    @classmethod
    def connect(cls, endpoint: str, region: str = "us-east-1") -> Credstash:
        """Clients for ``endpoint``; creates the table and the key alias unless they exist."""
        session = boto3.session.Session(region_name=region)
        peer = cls(session=session,
                   dynamodb=session.resource("dynamodb", endpoint_url=endpoint, config=CLIENT_CONFIG),
                   kms=session.client("kms", endpoint_url=endpoint, config=CLIENT_CONFIG))
        peer._ensure_table()
        peer._ensure_key()
        return peer

    def put(self, name: str, value: str, version: int) -> None:
        """``credstash.putSecret`` of ``version`` (credstash wants explicit versions)."""
        import credstash

        credstash.putSecret(name, value, version=str(version), kms_key=KEY_ALIAS, table=TABLE,
                            kms=self.kms, dynamodb=self.dynamodb)

    def get(self, name: str) -> str:
        """``credstash.getSecret`` of the latest version."""
        import credstash

        value: str = credstash.getSecret(name, table=TABLE, kms=self.kms, dynamodb=self.dynamodb)
        return value

    def count_calls(self, operation: Any) -> list[str]:
        """The AWS calls ``operation()`` makes through this peer's clients."""
        calls: list[str] = []

        def hook(model: Any, **_: Any) -> None:
            calls.append(f"{model.service_model.endpoint_prefix}.{model.name}")

        emitters = [self.dynamodb.meta.client.meta.events, self.kms.meta.events]
        for emitter in emitters:
            emitter.register("before-call", hook, unique_id="bench-credstash-counter")
        try:
            operation()
        finally:
            for emitter in emitters:
                emitter.unregister("before-call", hook, unique_id="bench-credstash-counter")
        return calls

    def _ensure_table(self) -> None:
        db = self.dynamodb.meta.client
        try:
            db.describe_table(TableName=TABLE)
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        # credstash.createDdbTable's schema, on demand instead of 1 RCU/WCU.
        db.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "name", "KeyType": "HASH"},
                                   {"AttributeName": "version", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"},
                                              {"AttributeName": "version", "AttributeType": "S"}])
        deadline = time.monotonic() + 60
        while db.describe_table(TableName=TABLE)["Table"]["TableStatus"] != "ACTIVE":
            if time.monotonic() > deadline:
                raise RuntimeError(f"table {TABLE} did not become ACTIVE")
            time.sleep(0.2)

    def _ensure_key(self) -> None:
        try:
            self.kms.describe_key(KeyId=KEY_ALIAS)
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NotFoundException":
                raise
        key_id = self.kms.create_key(Description="credstash (bench peer)")["KeyMetadata"]["KeyId"]
        self.kms.create_alias(AliasName=KEY_ALIAS, TargetKeyId=key_id)
