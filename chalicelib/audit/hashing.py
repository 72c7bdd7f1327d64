"""HMAC-SHA256 of request fields that could carry secrets, as Vault's audit devices do.

The 256-bit HMAC key is a data key of the key provider (``purpose=audit-hmac``): generated
once, stored *wrapped* in the secrets table (``pk=SYSTEM sk=AUDIT_HMAC``, conditional put, so
two processes racing keep the first), unwrapped once per process. An auditor who holds a
candidate value checks it with ``v-secure audit hash --value ...`` (``POST /audit/hash``), which
returns the same string the events contain.

Example::

    details = {"input": get_audit_hasher().hash(value)}   # "hmac-sha256:9f86d08..."
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DependencyUnavailable
from chalicelib.ports import KeyProvider

PREFIX = "hmac-sha256:"
STATE_PK = "SYSTEM"
HMAC_SK = "AUDIT_HMAC"
KEY_CONTEXT: Mapping[str, str] = {"purpose": "audit-hmac"}


class AuditHasher:
    """HMACs values with the audit HMAC key (created on first use, then read).

    Example::

        hasher = AuditHasher(client("dynamodb"), "v-secure-secrets", get_keyring())
        hasher.hash("s3cr3t")
    """

    def __init__(self, dynamodb: Any, table: str, keys: KeyProvider) -> None:
        self._db = dynamodb
        self._table = table
        self._keys = keys
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def hash(self, value: str) -> str:
        """``hmac-sha256:<hex>`` of ``value``'s UTF-8 bytes."""
        return PREFIX + hmac.new(self._hmac_key(), value.encode(), hashlib.sha256).hexdigest()

    def hash_fields(self, fields: Mapping[str, str]) -> dict[str, str]:
        return {name: self.hash(value) for name, value in fields.items()}

    def _hmac_key(self) -> bytes:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._load_or_create()
        return self._key

    def _load_or_create(self) -> bytes:
        item = self._get()
        if item is None:
            data_key = self._keys.generate_data_key(KEY_CONTEXT)
            if self._put(data_key.wrapped, data_key.kid):
                return data_key.plaintext
            item = self._get()  # another process stored its key first: use that one
            if item is None:
                raise DependencyUnavailable("dynamodb", "the audit HMAC key could not be stored")
        return self._keys.decrypt_data_key(bytes(item["wrapped"]["B"]), item["kid"]["S"], KEY_CONTEXT)

    def _get(self) -> dict[str, Any] | None:
        try:
            answer = self._db.get_item(TableName=self._table, ConsistentRead=True,
                                       Key={"pk": {"S": STATE_PK}, "sk": {"S": HMAC_SK}})
        except (ClientError, BotoCoreError) as error:
            raise DependencyUnavailable("dynamodb", f"reading the audit HMAC key failed: {_code(error)}") from None
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def _put(self, wrapped: bytes, kid: str) -> bool:
        try:
            self._db.put_item(TableName=self._table, ConditionExpression="attribute_not_exists(pk)", Item={
                "pk": {"S": STATE_PK}, "sk": {"S": HMAC_SK}, "wrapped": {"B": wrapped}, "kid": {"S": kid},
                "purpose": {"S": KEY_CONTEXT["purpose"]}})
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise DependencyUnavailable("dynamodb", f"storing the audit HMAC key failed: {_code(error)}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("dynamodb", f"storing the audit HMAC key failed: {_code(error)}") from None
        return True


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


_hashers: dict[tuple[str | None, str], AuditHasher] = {}
_hashers_lock = threading.Lock()


def get_audit_hasher() -> AuditHasher:
    """The process's hasher for the configured endpoint and secrets table (built once each)."""
    from chalicelib.aws import client
    from chalicelib.config import get_settings
    from chalicelib.vault.keys import get_keyring

    settings = get_settings()
    identity = (settings.aws_endpoint, settings.secrets_table)
    with _hashers_lock:
        if identity not in _hashers:
            _hashers[identity] = AuditHasher(client("dynamodb"), settings.secrets_table, get_keyring())
        return _hashers[identity]


def reset_audit_hasher() -> None:
    with _hashers_lock:
        _hashers.clear()
