"""Passphrase key provider with key versions, so the master key can be rotated.

Each *key version* is a fresh salt (with its iteration count and key check) from which
PBKDF2-HMAC-SHA256 derives another master key from the same ``V_SECURE_ENCRYPTION_KEY``.
Version 1 is the item the plain passphrase provider uses (``SYSTEM`` / ``KEYPARAMS#passphrase``),
so existing vaults keep working; later versions are ``KEYPARAMS#passphrase#<0000n>``. The
newest version wraps new data keys, every version unwraps. ``kid`` is
``passphrase:<first 16 hex of the version's key check>``, the same as the plain provider's.

Example::

    provider = VersionedPassphraseKeyProvider(passphrase, DynamoPassphraseVersions(db, table))
    old = provider.current_kid()
    new = provider.create_key_version()   # new data keys are wrapped under `new`; `old` still reads
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from chalicelib.errors import DecryptionFailed, DependencyUnavailable, KeyUnavailable
from chalicelib.ports import DataKey, check_round_trip
from chalicelib.vault.keys.passphrase import PREFIX, _canonical, _check

LEGACY_SK = "KEYPARAMS#passphrase"
_NONCE = 12
_SALT = 16


@dataclass(frozen=True)
class PassphraseVersion:
    """One salt of the passphrase: what derives and checks one master key version."""

    number: int
    salt: bytes
    iterations: int
    check: str

    @property
    def kid(self) -> str:
        return PREFIX + self.check[:16]


class PassphraseVersionStore(Protocol):
    """Where the versions live (``SYSTEM`` items of the secrets table)."""

    def versions(self) -> list[PassphraseVersion]: ...

    def add(self, version: PassphraseVersion) -> bool:
        """Save ``version`` unless that number exists; False if another writer got it first."""
        ...


class DynamoPassphraseVersions:
    """The versions as ``SYSTEM`` items, read with one consistent Query."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def versions(self) -> list[PassphraseVersion]:
        try:
            answer = self._db.query(
                TableName=self._table, ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :sk)",
                ExpressionAttributeValues={":pk": {"S": "SYSTEM"}, ":sk": {"S": LEGACY_SK}})
        except (ClientError, BotoCoreError) as error:
            raise DependencyUnavailable("dynamodb", f"reading passphrase key versions failed: "
                                        f"{_code(error)}") from None
        versions = [_from_item(item) for item in answer.get("Items", [])]
        return sorted((v for v in versions if v is not None), key=lambda v: v.number)

    def add(self, version: PassphraseVersion) -> bool:
        sk = LEGACY_SK if version.number == 1 else f"{LEGACY_SK}#{version.number:05d}"
        item = {"pk": {"S": "SYSTEM"}, "sk": {"S": sk}, "salt": {"B": version.salt},
                "iterations": {"N": str(version.iterations)}, "check": {"S": version.check},
                "created_at": {"S": datetime.now(UTC).isoformat()}}
        try:
            self._db.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            return True
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise DependencyUnavailable("dynamodb", f"saving a passphrase key version failed: "
                                        f"{_code(error)}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("dynamodb", f"saving a passphrase key version failed: "
                                        f"{_code(error)}") from None


def _from_item(item: dict[str, Any]) -> PassphraseVersion | None:
    sk = item["sk"]["S"]
    suffix = sk.removeprefix(LEGACY_SK)
    if suffix == "":
        number = 1
    elif suffix.startswith("#") and suffix[1:].isdigit():
        number = int(suffix[1:])
    else:
        return None
    return PassphraseVersion(number, bytes(item["salt"]["B"]), int(item["iterations"]["N"]), item["check"]["S"])


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


class VersionedPassphraseKeyProvider:
    """AES-256-GCM wrapping under PBKDF2-derived master keys, one per key version.

    Example::

        provider = VersionedPassphraseKeyProvider("correct horse battery staple", store)
        data_key = provider.generate_data_key({"secret_id": "db", "version": "1", "type": "api_key"})
    """

    name = "passphrase"

    def __init__(self, passphrase: str, store: PassphraseVersionStore, iterations: int = 600_000, *,
                 refresh_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not passphrase or len(passphrase) < 16:
            raise KeyUnavailable("V_SECURE_ENCRYPTION_KEY must be set to at least 16 characters")
        self._passphrase = passphrase.encode()
        self._store = store
        self._iterations = iterations
        self._refresh = refresh_seconds
        self._clock = clock
        self._versions: list[PassphraseVersion] = []
        self._loaded_at: float | None = None
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "VersionedPassphraseKeyProvider()"

    # --- KeyProvider ---------------------------------------------------------------------

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        plaintext = os.urandom(32)
        wrapped, kid = self.wrap_data_key(plaintext, context)
        return DataKey(plaintext, wrapped, kid)

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        key = self._key(self._version(kid))
        try:
            return AESGCM(key).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _canonical(context))
        except InvalidTag:
            raise DecryptionFailed("wrapped data key failed authentication") from None

    def check_health(self) -> None:
        check_round_trip(self, "passphrase provider failed to unwrap its own data key")

    # --- key administration ----------------------------------------------------------------

    def wrap_data_key(self, plaintext: bytes, context: Mapping[str, str],
                      kid: str | None = None) -> tuple[bytes, str]:
        """Wrap an existing data key under ``kid`` (default: the newest version)."""
        version = self._version(kid) if kid else self._writer()
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self._key(version)).encrypt(nonce, plaintext, _canonical(context)), version.kid

    def rewrap_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str],
                        target_kid: str | None = None) -> tuple[bytes, str]:
        """Unwrap the data key with its old version and wrap it with ``target_kid`` (or the newest)."""
        return self.wrap_data_key(self.decrypt_data_key(wrapped, kid, context), context, target_kid)

    def current_kid(self) -> str:
        return self._writer().kid

    def key_versions(self) -> list[PassphraseVersion]:
        return list(self._load(force=True))

    def has_key(self, kid: str) -> bool:
        return any(v.kid == kid for v in self._load(force=False))

    def create_key_version(self) -> str:
        """A new salt (so a new derived key) that wraps new data keys from now on."""
        for _attempt in range(5):
            versions = self._load(force=True)
            number = (versions[-1].number if versions else 0) + 1
            salt = os.urandom(_SALT)
            key = self._derive(salt, self._iterations)
            version = PassphraseVersion(number, salt, self._iterations, _check(key))
            if self._store.add(version):
                with self._lock:
                    self._keys[version.kid] = key
                return self._load(force=True)[-1].kid
        raise KeyUnavailable("could not add a passphrase key version (others kept adding one)")

    # --- plumbing ----------------------------------------------------------------------------

    def _load(self, *, force: bool) -> list[PassphraseVersion]:
        with self._lock:
            fresh = self._loaded_at is not None and self._clock() - self._loaded_at < self._refresh
            if fresh and not force:
                return self._versions
        versions = self._store.versions()
        with self._lock:
            self._versions, self._loaded_at = versions, self._clock()
        return versions

    def _writer(self) -> PassphraseVersion:
        versions = self._load(force=False)
        if not versions:
            self._first_version()
            versions = self._load(force=True)
        return versions[-1]

    def _first_version(self) -> None:
        salt = os.urandom(_SALT)
        key = self._derive(salt, self._iterations)
        self._store.add(PassphraseVersion(1, salt, self._iterations, _check(key)))

    def _version(self, kid: str) -> PassphraseVersion:
        for force in (False, True):
            for version in self._load(force=force):
                if version.kid == kid:
                    return version
        raise KeyUnavailable(f"data key was wrapped by {kid}, which is not a passphrase key version "
                             "of this vault")

    def _key(self, version: PassphraseVersion) -> bytes:
        with self._lock:
            key = self._keys.get(version.kid)
        if key is not None:
            return key
        key = self._derive(version.salt, version.iterations)
        if not hmac.compare_digest(_check(key), version.check):
            raise KeyUnavailable("V_SECURE_ENCRYPTION_KEY does not match the key check stored with the "
                                 f"vault for key version {version.number} (wrong passphrase)")
        with self._lock:
            self._keys[version.kid] = key
        return key

    def _derive(self, salt: bytes, iterations: int) -> bytes:
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
        return kdf.derive(self._passphrase)
