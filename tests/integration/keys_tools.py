"""Tools of the key-provider integration tests: KMS keys that honour their state, bulk-loaded secrets.

moto's KMS ignores key state (a disabled key still decrypts), so :class:`StateEnforcingKms`
wraps a KMS client and refuses, as AWS does, any cryptographic call on a key that is not
``Enabled``. Tests install it on the server's KMS provider to show that after a rewrap
nothing needs the old key.

Example::

    a = new_kms_key("rewrap-a")
    ids = bulk_secrets("rw", 1000, KmsKeyProvider(client("kms"), a))
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws import client
from chalicelib.config import get_settings
from chalicelib.ports import KeyProvider
from chalicelib.vault.encryption import Envelope, EnvelopeContext, seal
from chalicelib.vault.keys.keyring import get_admin_keyring
from chalicelib.vault.keys.kms import KmsKeyProvider
from chalicelib.vault.keys.rewrap import plain_keyring
from chalicelib.vault.records import CURRENT, SecretRecord, VersionRecord
from chalicelib.vault.storage import record_item, version_item

_CRYPTO_CALLS = {"decrypt", "re_encrypt", "generate_data_key", "encrypt"}


@contextmanager
def dedicated_table(name: str) -> Iterator[str]:
    """Run the process (and its API server) on a fresh secrets table; yields a root token for it.

    For volume tests: moto copies every table named in a ``TransactWriteItems`` once per item
    of the transaction, so thousands of items in the shared table would slow every later test.
    The table is deleted afterwards.
    """
    from chalicelib.access_control.bootstrap import bootstrap_root
    from chalicelib.local.bootstrap import ensure_table
    from chalicelib.tables import TTL_ATTRIBUTE, secrets_table_definition
    from tests.keys_support import provider_env

    table = f"v-secure-{name}-{uuid.uuid4().hex[:8]}-secrets"
    ensure_table(secrets_table_definition(table), ttl_attribute=TTL_ATTRIBUTE)
    try:
        with provider_env({"V_SECURE_SECRETS_TABLE": table}):
            yield bootstrap_root()
    finally:
        client("dynamodb").delete_table(TableName=table)


def new_kms_key(name: str) -> str:
    """A new symmetric key with alias ``alias/v-secure-<name>-<random>-data``; returns its ARN."""
    kms = client("kms")
    arn = str(kms.create_key(Description=f"v-secure test key {name}")["KeyMetadata"]["Arn"])
    kms.create_alias(AliasName=f"alias/v-secure-{name}-{uuid.uuid4().hex[:8]}-data", TargetKeyId=arn)
    return arn


class StateEnforcingKms:
    """A KMS client that refuses cryptographic calls on a disabled or deleted key, like AWS."""

    def __init__(self, kms: Any, *, cache_states: bool = False) -> None:
        self._kms = kms
        self._states: dict[str, str] | None = {} if cache_states else None

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._kms, name)
        if name not in _CRYPTO_CALLS:
            return method

        def checked(**kwargs: Any) -> Any:
            for key in (kwargs.get("KeyId"), kwargs.get("SourceKeyId"), kwargs.get("DestinationKeyId")):
                if key:
                    self._check(str(key), name)
            return method(**kwargs)

        return checked

    def _check(self, key_id: str, operation: str) -> None:
        state = self._states.get(key_id) if self._states is not None else None
        if state is None:
            state = str(self._kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"])
            if self._states is not None:
                self._states[key_id] = state
        code = {"Enabled": None, "Disabled": "DisabledException"}.get(state, "KMSInvalidStateException")
        if code is not None:
            raise ClientError({"Error": {"Code": code, "Message": f"{key_id} is {state}"}}, operation)


def server_kms_provider() -> KmsKeyProvider:
    """The KMS provider the in-process API server uses."""
    for provider in plain_keyring(get_admin_keyring()).providers():
        if isinstance(provider, KmsKeyProvider):
            return provider
    raise AssertionError("the server has no KMS provider")


def bulk_secrets(prefix: str, count: int, keys: KeyProvider, *, workers: int = 8) -> dict[str, Envelope]:
    """``count`` one-version api_key secrets sealed under ``keys``, written with BatchWriteItem.

    Returns each secret's envelope; the value of ``<prefix>/<n>`` is ``value-of-<prefix>/<n>``.
    """
    now = datetime.now(UTC)
    ids = [f"{prefix}/{n:05d}" for n in range(count)]

    def sealed(secret_id: str) -> Envelope:
        return seal(f"value-of-{secret_id}".encode(), EnvelopeContext(secret_id=secret_id, version=1, type="api_key"),
                    keys)

    def items(secret_id: str, envelope: Envelope) -> list[dict[str, Any]]:
        record = SecretRecord(secret_id=secret_id, type="api_key", current_version=1, latest_version=1,
                              labels={CURRENT: 1}, access={"root": ["admin"]}, created_at=now, created_by="root",
                              updated_at=now, rev=1, current=envelope)
        version = VersionRecord(secret_id=secret_id, version=1, created_at=now, created_by="root", envelope=envelope)
        return [record_item(record), version_item(version)]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        envelopes = dict(zip(ids, pool.map(sealed, ids), strict=True))
    all_items = [item for secret_id, envelope in envelopes.items() for item in items(secret_id, envelope)]
    batches = [all_items[i:i + 25] for i in range(0, len(all_items), 25)]
    table = get_settings().secrets_table
    dynamodb = client("dynamodb")

    def write(batch: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in batch]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(write, batches))
    return envelopes


def stored_envelopes() -> dict[str, dict[str, Envelope]]:
    """Every secret's envelope copies as stored: ``{secret_id: {"current": ..., "V#0000000001": ...}}``."""
    from chalicelib.audit.stream import get_audit_writer
    from chalicelib.vault.keys.envelopes import SECRETS, DynamoEnvelopeStore

    store = DynamoEnvelopeStore(client("dynamodb"), get_settings().secrets_table, get_audit_writer())
    found: dict[str, dict[str, Envelope]] = {}
    cursor: str | None = None
    while True:
        owners, cursor = store.page(SECRETS, cursor, 500)
        for owner in owners:
            found[owner.owner_id] = {"/".join(ref.path) if ref.item[1] == "META" else ref.item[1]: ref.envelope
                                     for ref in owner.refs}
        if cursor is None:
            return found


def stored(secret_id: str) -> tuple[SecretRecord, VersionRecord]:
    """The META record and version 1 of ``secret_id``, read straight from the table."""
    from chalicelib.audit.stream import get_audit_writer
    from chalicelib.vault.storage import DynamoSecretRepository

    repo = DynamoSecretRepository(client("dynamodb"), get_settings().secrets_table, get_audit_writer())
    record, version = repo.get(secret_id), repo.get_version(secret_id, 1)
    assert record is not None and version is not None, secret_id
    return record, version
