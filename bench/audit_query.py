"""Audit query latency at 10 000 and 100 000 events: one secret's last 50 events.

Loads events in the real format (hash-chained ``AuditEvent``s stored with ``event_item``) with
BatchWriteItem into a fresh audit table, spread over 1 000 secrets plus one target secret with
60 events, then times ``AuditQuery.search(secretId=target, limit=50)`` (the ``by_secret`` index,
newest first). Prints p50/p99 at each size, the ratio, and what DynamoDB read per query
(``ScannedCount``): on DynamoDB a Query's cost depends on what it returns, not on the table size.

Runs against ``V_SECURE_AWS_ENDPOINT`` when set (LocalStack, a real account), else starts the
embedded moto server. Note: moto answers every Query by walking all items of the table in
Python, so on moto the latency grows with the table; ``ScannedCount`` (the same at both sizes) is the
size-independent figure there.

Usage::

    python bench/audit_query.py                 # 10 000 and 100 000 events
    python bench/audit_query.py --sizes 10000 --samples 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chalicelib.audit.events import GENESIS_HASH, Action, AuditEvent, Status
from chalicelib.audit.query import AuditFilters, AuditQuery
from chalicelib.audit.stream import event_item
from chalicelib.aws import client
from chalicelib.clock import isoformat
from chalicelib.tables import AUDIT_BY_SECRET, audit_table_definition

TARGET = "bench/target-secret"
SECRETS = [f"bench/secret-{n:04d}" for n in range(1000)]


def events(stream_id: str, count: int, first_seq: int, prev_hash: str, secrets: list[str],
           start: datetime) -> list[AuditEvent]:
    made = []
    for offset in range(count):
        seq = first_seq + offset
        event = AuditEvent(action=Action.SECRET_READ, actor="backend-service", actor_type="service_account",
                           status=Status.SUCCESS, secret_id=secrets[seq % len(secrets)], version=1,
                           event_id=f"evt_{uuid.uuid4().hex}", timestamp=isoformat(start + timedelta(milliseconds=seq)),
                           stream_id=stream_id, seq=seq, prev_hash=prev_hash)
        event = event.model_copy(update={"hash": event.computed_hash()})
        prev_hash = event.hash
        made.append(event)
    return made


def load(table: str, items: list[dict[str, Any]]) -> None:
    dynamodb = client("dynamodb")
    for start in range(0, len(items), 25):
        request: dict[str, Any] = {table: [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def fill_to(table: str, loaded: int, size: int, stream_id: str, state: dict[str, Any]) -> None:
    """Add events until the table holds ``size`` (the target's 60 are loaded first)."""
    start = datetime.now(UTC) - timedelta(hours=2)
    batch = events(stream_id, size - loaded, state["seq"] + 1, state["hash"], SECRETS, start)
    load(table, [event_item(e) for e in batch])
    state["seq"], state["hash"] = batch[-1].seq, batch[-1].hash


def measure(table: str, samples: int) -> tuple[float, float, int]:
    query = AuditQuery(client("dynamodb"), table)
    scanned: list[int] = []

    def count(parsed: dict[str, Any], **_kwargs: Any) -> None:
        scanned.append(int(parsed.get("ScannedCount", 0)))

    events_ = client("dynamodb").meta.events
    events_.register("after-call.dynamodb.Query", count)
    timings = []
    try:
        for _sample in range(samples):
            started = time.perf_counter()
            page = query.search(AuditFilters(secret_id=TARGET), limit=50)
            timings.append((time.perf_counter() - started) * 1000)
            assert len(page.entries) == 50
    finally:
        events_.unregister("after-call.dynamodb.Query", count)
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    return statistics.median(timings), p99, max(scanned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()

    import os

    stack = None
    if not os.environ.get("V_SECURE_AWS_ENDPOINT"):
        from chalicelib.local.stack import start_local_aws

        stack = start_local_aws(port=0)
    try:
        table = f"v-secure-bench{uuid.uuid4().hex[:8]}-audit"
        client("dynamodb").create_table(**audit_table_definition(table))
        client("dynamodb").get_waiter("table_exists").wait(TableName=table)
        target = events("bench-target", 60, 1, GENESIS_HASH, [TARGET], datetime.now(UTC) - timedelta(hours=1))
        load(table, [event_item(e) for e in target])
        state: dict[str, Any] = {"seq": 0, "hash": GENESIS_HASH}
        loaded, results = 60, {}
        for size in sorted(args.sizes):
            started = time.perf_counter()
            fill_to(table, loaded, size, "bench-stream", state)
            loaded = size
            p50, p99, scanned = measure(table, args.samples)
            results[size] = p50
            print(f"{size:>7} events: p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  items read per query {scanned} "
                  f"({AUDIT_BY_SECRET}, newest first)  [loaded in {time.perf_counter() - started:.0f} s]")
        if len(results) >= 2:
            small, large = min(results), max(results)
            print(f"p50 ratio {large}/{small}: {results[large] / results[small]:.2f}"
                  + ("  (moto walks every item per Query; see the module doc)" if stack else ""))
    finally:
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    main()
