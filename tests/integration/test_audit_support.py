"""Helpers for the audit integration tests (no tests here).

Each tamper test gets its own audit log (audit table, state table, Object Lock bucket) on the
shared moto server, so tampering never touches the session's shared audit log. Events are
built in the real format (``AuditEvent`` hash-chained, stored with ``event_item``) and loaded
with ``BatchWriteItem``, which keeps 10 000 events to a few seconds.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.audit.events import GENESIS_HASH, Action, AuditEvent, Status
from chalicelib.audit.sealer import AuditLocation, KmsSigner, Sealer
from chalicelib.audit.stream import STREAMS_PK, event_item, stream_pk
from chalicelib.audit.verify import Verifier, fetch_public_key
from chalicelib.aws import client
from chalicelib.clock import FrozenClock, isoformat
from chalicelib.config import get_settings
from chalicelib.local.bootstrap import ensure_audit_bucket, ensure_table
from chalicelib.tables import audit_table_definition, secrets_table_definition

HOUR_AGO = timedelta(hours=1)


def chained_events(stream_id: str, count: int, *, start: datetime, first_seq: int = 1,
                   prev_hash: str = GENESIS_HASH, secret_ids: list[str] | None = None,
                   step: timedelta = timedelta(milliseconds=1)) -> list[AuditEvent]:
    """``count`` correctly chained events of one stream, ``step`` apart from ``start``."""
    events: list[AuditEvent] = []
    secrets = secret_ids or ["it-audit-secret"]
    for offset in range(count):
        seq = first_seq + offset
        event = AuditEvent(action=Action.SECRET_READ, actor="backend-service", actor_type="service_account",
                           status=Status.SUCCESS, secret_id=secrets[(seq - 1) % len(secrets)], version=1,
                           source_ip="10.0.0.7", request_id=f"req-{seq}", event_id=f"evt_{uuid.uuid4().hex}",
                           timestamp=isoformat(start + step * offset), stream_id=stream_id, seq=seq,
                           prev_hash=prev_hash)
        event = event.model_copy(update={"hash": event.computed_hash()})
        prev_hash = event.hash
        events.append(event)
    return events


def batch_put(table: str, items: list[dict[str, Any]], threads: int = 2) -> None:
    """BatchWriteItem in chunks of 25, a few chunks at a time (item order does not matter)."""
    dynamodb = client("dynamodb")

    def write(chunk: list[dict[str, Any]]) -> None:
        request: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    chunks = [items[start:start + 25] for start in range(0, len(items), 25)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, chunks))


def registry_item(stream_id: str, slot: int) -> dict[str, Any]:
    return {"pk": {"S": STREAMS_PK}, "sk": {"N": str(slot)}, "stream_id": {"S": stream_id},
            "started_at": {"S": isoformat(datetime.now(UTC))}}


@dataclass
class IsolatedAudit:
    """An audit log of its own: tables, bucket, sealer and verifier (signing key: the shared one)."""

    location: AuditLocation
    clock: FrozenClock
    streams: dict[str, list[AuditEvent]] = field(default_factory=dict)

    @classmethod
    def create(cls, *, retention_days: int = 1, clock: FrozenClock | None = None) -> IsolatedAudit:
        settings = get_settings()
        # Names the IAM policy's patterns cover (v-secure*-audit, v-secure*-secrets, v-secure*-audit-*).
        prefix = f"v-secure-it{uuid.uuid4().hex[:10]}"
        names = {"audit": f"{prefix}-audit", "state": f"{prefix}-secrets", "bucket": f"{prefix}-audit-log"}
        ensure_table(audit_table_definition(names["audit"]))
        ensure_table(secrets_table_definition(names["state"]))
        kms_arn = client("kms").describe_key(KeyId=settings.kms_key_id)["KeyMetadata"]["Arn"]
        ensure_audit_bucket(names["bucket"], region=settings.region, retention_days=retention_days,
                            kms_key_arn=kms_arn)
        location = AuditLocation(audit_table=names["audit"], state_table=names["state"], bucket=names["bucket"],
                                 signing_key_id=settings.audit_signing_key_id, sse_kms_key_id=settings.kms_key_id,
                                 retention_days=retention_days, seal_interval_seconds=300)
        return cls(location, clock or FrozenClock(datetime.now(UTC)))

    def add_events(self, per_stream: int, *, streams: int = 1, secret_ids: list[str] | None = None,
                   age: timedelta = HOUR_AGO) -> list[AuditEvent]:
        """Append ``per_stream`` events to each of ``streams`` streams (new streams are registered)."""
        while len(self.streams) < streams:
            stream_id = f"20260101T000000-{uuid.uuid4().hex[:16]}"
            batch_put(self.location.audit_table, [registry_item(stream_id, uuid.uuid4().int % 10**15)])
            self.streams[stream_id] = []
        added: list[AuditEvent] = []
        start = self.clock.now() - age
        for stream_id, existing in list(self.streams.items())[:streams]:
            last = existing[-1] if existing else None
            events = chained_events(stream_id, per_stream, start=start, first_seq=(last.seq + 1) if last else 1,
                                    prev_hash=last.hash if last else GENESIS_HASH, secret_ids=secret_ids)
            existing.extend(events)
            added.extend(events)
        batch_put(self.location.audit_table, [event_item(event) for event in added])
        return added

    def sealer(self) -> Sealer:
        return Sealer(client("dynamodb"), client("s3"), KmsSigner(client("kms"), self.location.signing_key_id),
                      self.location, self.clock)

    def verifier(self) -> Verifier:
        key = fetch_public_key(client("kms"), self.location.signing_key_id)
        return Verifier(client("dynamodb"), client("s3"), self.location, key, self.clock)

    def cli_args(self) -> list[str]:
        return ["--audit-table", self.location.audit_table, "--state-table", self.location.state_table,
                "--bucket", self.location.bucket]

    # --- reading and tampering ------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        body: bytes = client("s3").get_object(Bucket=self.location.bucket, Key=key)["Body"].read()
        return body

    def put_new_version(self, key: str, body: bytes) -> None:
        """What someone with s3:PutObject can do under Object Lock: add a version on top (the
        locked version stays, but readers of the key now get the new bytes)."""
        client("s3").put_object(Bucket=self.location.bucket, Key=key, Body=body)

    def keys(self, prefix: str) -> list[str]:
        answer = client("s3").list_objects_v2(Bucket=self.location.bucket, Prefix=prefix)
        return sorted(obj["Key"] for obj in answer.get("Contents", []))

    def item_key(self, stream_id: str, seq: int) -> dict[str, Any]:
        return {"pk": {"S": stream_pk(stream_id)}, "sk": {"N": str(seq)}}

    def stored_item(self, stream_id: str, seq: int) -> dict[str, Any]:
        item: dict[str, Any] = client("dynamodb").get_item(
            TableName=self.location.audit_table, Key=self.item_key(stream_id, seq), ConsistentRead=True)["Item"]
        return item
