"""Prefix policies (``prod/*``): stored, cached per process, managed by global admins.

Policies live in the secrets table under ``pk="POLICY"``, ``sk=<name>``, so every policy
loads with one Query. Each process keeps the loaded set for ``V_SECURE_AUTH_CACHE_TTL``
seconds (a change made here is seen here at once; other processes see it within the TTL).
Changes carry their audit event (``policy_change``) in the same transaction.

Example::

    store = get_policy_store()
    store.put(caller, "prod-readers", PolicyRequest(pattern="prod/*", allow={"backend-team": ["read"]}))
    decide(subject, Permission.READ, "prod/db", policies=cached_policies())
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from chalicelib.access_control.context import Caller
from chalicelib.access_control.gate import require_global_admin
from chalicelib.access_control.rbac import PrefixPolicy
from chalicelib.access_control.wire import PolicyDocument, PolicyList, PolicyRequest
from chalicelib.audit.events import Action
from chalicelib.audit.stream import AuditWriter, TransactionCancelled
from chalicelib.clock import Clock, SystemClock
from chalicelib.errors import Conflict, DependencyUnavailable, NotFound
from chalicelib.vault.storage import from_attributes, to_attributes

POLICY_PK = "POLICY"


class StoredPolicy(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    pattern: str
    allow: dict[str, list[str]] = Field(default_factory=dict)
    deny: dict[str, list[str]] = Field(default_factory=dict)
    description: str | None = None
    updated_at: datetime
    updated_by: str

    def rule(self) -> PrefixPolicy:
        return PrefixPolicy(self.name, self.pattern, self.allow, self.deny)

    def document(self) -> PolicyDocument:
        return PolicyDocument.model_validate(self.model_dump())


class _PolicyCache:
    """The loaded policy set per (endpoint, table), for ``ttl`` seconds; safe to lose."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, tuple[PrefixPolicy, ...]]] = {}

    def get(self, key: str, ttl: float) -> tuple[PrefixPolicy, ...] | None:
        with self._lock:
            found = self._entries.get(key)
        if found is None or time.monotonic() - found[0] > ttl:
            return None
        return found[1]

    def put(self, key: str, policies: tuple[PrefixPolicy, ...]) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), policies)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = _PolicyCache()


class PolicyStore:
    """Reads and writes prefix policies; only global admins may change or list them."""

    def __init__(self, dynamodb: Any, table: str, audit: AuditWriter, *, cache_ttl: float = 10,
                 clock: Clock | None = None) -> None:
        self._db = dynamodb
        self._table = table
        self._audit = audit
        self._ttl = cache_ttl
        self._cache_key = f"{getattr(getattr(dynamodb, 'meta', None), 'endpoint_url', '')}|{table}"
        self._clock = clock or SystemClock()

    # --- for every request ------------------------------------------------------------------

    def policies(self) -> tuple[PrefixPolicy, ...]:
        """Every policy as an RBAC rule (cached for the TTL)."""
        cached = _cache.get(self._cache_key, self._ttl)
        if cached is None:
            cached = tuple(p.rule() for p in self._load())
            _cache.put(self._cache_key, cached)
        return cached

    # --- administration ---------------------------------------------------------------------

    def list_policies(self, caller: Caller) -> PolicyList:
        self._require_admin(caller, Action.POLICY_READ, "list")
        return PolicyList(policies=[p.document() for p in self._load()])

    def get(self, caller: Caller, name: str) -> PolicyDocument:
        self._require_admin(caller, Action.POLICY_READ, "get", name)
        found = self._get(name)
        if found is None:
            raise NotFound(f"policy '{name}' not found")
        return found.document()

    def put(self, caller: Caller, name: str, request: PolicyRequest) -> PolicyDocument:
        """Create or replace the policy ``name``."""
        self._require_admin(caller, Action.POLICY_CHANGE, "put", name)
        policy = StoredPolicy(name=name, pattern=request.pattern, allow=_plain(request.allow),
                              deny=_plain(request.deny), description=request.description,
                              updated_at=self._clock.now(), updated_by=caller.principal_id)
        item = {"pk": {"S": POLICY_PK}, "sk": {"S": name}, **to_attributes(policy.model_dump(mode="python"))}
        self._audit.commit(caller.draft(Action.POLICY_CHANGE, details={
            "operation": "put", "policy": name, "pattern": policy.pattern, "allow": policy.allow,
            "deny": policy.deny}), [{"Put": {"TableName": self._table, "Item": item}}])
        _cache.clear()
        return policy.document()

    def delete(self, caller: Caller, name: str) -> PolicyDocument:
        self._require_admin(caller, Action.POLICY_CHANGE, "delete", name)
        found = self._get(name)
        if found is None:
            raise NotFound(f"policy '{name}' not found")
        try:
            self._audit.commit(caller.draft(Action.POLICY_CHANGE, details={"operation": "delete", "policy": name}), [
                {"Delete": {"TableName": self._table, "Key": {"pk": {"S": POLICY_PK}, "sk": {"S": name}},
                            "ConditionExpression": "attribute_exists(pk)"}}])
        except TransactionCancelled:
            raise Conflict(f"policy '{name}' was deleted by another request") from None
        _cache.clear()
        return found.document()

    def _require_admin(self, caller: Caller, action: Action, operation: str, name: str | None = None) -> None:
        require_global_admin(caller, action, "managing prefix policies", audit=self._audit.commit,
                             details={"operation": operation, "policy": name})

    # --- storage ----------------------------------------------------------------------------

    def _load(self) -> list[StoredPolicy]:
        kwargs: dict[str, Any] = {"TableName": self._table, "KeyConditionExpression": "pk = :pk",
                                  "ExpressionAttributeValues": {":pk": {"S": POLICY_PK}}, "ConsistentRead": True}
        policies: list[StoredPolicy] = []
        while True:
            answer = self._call("Query", self._db.query, **kwargs)
            policies.extend(StoredPolicy.model_validate(from_attributes(i)) for i in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return policies
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _get(self, name: str) -> StoredPolicy | None:
        item = self._call("GetItem", self._db.get_item, TableName=self._table, ConsistentRead=True,
                          Key={"pk": {"S": POLICY_PK}, "sk": {"S": name}}).get("Item")
        return StoredPolicy.model_validate(from_attributes(item)) if item else None

    @staticmethod
    def _call(operation: str, method: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        try:
            return method(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            raise DependencyUnavailable("dynamodb", f"{operation} failed: {code}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("dynamodb", f"{operation} failed: {type(error).__name__}") from None


def _plain(grants: dict[str, Any]) -> dict[str, list[str]]:
    return {name: [str(p) for p in permissions] for name, permissions in grants.items()}


def get_policy_store() -> PolicyStore:
    """Built from the process's shared clients (cheap); the policy cache is per process."""
    from chalicelib.audit.stream import get_audit_writer
    from chalicelib.aws import client
    from chalicelib.config import get_settings

    settings = get_settings()
    return PolicyStore(client("dynamodb"), settings.secrets_table, get_audit_writer(),
                       cache_ttl=settings.auth_cache_ttl)


def cached_policies() -> tuple[PrefixPolicy, ...]:
    """The policies provider of the vault service: every prefix policy, cached per process."""
    return get_policy_store().policies()


def reset_policy_cache() -> None:
    _cache.clear()
