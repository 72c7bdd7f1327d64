"""Audit trail queries: served by the audit table's indexes, newest first, never by a scan.

Which index serves a query:

==============  ==============  ==========================================================
filter given    index           partition
==============  ==============  ==========================================================
``secretId``    ``by_secret``   the secret
``actor``       ``by_actor``    the principal
``action``      ``by_action``   each action named (several are merged newest first)
none of those   ``by_day``      each day of the time range, newest day first
==============  ==============  ==========================================================

The time range is a key condition on ``ts`` (``"<iso time>#<event id>"``); the other filters
(``status``, and actor/action when another index serves the query) are filter expressions.
``nextToken`` is the ``ts`` of the last entry returned: the next page continues strictly
below it, so pages never repeat or skip an entry.

Example::

    query = AuditQuery(client("dynamodb"), "v-secure-audit")
    page = query.search(AuditFilters(secret_id="db_password"), limit=50)
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import Field

from chalicelib.audit.events import Action, AuditEvent, Status
from chalicelib.clock import Clock, SystemClock, isoformat
from chalicelib.errors import DependencyUnavailable, InvalidRequest
from chalicelib.models import WireModel
from chalicelib.tables import AUDIT_BY_ACTION, AUDIT_BY_ACTOR, AUDIT_BY_DAY, AUDIT_BY_SECRET

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
DEFAULT_WINDOW_DAYS = 30
MAX_WINDOW_DAYS = 400
MAX_ACTIONS = 20
_TS_MAX = "~"  # sorts after every "<iso>#<event id>"

ACTION_ALIASES: dict[str, tuple[str, ...]] = {
    # the product spec's verbs
    "store": (Action.SECRET_STORE,), "retrieve": (Action.SECRET_READ,), "read": (Action.SECRET_READ,),
    "rotate": (Action.SECRET_ROTATE,), "rollback": (Action.SECRET_ROLLBACK,),
    "delete": (Action.SECRET_DELETE, Action.SECRET_DESTROY),
    # groups, for `v-secure logs tail --filter rotation`
    "rotation": (Action.SECRET_ROTATE, Action.ROTATION_STARTED, Action.ROTATION_STEP,
                 Action.ROTATION_COMPLETED, Action.ROTATION_FAILED, Action.ROTATION_ROLLED_BACK),
    "access": (Action.ACCESS_GRANT, Action.ACCESS_REVOKE, Action.POLICY_CHANGE),
    "security": (Action.AUTH_FAILED, Action.MFA_FAILED, Action.RATE_LIMITED),
    "audit": (Action.AUDIT_READ, Action.AUDIT_SEAL, Action.AUDIT_HASH, Action.AUDIT_VERIFY),
}


# --- wire models ------------------------------------------------------------------------------


class AuditEntry(WireModel):
    """One audit event on the wire (camelCase): the spec's fields plus what makes it verifiable."""

    timestamp: str
    action: str
    secret_id: str | None = None
    actor: str
    actor_type: str
    source_ip: str | None = None
    reason: str | None = None
    status: str
    compliance_standards: list[str] = Field(default_factory=list)
    event_id: str
    request_id: str | None = None
    version: int | None = None
    deny_reason: str | None = None
    authorized_by: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    stream_id: str
    seq: int
    prev_hash: str
    hash: str

    @classmethod
    def from_event(cls, event: AuditEvent) -> AuditEntry:
        return cls.model_validate(event.model_dump(mode="json"))


class AuditTrail(WireModel):
    """The spec's ``auditTrail`` answer: ``{secretId, entries, nextToken}``."""

    secret_id: str | None = None
    entries: list[AuditEntry]
    next_token: str | None = None


class HashRequest(WireModel):
    value: str = Field(min_length=1, max_length=65536)


class HashResponse(WireModel):
    hash: str


class SealResponse(WireModel):
    digests: list[str]
    segments: int
    events: int
    streams: int
    lost_races: int = 0
    repaired: list[str] = Field(default_factory=list)


class VerifyCounts(WireModel):
    digests: int
    segments: int
    events: int
    streams: int
    pending: int


class VerifyResponse(WireModel):
    ok: bool
    problems: list[str]
    counts: VerifyCounts
    summary: str


# --- filters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    """What to look for; dates are inclusive. ``actions`` may hold several (merged)."""

    secret_id: str | None = None
    actor: str | None = None
    actions: tuple[str, ...] = ()
    status: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def parse(cls, *, secret_id: str | None = None, actor: str | None = None, action: str | None = None,
              status: str | None = None, start_date: str | None = None,
              end_date: str | None = None) -> AuditFilters:
        """From query parameters: ``action`` is comma-separated names or aliases (``retrieve``, ``rotation``)."""
        if status is not None and status not in {s.value for s in Status}:
            raise InvalidRequest(f"status must be one of {', '.join(s.value for s in Status)}")
        start = parse_time(start_date, "startDate") if start_date else None
        end = parse_time(end_date, "endDate", end_of_day=True) if end_date else None
        if start and end and start > end:
            raise InvalidRequest("startDate is after endDate")
        return cls(secret_id=secret_id, actor=actor, actions=expand_actions(action), status=status,
                   start=start, end=end)

    def describe(self) -> dict[str, Any]:
        """The filters as audited (no values that could be secret: these are ids and names)."""
        return {k: v for k, v in {
            "secretId": self.secret_id, "actor": self.actor, "action": ",".join(self.actions) or None,
            "status": self.status, "startDate": isoformat(self.start) if self.start else None,
            "endDate": isoformat(self.end) if self.end else None}.items() if v is not None}


def expand_actions(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    known = {a.value for a in Action}
    found: list[str] = []
    for name in (part.strip().lower() for part in text.split(",") if part.strip()):
        names = ACTION_ALIASES.get(name) or ((name,) if name in known else None)
        if names is None:
            raise InvalidRequest(f"unknown action '{name}' (use an action such as secret_read, or one of "
                                 f"{', '.join(sorted(ACTION_ALIASES))})")
        found.extend(str(n) for n in names if str(n) not in found)
    if len(found) > MAX_ACTIONS:
        raise InvalidRequest(f"at most {MAX_ACTIONS} actions per query")
    return tuple(found)


def parse_time(text: str, name: str, *, end_of_day: bool = False) -> datetime:
    """``2026-01-15`` (a whole day) or an ISO 8601 time; naive times are UTC."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1, microseconds=-1) if end_of_day else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} must be a date (2026-01-15) or an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def encode_token(ts: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": ts}).encode()).decode()


def decode_token(token: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        before = data["before"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidRequest("nextToken is not valid") from None
    if not isinstance(before, str) or "#" not in before:
        raise InvalidRequest("nextToken is not valid")
    return before


# --- the query --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Partition:
    index: str
    attribute: str
    value: str


class AuditQuery:
    """Runs audit trail queries against the audit table's indexes.

    Example::

        page = AuditQuery(client("dynamodb"), "v-secure-audit").search(AuditFilters(actor="ci"), limit=20)
    """

    def __init__(self, dynamodb: Any, table: str, clock: Clock | None = None) -> None:
        self._db = dynamodb
        self._table = table
        self._clock = clock or SystemClock()

    def search(self, filters: AuditFilters, *, limit: int = DEFAULT_LIMIT,
               next_token: str | None = None) -> AuditTrail:
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}")
        before = decode_token(next_token) if next_token else None
        low = isoformat(filters.start) if filters.start else ""
        high = before if before is not None else (isoformat(filters.end) + _TS_MAX if filters.end else _TS_MAX)
        items = self._collect(filters, low, high, limit + 1)
        more = len(items) > limit
        page = items[:limit]
        entries = [AuditEntry.from_event(_event(item)) for item in page]
        token = encode_token(page[-1]["ts"]["S"]) if more and page else None
        return AuditTrail(secret_id=filters.secret_id, entries=entries, next_token=token)

    def get_event(self, stream_id: str, seq: int) -> AuditEntry | None:
        """One event by its place in its stream (what a digest's segment and a chain point to)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from chalicelib.audit.stream import stream_pk

        try:
            item = self._db.get_item(TableName=self._table, ConsistentRead=True,
                                     Key={"pk": {"S": stream_pk(stream_id)}, "sk": {"N": str(seq)}}).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise DependencyUnavailable("dynamodb", f"audit read failed: {type(error).__name__}") from None
        return AuditEntry.from_event(_event(item)) if item else None

    # --- planning -----------------------------------------------------------------------------

    def _collect(self, filters: AuditFilters, low: str, high: str, wanted: int) -> list[dict[str, Any]]:
        if filters.secret_id is not None:
            return self._take(self._items(_Partition(AUDIT_BY_SECRET, "secret_id", filters.secret_id),
                                          filters, low, high), wanted)
        if filters.actor is not None:
            return self._take(self._items(_Partition(AUDIT_BY_ACTOR, "actor", filters.actor),
                                          filters, low, high), wanted)
        if filters.actions:
            streams = [self._items(_Partition(AUDIT_BY_ACTION, "action", action), filters, low, high)
                       for action in filters.actions]
            merged = heapq.merge(*streams, key=lambda item: item["ts"]["S"], reverse=True)
            return self._take(merged, wanted)
        return self._take(self._by_days(filters, low, high), wanted)

    def _by_days(self, filters: AuditFilters, low: str, high: str) -> Iterator[dict[str, Any]]:
        today = self._clock.now().date()
        last = today if high == _TS_MAX else min(date.fromisoformat(high[:10]), today)
        first = date.fromisoformat(low[:10]) if low else today - timedelta(days=DEFAULT_WINDOW_DAYS - 1)
        if (last - first).days >= MAX_WINDOW_DAYS:
            raise InvalidRequest(f"a query without secretId, actor or action may span at most {MAX_WINDOW_DAYS} "
                                 "days; narrow startDate/endDate")
        day = last
        while day >= first:
            yield from self._items(_Partition(AUDIT_BY_DAY, "day", day.isoformat()), filters, low, high)
            day -= timedelta(days=1)

    @staticmethod
    def _take(items: Iterator[dict[str, Any]], wanted: int) -> list[dict[str, Any]]:
        taken: list[dict[str, Any]] = []
        for item in items:
            taken.append(item)
            if len(taken) == wanted:
                break
        return taken

    # --- one index partition, newest first ----------------------------------------------------

    def _items(self, partition: _Partition, filters: AuditFilters, low: str,
               high: str) -> Iterator[dict[str, Any]]:
        names = {"#h": partition.attribute, "#ts": "ts"}
        values: dict[str, Any] = {":h": {"S": partition.value}, ":high": {"S": high}}
        condition = "#h = :h AND #ts < :high"
        if low:
            condition = "#h = :h AND #ts BETWEEN :low AND :high"
            values[":low"] = {"S": low}
        expression, extra_names, extra_values = _filter_expression(partition, filters)
        kwargs: dict[str, Any] = {"TableName": self._table, "IndexName": partition.index,
                                  "KeyConditionExpression": condition, "ScanIndexForward": False,
                                  "ExpressionAttributeNames": {**names, **extra_names},
                                  "ExpressionAttributeValues": {**values, **extra_values}, "Limit": 100}
        if expression:
            kwargs["FilterExpression"] = expression
        while True:
            answer = self._query(kwargs)
            for item in answer.get("Items", []):
                if item["ts"]["S"] < high:  # BETWEEN is inclusive; the page cursor is exclusive
                    yield item
            if "LastEvaluatedKey" not in answer:
                return
            kwargs = {**kwargs, "ExclusiveStartKey": answer["LastEvaluatedKey"], "Limit": 500}

    def _query(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer: dict[str, Any] = self._db.query(**kwargs)
            return answer
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            raise DependencyUnavailable("dynamodb", f"audit query failed: {code}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("dynamodb", f"audit query failed: {type(error).__name__}") from None


def _filter_expression(partition: _Partition, filters: AuditFilters) -> tuple[str, dict[str, str], dict[str, Any]]:
    parts: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    if filters.status is not None:
        parts.append("#status = :status")
        names["#status"], values[":status"] = "status", {"S": filters.status}
    if filters.actor is not None and partition.attribute != "actor":
        parts.append("#actor = :actor")
        names["#actor"], values[":actor"] = "actor", {"S": filters.actor}
    if filters.actions and partition.attribute != "action":
        keys = [f":a{i}" for i in range(len(filters.actions))]
        parts.append(f"#action IN ({', '.join(keys)})")
        names["#action"] = "action"
        values.update({key: {"S": action} for key, action in zip(keys, filters.actions, strict=True)})
    return " AND ".join(parts), names, values


def _event(item: dict[str, Any]) -> AuditEvent:
    data = json.loads(item["event"]["S"])
    return AuditEvent.model_validate({**data, "hash": item.get("hash", {}).get("S", "")})

