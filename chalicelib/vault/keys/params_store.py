"""DynamoDB home of the passphrase provider's salt, iteration count and key check."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

_KEY = {"pk": {"S": "SYSTEM"}, "sk": {"S": "KEYPARAMS#passphrase"}}


class DynamoKeyParamsStore:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def load(self) -> tuple[bytes, int, str] | None:
        item = self._db.get_item(TableName=self._table, Key=_KEY, ConsistentRead=True).get("Item")
        if not item:
            return None
        return bytes(item["salt"]["B"]), int(item["iterations"]["N"]), item["check"]["S"]

    def save_if_absent(self, salt: bytes, iterations: int, check: str) -> tuple[bytes, int, str]:
        try:
            self._db.put_item(
                TableName=self._table,
                Item={**_KEY, "salt": {"B": salt}, "iterations": {"N": str(iterations)},
                      "check": {"S": check}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            return salt, iterations, check
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        stored = self.load()
        assert stored is not None
        return stored
