"""The audit HMAC key: created once, stored wrapped, shared by every process; Vault-style hashes."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.audit.hashing import KEY_CONTEXT, AuditHasher
from tests.fakes import FakeKeyProvider


class FakeTable:
    """get_item / put_item with ``attribute_not_exists`` on one table, like DynamoDB."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.puts = 0

    def get_item(self, *, TableName: str, Key: dict[str, Any], ConsistentRead: bool) -> dict[str, Any]:
        found = self.items.get((Key["pk"]["S"], Key["sk"]["S"]))
        return {"Item": found} if found else {}

    def put_item(self, *, TableName: str, Item: dict[str, Any], ConditionExpression: str) -> None:
        self.puts += 1
        key = (Item["pk"]["S"], Item["sk"]["S"])
        if key in self.items:
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "PutItem")
        self.items[key] = Item


def test_hash_is_hmac_sha256_under_the_stored_key() -> None:
    table, keys = FakeTable(), FakeKeyProvider()
    hasher = AuditHasher(table, "secrets", keys)
    hashed = hasher.hash("sk_live_candidate")
    item = table.items[("SYSTEM", "AUDIT_HMAC")]
    plaintext = keys.decrypt_data_key(item["wrapped"]["B"], item["kid"]["S"], KEY_CONTEXT)
    assert hashed == "hmac-sha256:" + hmac.new(plaintext, b"sk_live_candidate", hashlib.sha256).hexdigest()
    assert plaintext not in item["wrapped"]["B"]  # stored wrapped, never in the clear
    assert hasher.hash("sk_live_candidate") == hashed and hasher.hash("other") != hashed


def test_every_process_uses_the_first_stored_key() -> None:
    table, keys = FakeTable(), FakeKeyProvider()
    first = AuditHasher(table, "secrets", keys).hash("v")
    second = AuditHasher(table, "secrets", keys)
    assert second.hash("v") == first and table.puts == 1


def test_a_lost_race_uses_the_winners_key() -> None:
    table, keys = FakeTable(), FakeKeyProvider()
    winner = AuditHasher(table, "secrets", keys)
    loser = AuditHasher(table, "secrets", keys)
    original_get = table.get_item
    calls = {"n": 0}

    def get_then_race(**kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:  # the loser saw no key, then the winner stored one
            answer = original_get(**kwargs)
            winner.hash("warm-up")
            return answer
        return original_get(**kwargs)

    table.get_item = get_then_race  # type: ignore[method-assign]
    assert loser.hash("v") == winner.hash("v")


def test_storage_failure_is_a_503_naming_dynamodb() -> None:
    class Broken(FakeTable):
        def get_item(self, **kwargs: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "GetItem")

    from chalicelib.errors import DependencyUnavailable

    with pytest.raises(DependencyUnavailable) as failed:
        AuditHasher(Broken(), "secrets", FakeKeyProvider()).hash("v")
    assert failed.value.dependency == "dynamodb"
