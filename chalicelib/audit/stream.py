"""Audit streams: per-process, hash-chained, written in the same transaction as the change.

Each writer process owns one or more *streams* (random ids, like CloudWatch log streams).
A stream is used by one request at a time, so its sequence numbers and hash chain need no
coordination with other processes; a small pool gives a threaded server one stream per
concurrent request.

The event is added to the DynamoDB transaction that carries the change it records. If the
transaction fails for any reason other than the caller's own conditions, the request fails
closed with :class:`AuditUnavailable`.

Example::

    writer = get_audit_writer()
    event = writer.commit(draft, items=[{"Put": {...}}])   # change + event, atomically
"""

from __future__ import annotations

import contextlib
import queue
import secrets as random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.audit.events import GENESIS_HASH, AuditDraft, AuditEvent
from chalicelib.audit.request_audit import note_event
from chalicelib.clock import Clock, SystemClock, isoformat
from chalicelib.errors import AuditUnavailable, DependencyUnavailable
from chalicelib.singleton import ProcessSingleton

STREAMS_PK = "STREAMS"
MAX_STREAMS_PER_PROCESS = 16


class TransactionCancelled(Exception):
    """The caller's own conditions failed; ``reasons`` has one code per item ("None" if fine)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


@dataclass
class Stream:
    stream_id: str
    seq: int = 0
    last_hash: str = GENESIS_HASH
    registered: bool = False


def stream_pk(stream_id: str) -> str:
    return f"STREAM#{stream_id}"


def event_item(event: AuditEvent) -> dict[str, Any]:
    """The audit table item: the canonical event plus the attributes the indexes use."""
    item: dict[str, Any] = {
        "pk": {"S": stream_pk(event.stream_id)},
        "sk": {"N": str(event.seq)},
        "event": {"S": event.canonical().decode()},
        "hash": {"S": event.hash},
        "actor": {"S": event.actor},
        "action": {"S": event.action.value},
        "status": {"S": event.status.value},
        "day": {"S": event.timestamp[:10]},
        "ts": {"S": f"{event.timestamp}#{event.event_id}"},
    }
    if event.secret_id:
        item["secret_id"] = {"S": event.secret_id}
    return item


class AuditWriter:
    """Appends events to this process's streams, atomically with the writes they record."""

    def __init__(self, dynamodb: Any, audit_table: str, clock: Clock | None = None,
                 max_streams: int = MAX_STREAMS_PER_PROCESS) -> None:
        self._db = dynamodb
        self._table = audit_table
        self._clock = clock or SystemClock()
        self._free: queue.LifoQueue[Stream] = queue.LifoQueue()
        self._created = 0
        self._max_streams = max_streams
        self._lock = threading.Lock()

    def commit(self, draft: AuditDraft, items: list[dict[str, Any]] | None = None) -> AuditEvent:
        """Write ``items`` and the event for ``draft`` in one transaction; return the event.

        Raises :class:`TransactionCancelled` when one of ``items``' conditions failed (nothing
        was written, the event included), :class:`AuditUnavailable` on any other failure.
        """
        with self._stream() as stream:
            for _attempt in range(2):
                event = self._next_event(stream, draft)
                try:
                    self._write(event, items or [])
                except _AuditSlotTaken:
                    self._resync(stream)
                    continue
                stream.seq, stream.last_hash = event.seq, event.hash
                note_event()
                return event
        raise AuditUnavailable("the audit stream could not be advanced")

    @contextlib.contextmanager
    def _stream(self) -> Iterator[Stream]:
        stream = self._take()
        try:
            if not stream.registered:
                self._register(stream)
            yield stream
        finally:
            self._free.put(stream)

    def _take(self) -> Stream:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self._max_streams:
                self._created += 1
                return Stream(stream_id=_new_stream_id(self._clock))
        return self._free.get()

    def _register(self, stream: Stream) -> None:
        """Record the stream in the registry (``pk=STREAMS``) so the sealer and verify find it."""
        started = self._clock.now()
        for _attempt in range(3):
            slot = int(started.timestamp() * 1_000_000) * 1000 + random.randbelow(1000)
            try:
                self._db.put_item(
                    TableName=self._table,
                    Item={"pk": {"S": STREAMS_PK}, "sk": {"N": str(slot)},
                          "stream_id": {"S": stream.stream_id}, "started_at": {"S": isoformat(started)}},
                    ConditionExpression="attribute_not_exists(pk)",
                )
                stream.registered = True
                return
            except ClientError as error:
                if _code(error) != "ConditionalCheckFailedException":
                    raise AuditUnavailable(f"could not register audit stream: {_code(error)}") from None
            except BotoCoreError as error:
                raise AuditUnavailable(f"could not register audit stream: {_code(error)}") from None
        raise AuditUnavailable("could not register audit stream")

    def _next_event(self, stream: Stream, draft: AuditDraft) -> AuditEvent:
        event = AuditEvent(
            **draft.model_dump(),
            event_id=f"evt_{uuid.uuid4().hex}",
            timestamp=isoformat(self._clock.now()),
            stream_id=stream.stream_id,
            seq=stream.seq + 1,
            prev_hash=stream.last_hash,
        )
        return event.model_copy(update={"hash": event.computed_hash()})

    def _write(self, event: AuditEvent, items: list[dict[str, Any]]) -> None:
        audit_put = {"Put": {"TableName": self._table, "Item": event_item(event),
                             "ConditionExpression": "attribute_not_exists(pk)"}}
        try:
            if items:
                self._db.transact_write_items(TransactItems=[*items, audit_put])
            else:
                self._db.put_item(**audit_put["Put"])
        except ClientError as error:
            self._raise_for(error, len(items))
        except BotoCoreError as error:
            raise AuditUnavailable(f"audit write failed: {type(error).__name__}") from None

    def _raise_for(self, error: ClientError, n_items: int) -> None:
        code = _code(error)
        if code == "ConditionalCheckFailedException" and n_items == 0:
            raise _AuditSlotTaken from None
        if code == "TransactionCanceledException":
            reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
            if len(reasons) == n_items + 1 and reasons[-1] == "ConditionalCheckFailed" \
                    and all(r == "None" for r in reasons[:-1]):
                raise _AuditSlotTaken from None
            if len(reasons) == n_items + 1 and any(r == "ConditionalCheckFailed" for r in reasons[:-1]):
                raise TransactionCancelled(reasons[:-1]) from None
            raise DependencyUnavailable("dynamodb", f"transaction cancelled: {', '.join(reasons)}") from None
        raise AuditUnavailable(f"audit write failed: {code}") from None

    def _resync(self, stream: Stream) -> None:
        """Another write took this sequence slot (an earlier timeout that did land): catch up."""
        answer = self._db.query(
            TableName=self._table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": stream_pk(stream.stream_id)}},
            ScanIndexForward=False, Limit=1, ConsistentRead=True,
        )
        last = answer.get("Items", [])
        if last:
            stream.seq = int(last[0]["sk"]["N"])
            stream.last_hash = last[0]["hash"]["S"]


class _AuditSlotTaken(Exception):
    pass


def _new_stream_id(clock: Clock) -> str:
    return f"{clock.now().strftime('%Y%m%dT%H%M%S')}-{random.token_hex(8)}"


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def _build_writer() -> AuditWriter:
    from chalicelib.aws import client
    from chalicelib.config import get_settings

    return AuditWriter(client("dynamodb"), get_settings().audit_table)


_writer = ProcessSingleton(_build_writer)


def get_audit_writer() -> AuditWriter:
    return _writer.get()


def reset_audit_writer() -> None:
    _writer.reset()
