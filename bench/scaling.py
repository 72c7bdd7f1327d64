"""Bulk loading for the scaling figures: secrets and audit events written straight to DynamoDB.

Secrets are loaded with the real item format (:func:`chalicelib.vault.storage.record_item` and
:func:`~chalicelib.vault.storage.version_item`), each with its own envelope bound to its id.
The data keys are wrapped by the passphrase provider (which the bench stack also reads with)
instead of KMS, so 100 000 secrets do not cost 100 000 ``GenerateDataKey`` calls. Audit events
are real hash-chained :class:`~chalicelib.audit.events.AuditEvent` s of one synthetic stream,
stored with :func:`chalicelib.audit.stream.event_item`.

Items go in ``BatchWriteItem`` calls of 25 from a few threads, so building items here and
storing them in the moto server overlap.

Example::

    loaded = load_secrets(dynamodb, table, keys, owner="bench-service", first=0, count=1000)
    print(loaded.items, loaded.seconds)
"""

from __future__ import annotations

import secrets as random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from chalicelib.audit.events import GENESIS_HASH, Action, AuditEvent, Status
from chalicelib.audit.stream import event_item
from chalicelib.clock import isoformat
from chalicelib.ports import KeyProvider
from chalicelib.vault.encryption import EnvelopeContext, seal
from chalicelib.vault.records import CURRENT, SecretRecord, VersionRecord
from chalicelib.vault.storage import record_item, version_item

BATCH = 25
LOADERS = 3
SCALE_PREFIX = "bench/scale/"
AUDIT_PREFIX = "bench/audit/"


@dataclass(frozen=True)
class Loaded:
    """How many items a load wrote and how long it took."""

    items: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


def scale_secret_id(index: int) -> str:
    return f"{SCALE_PREFIX}{index:06d}"


def audit_secret_id(index: int) -> str:
    return f"{AUDIT_PREFIX}{index:03d}"


def secret_items(index: int, *, owner: str, keys: KeyProvider, now: datetime,
                 with_version: bool = True) -> list[dict[str, Any]]:
    """The META and (unless not ``with_version``) version-1 items of one ``api_key`` secret.

    The envelope is sealed for this secret's id, version and type, as a store would seal it.
    """
    secret_id = scale_secret_id(index)
    envelope = seal(random.token_urlsafe(36).encode(), EnvelopeContext(secret_id=secret_id, version=1,
                                                                         type="api_key"), keys)
    record = SecretRecord(secret_id=secret_id, type="api_key", current_version=1, latest_version=1,
                          labels={CURRENT: 1}, access={owner: ["admin"]}, created_at=now, created_by=owner,
                          updated_at=now, rev=1, current=envelope)
    version = VersionRecord(secret_id=secret_id, version=1, created_at=now, created_by=owner,
                            envelope=envelope, facts={"format": "opaque"})
    return [record_item(record), version_item(version)] if with_version else [record_item(record)]


def load_secrets(dynamodb: Any, table: str, keys: KeyProvider, *, owner: str, first: int,
                 count: int, with_versions: bool = True) -> Loaded:
    """Write secrets ``first .. first+count-1`` (2 items each, or only META without versions)."""
    now = datetime.now(UTC)

    def items() -> Iterator[dict[str, Any]]:
        for index in range(first, first + count):
            yield from secret_items(index, owner=owner, keys=keys, now=now, with_version=with_versions)

    return batch_write(dynamodb, table, items())


class SyntheticStream:
    """A hash-chained audit stream of made-up reads, spread over ``secrets`` secrets and ``days`` days."""

    def __init__(self, *, secrets: int, actor: str, days: int = 7) -> None:
        self.stream_id = f"bench-load-{random.token_hex(6)}"
        self.secrets = secrets
        self.actor = actor
        self.days = days
        self.seq = 0
        self.last_hash = GENESIS_HASH
        self._lock = threading.Lock()

    def events(self, count: int, now: datetime) -> Iterator[AuditEvent]:
        """``count`` more events, oldest first, the newest at ``now``."""
        step = timedelta(days=self.days) / max(count, 1)
        for offset in range(count):
            with self._lock:
                self.seq += 1
                event = AuditEvent(action=Action.SECRET_READ, actor=self.actor, actor_type="service_account",
                                   status=Status.SUCCESS, secret_id=audit_secret_id(self.seq % self.secrets),
                                   version=1, source_ip="127.0.0.1", event_id=f"evt_{random.token_hex(16)}",
                                   timestamp=isoformat(now - step * (count - offset)), stream_id=self.stream_id,
                                   seq=self.seq, prev_hash=self.last_hash)
                event = event.model_copy(update={"hash": event.computed_hash()})
                self.last_hash = event.hash
            yield event


def load_events(dynamodb: Any, table: str, stream: SyntheticStream, count: int) -> Loaded:
    """Write ``count`` more events of ``stream`` to the audit table."""
    now = datetime.now(UTC)
    return batch_write(dynamodb, table, (event_item(e) for e in stream.events(count, now)))


def loader_client(endpoint: str, region: str = "us-east-1") -> Any:
    """A DynamoDB client for bulk loads: the bench's client settings, without parameter validation
    (the items come from our own serializers; validating 100 000 of them costs minutes of CPU)."""
    import boto3
    from botocore.config import Config

    from bench.peers import CLIENT_CONFIG

    return boto3.session.Session(region_name=region).client(
        "dynamodb", endpoint_url=endpoint, config=CLIENT_CONFIG.merge(Config(parameter_validation=False)))


def batch_write(dynamodb: Any, table: str, items: Iterable[dict[str, Any]], *,
                loaders: int = LOADERS) -> Loaded:
    """``BatchWriteItem`` every item (25 per call, ``loaders`` calls in flight, retries unprocessed)."""
    start = time.perf_counter()
    source = iter(items)
    lock = threading.Lock()
    stop = threading.Event()
    written = [0]

    def next_batch() -> list[dict[str, Any]]:
        with lock:
            return [] if stop.is_set() else list(islice(source, BATCH))

    def worker() -> None:
        while batch := next_batch():
            _write_batch(dynamodb.batch_write_item, table, batch)
            with lock:
                written[0] += len(batch)

    with ThreadPoolExecutor(max_workers=loaders, thread_name_prefix="bench-loader") as pool:
        try:
            for future in [pool.submit(worker) for _ in range(loaders)]:
                future.result()
        except BaseException:
            stop.set()  # Ctrl-C or a failed batch: the other loaders stop after their current batch
            raise
    return Loaded(items=written[0], seconds=time.perf_counter() - start)


def _write_batch(call: Callable[..., dict[str, Any]], table: str, batch: list[dict[str, Any]]) -> None:
    requests: dict[str, list[dict[str, Any]]] = {table: [{"PutRequest": {"Item": item}} for item in batch]}
    for attempt in range(10):
        unprocessed = call(RequestItems=requests).get("UnprocessedItems") or {}
        if not unprocessed:
            return
        requests = unprocessed
        time.sleep(0.05 * (attempt + 1))
    raise RuntimeError(f"BatchWriteItem left items unprocessed in {table} after 10 attempts")
