"""Principals (users, service accounts) and their bearer tokens.

Tokens are 256 random bits, shown once, stored only as a SHA-256 hash (a token is looked up
by its hash, then compared in constant time). The requester of every call is the principal
its token belongs to; nothing in a request body can change that.

Example::

    directory = get_directory()
    caller = directory.authenticate("Bearer vs_...")
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as random
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from chalicelib.audit.events import AuditDraft, AuditEvent
from chalicelib.audit.stream import AuditWriter, TransactionCancelled
from chalicelib.clock import Clock, SystemClock
from chalicelib.errors import Conflict, DependencyUnavailable, NotFound, Unauthenticated
from chalicelib.models import PrincipalType
from chalicelib.singleton import ProcessSingleton
from chalicelib.vault.storage import from_attributes, to_attributes

TOKEN_PREFIX = "vs_"
ROOT_PRINCIPAL = "root"


class PrincipalRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    principal_id: str
    type: PrincipalType = PrincipalType.USER
    groups: list[str] = Field(default_factory=list)
    admin: bool = False
    disabled: bool = False
    description: str | None = None
    created_at: datetime
    created_by: str
    mfa: dict[str, Any] | None = None
    """TOTP enrolment: ``{"active": bool, "envelope": {...}}`` (the seed is stored encrypted)."""
    rev: int = 0
    """Bumped by every save; ``save_principal(..., guarded=True)`` refuses a stale copy."""

    @property
    def actor_type(self) -> str:
        return self.type.value


class TokenRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    token_id: str
    token_hash: str
    principal_id: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked: bool = False
    description: str | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + random.token_urlsafe(32)


def principal_key(principal_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"PRINCIPAL#{principal_id}"}, "sk": {"S": "META"}}


def token_key(token_hash: str) -> dict[str, Any]:
    return {"pk": {"S": f"TOKEN#{token_hash}"}, "sk": {"S": "META"}}


def token_listing_key(principal_id: str, token_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"PRINCIPAL#{principal_id}"}, "sk": {"S": f"TOKEN#{token_id}"}}


def group_member_key(group: str, principal_id: str) -> dict[str, Any]:
    """``GROUP#<name>`` / ``MEMBER#<id>``: lists a group's members with one Query."""
    return {"pk": {"S": f"GROUP#{group}"}, "sk": {"S": f"MEMBER#{principal_id}"}}


class _AuthCache:
    """token hash -> (principal, token), bounded and short-lived; safe to lose."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, PrincipalRecord, TokenRecord]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token_hash: str) -> tuple[PrincipalRecord, TokenRecord] | None:
        with self._lock:
            found = self._entries.get(token_hash)
            if found is None or time.monotonic() - found[0] > self._ttl:
                self._entries.pop(token_hash, None)
                return None
            return found[1], found[2]

    def put(self, token_hash: str, principal: PrincipalRecord, token: TokenRecord) -> None:
        if self._ttl <= 0:
            return
        with self._lock:
            self._entries[token_hash] = (time.monotonic(), principal, token)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def forget_principal(self, principal_id: str) -> None:
        with self._lock:
            for key in [k for k, v in self._entries.items() if v[1].principal_id == principal_id]:
                del self._entries[key]

    def forget_token(self, token_id: str) -> None:
        with self._lock:
            for key in [k for k, v in self._entries.items() if v[2].token_id == token_id]:
                del self._entries[key]


class Directory:
    """Principals and tokens in the secrets table; changes carry their audit event."""

    def __init__(self, dynamodb: Any, table: str, audit: AuditWriter, *, cache_ttl: float = 10,
                 clock: Clock | None = None) -> None:
        self._db = dynamodb
        self._table = table
        self._audit = audit
        self._clock = clock or SystemClock()
        self._cache = _AuthCache(cache_ttl)

    # --- authentication ----------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> tuple[PrincipalRecord, TokenRecord]:
        """Resolve ``Authorization: Bearer <token>`` to its principal, or raise Unauthenticated."""
        token = _bearer(authorization)
        token_hash = hash_token(token)
        cached = self._cache.get(token_hash)
        if cached is None:
            cached = self._load_token(token_hash)
            self._cache.put(token_hash, *cached)
        principal, record = cached
        if not hmac.compare_digest(record.token_hash, token_hash):
            raise Unauthenticated("invalid token")
        self._check_usable(principal, record)
        return principal, record

    def _load_token(self, token_hash: str) -> tuple[PrincipalRecord, TokenRecord]:
        item = self._get(token_key(token_hash))
        if item is None:
            raise Unauthenticated("invalid token")
        record = TokenRecord.model_validate(from_attributes(item))
        principal = self.get_principal(record.principal_id)
        if principal is None:
            raise Unauthenticated("invalid token")
        return principal, record

    def _check_usable(self, principal: PrincipalRecord, token: TokenRecord) -> None:
        if token.revoked:
            raise Unauthenticated("token revoked")
        if token.expires_at is not None and token.expires_at <= self._clock.now():
            raise Unauthenticated("token expired")
        if principal.disabled:
            raise Unauthenticated("principal disabled")

    # --- principals ----------------------------------------------------------------------

    def get_principal(self, principal_id: str) -> PrincipalRecord | None:
        item = self._get(principal_key(principal_id))
        return PrincipalRecord.model_validate(from_attributes(item)) if item else None

    def require_principal(self, principal_id: str) -> PrincipalRecord:
        principal = self.get_principal(principal_id)
        if principal is None:
            raise NotFound(f"principal '{principal_id}' not found")
        return principal

    def list_principals(self) -> list[PrincipalRecord]:
        items = self._query_prefix("PRINCIPALS", "")
        return [PrincipalRecord.model_validate(from_attributes(i)) for i in items]

    def create_principal(self, principal: PrincipalRecord, draft: AuditDraft) -> AuditEvent:
        data = principal.model_dump(mode="python")
        item = {**principal_key(principal.principal_id), **to_attributes(data)}
        listing = {"pk": {"S": "PRINCIPALS"}, "sk": {"S": principal.principal_id}, **to_attributes(data)}
        try:
            return self._audit.commit(draft, [
                {"Put": {"TableName": self._table, "Item": item,
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self._table, "Item": listing}},
                *({"Put": {"TableName": self._table, "Item": {
                    **group_member_key(group, principal.principal_id),
                    "principal_id": {"S": principal.principal_id}}}} for group in principal.groups),
            ])
        except TransactionCancelled:
            raise Conflict(f"principal '{principal.principal_id}' already exists") from None

    def save_principal(self, principal: PrincipalRecord, draft: AuditDraft, *,
                       extra_items: Sequence[dict[str, Any]] = (), guarded: bool = False) -> AuditEvent:
        """Replace a principal (disable, enable, groups, MFA); it must exist.

        ``extra_items`` commit in the same transaction (their failed conditions raise
        :class:`TransactionCancelled`); ``guarded`` refuses the write (Conflict) when the
        principal changed since ``principal`` was read.
        """
        data = to_attributes(principal.model_copy(update={"rev": principal.rev + 1}).model_dump(mode="python"))
        put: dict[str, Any] = {"TableName": self._table, "Item": {**principal_key(principal.principal_id), **data},
                               "ConditionExpression": "attribute_exists(pk)"}
        if guarded:
            put["ConditionExpression"] = "attribute_exists(pk) AND (rev = :rev OR attribute_not_exists(rev))"
            put["ExpressionAttributeValues"] = {":rev": {"N": str(principal.rev)}}
        try:
            event = self._audit.commit(draft, [
                {"Put": put},
                {"Put": {"TableName": self._table,
                         "Item": {"pk": {"S": "PRINCIPALS"}, "sk": {"S": principal.principal_id}, **data}}},
                *extra_items,
            ])
        except TransactionCancelled as cancelled:
            if cancelled.reasons[0] == "ConditionalCheckFailed":
                raise Conflict(f"principal '{principal.principal_id}' was changed by another request; "
                               "try again") from None
            raise
        self._cache.forget_principal(principal.principal_id)
        return event

    # --- tokens --------------------------------------------------------------------------

    def issue_token(self, principal_id: str, draft: AuditDraft, *, ttl_seconds: int | None = None,
                    description: str | None = None) -> tuple[str, TokenRecord, AuditEvent]:
        token = new_token()
        now = self._clock.now()
        record = TokenRecord(
            token_id=f"tok_{random.token_hex(8)}", token_hash=hash_token(token), principal_id=principal_id,
            created_at=now, expires_at=now + timedelta(seconds=ttl_seconds) if ttl_seconds else None,
            description=description,
        )
        data = to_attributes(record.model_dump(mode="python"))
        event = self._audit.commit(draft, [
            {"Put": {"TableName": self._table, "Item": {**token_key(record.token_hash), **data},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"TableName": self._table,
                     "Item": {**token_listing_key(principal_id, record.token_id), **data}}},
            {"ConditionCheck": {"TableName": self._table, "Key": principal_key(principal_id),
                                "ConditionExpression": "attribute_exists(pk)"}},
        ])
        return token, record, event

    def list_tokens(self, principal_id: str) -> list[TokenRecord]:
        items = self._query_prefix(f"PRINCIPAL#{principal_id}", "TOKEN#")
        return [TokenRecord.model_validate(from_attributes(i)) for i in items]

    def get_token(self, principal_id: str, token_id: str) -> TokenRecord:
        item = self._get(token_listing_key(principal_id, token_id))
        if item is None:
            raise NotFound(f"token '{token_id}' not found for principal '{principal_id}'")
        return TokenRecord.model_validate(from_attributes(item))

    def revoke_token(self, token: TokenRecord, draft: AuditDraft) -> tuple[TokenRecord, AuditEvent]:
        revoked = token.model_copy(update={"revoked": True})
        data = to_attributes(revoked.model_dump(mode="python"))
        event = self._audit.commit(draft, [
            {"Put": {"TableName": self._table, "Item": {**token_key(token.token_hash), **data}}},
            {"Put": {"TableName": self._table,
                     "Item": {**token_listing_key(token.principal_id, token.token_id), **data}}},
        ])
        self._cache.forget_token(token.token_id)
        return revoked, event

    # --- plumbing ------------------------------------------------------------------------

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            item: dict[str, Any] | None = self._db.get_item(TableName=self._table, Key=key,
                                                            ConsistentRead=True).get("Item")
            return item
        except (ClientError, BotoCoreError) as error:
            raise DependencyUnavailable("dynamodb", f"GetItem failed: {_code(error)}") from None

    def _query_prefix(self, pk: str, sk_prefix: str) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :sk)" if sk_prefix else "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}, **({":sk": {"S": sk_prefix}} if sk_prefix else {})},
        }
        items: list[dict[str, Any]] = []
        try:
            while True:
                answer = self._db.query(**kwargs)
                items.extend(answer.get("Items", []))
                if "LastEvaluatedKey" not in answer:
                    return items
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as error:
            raise DependencyUnavailable("dynamodb", f"Query failed: {_code(error)}") from None


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        raise Unauthenticated("malformed bearer token")
    return token


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def _build_directory() -> Directory:
    from chalicelib.audit.stream import get_audit_writer
    from chalicelib.aws import client
    from chalicelib.config import get_settings

    settings = get_settings()
    return Directory(client("dynamodb"), settings.secrets_table, get_audit_writer(),
                     cache_ttl=settings.auth_cache_ttl)


_directory = ProcessSingleton(_build_directory)


def get_directory() -> Directory:
    return _directory.get()


def reset_directory() -> None:
    _directory.reset()
