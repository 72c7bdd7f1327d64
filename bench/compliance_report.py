"""Compliance report time over 10 000 secrets and 100 000 audit events.

Loads, with BatchWriteItem into fresh tables and a fresh Object Lock bucket: secrets in the stored
format (META item with the CURRENT envelope copy, and the version item; real AES-256-GCM envelopes),
and hash-chained audit events (reads of those secrets) spread over the period's days and several
streams. Seals the events with the real sealer (KMS-signed digest), then times one PCI DSS report:
evidence gathered once (listing-index Query, BatchGetItem of versions, one ``by_day`` Query per day,
Object Lock configuration, ``audit verify`` of the period) and every control evaluated. Prints the
time per phase, what was read (never a Scan) and the report's figures.

Runs against ``V_SECURE_AWS_ENDPOINT`` when set (LocalStack, a real account), else starts the
embedded moto server. Note: moto answers every Query by walking and copying every item of the
table in Python, so on moto the listing and ``by_day`` reads grow with the table size; on DynamoDB a
Query costs what it returns.

Usage::

    python bench/compliance_report.py                          # 10 000 secrets, 100 000 events, 7 days
    python bench/compliance_report.py --secrets 1000 --events 5000 --days 3 --no-seal
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chalicelib.audit.events import GENESIS_HASH, Action, AuditEvent, Status
from chalicelib.audit.sealer import HEAD_SK, STATE_PK, AuditLocation, KmsSigner, Sealer
from chalicelib.audit.stream import STREAMS_PK, event_item
from chalicelib.audit.verify import Verifier, fetch_public_key
from chalicelib.aws import client
from chalicelib.clock import FrozenClock, isoformat
from chalicelib.compliance.evidence import EvidenceSource, gather, verify_facts
from chalicelib.compliance.model import Period, PeriodKind
from chalicelib.compliance.report import build_report
from chalicelib.compliance.validators import get_standard
from chalicelib.config import get_settings
from chalicelib.ports import DataKey
from chalicelib.tables import audit_table_definition, secrets_table_definition
from chalicelib.vault.encryption import EnvelopeContext, seal
from chalicelib.vault.records import SecretRecord, VersionRecord
from chalicelib.vault.storage import record_item, to_attributes, version_item

STANDARD = "PCI-DSS"
KID = "kms:arn:aws:kms:us-east-1:123456789012:key/bench"


class _Keys:
    """Data keys with a KMS-provider kid; the report never decrypts, so nothing is really wrapped."""

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        return DataKey(os.urandom(32), os.urandom(184), KID)

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        raise NotImplementedError


def load(table: str, items: list[dict[str, Any]], threads: int = 4) -> None:
    dynamodb = client("dynamodb")

    def write(chunk: list[dict[str, Any]]) -> None:
        request: dict[str, Any] = {table: [{"PutRequest": {"Item": i}} for i in chunk]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, [items[i:i + 25] for i in range(0, len(items), 25)]))


def secrets(count: int, stored: datetime) -> tuple[list[str], list[dict[str, Any]]]:
    ids, items = [], []
    for n in range(count):
        secret_id = f"bench/secret-{n:06d}"
        envelope = seal(os.urandom(24), EnvelopeContext(secret_id=secret_id, version=1, type="api_key"), _Keys())
        record = SecretRecord(secret_id=secret_id, type="api_key", current_version=1, latest_version=1,
                              labels={"CURRENT": 1}, compliance=[STANDARD], access={"bench-admin": ["admin"]},
                              constraints={"require_mfa": True}, created_at=stored, created_by="bench-admin",
                              updated_at=stored, current=envelope, rev=1)
        ids.append(secret_id)
        items.append(record_item(record))
        items.append(version_item(VersionRecord(secret_id=secret_id, version=1, created_at=stored,
                                                created_by="bench-admin", envelope=envelope)))
    return ids, items


def events(count: int, streams: int, ids: list[str], start: datetime, span: timedelta) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    per_stream = count // streams
    step = span / max(per_stream, 1)
    for s in range(streams):
        stream_id = f"{start.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:16]}"
        items.append({"pk": {"S": STREAMS_PK}, "sk": {"N": str(s + 1)}, "stream_id": {"S": stream_id},
                      "started_at": {"S": isoformat(start)}})
        prev = GENESIS_HASH
        for seq in range(1, per_stream + 1):
            event = AuditEvent(action=Action.SECRET_READ, actor="bench-reader", actor_type="service_account",
                               status=Status.SUCCESS, secret_id=ids[(seq * streams + s) % len(ids)], version=1,
                               event_id=f"evt_{uuid.uuid4().hex}", timestamp=isoformat(start + step * seq),
                               stream_id=stream_id, seq=seq, prev_hash=prev)
            event = event.model_copy(update={"hash": event.computed_hash()})
            prev = event.hash
            items.append(event_item(event))
    return items


def _patient_client(service: str, read_timeout: int) -> Any:
    """Like ``chalicelib.aws.client`` (same session and endpoint) with a longer read timeout: on moto one
    Query over a 20 000-item table can exceed the service's 10 s."""
    from botocore.config import Config

    from chalicelib.aws import session

    settings = get_settings()
    return session().client(service, region_name=settings.region, endpoint_url=settings.aws_endpoint,
                            config=Config(read_timeout=read_timeout, retries={"max_attempts": 1},
                                          max_pool_connections=50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=7, help="The period: events spread over this many days.")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--no-seal", dest="seal", action="store_false", help="Skip sealing (verify then fails).")
    parser.add_argument("--read-timeout", type=int, default=300,
                        help="Seconds per read (moto can take minutes over a Query on a large table).")
    args = parser.parse_args()

    stack = None
    if not os.environ.get("V_SECURE_AWS_ENDPOINT"):
        from chalicelib.local.stack import start_local_aws

        stack = start_local_aws(port=0)
    try:
        run(args)
    finally:
        if stack is not None:
            stack.stop()


def run(args: argparse.Namespace) -> None:
    from chalicelib.local.bootstrap import ensure_audit_bucket, ensure_table

    settings = get_settings()
    prefix = f"v-secure-bench{uuid.uuid4().hex[:8]}"
    secrets_table = f"{prefix}-secrets"
    # The sealer keeps its state in a small table of its own here: moto copies every table a
    # TransactWriteItems touches, which times out on a 20 000-item secrets table. The chain head is
    # copied to the secrets table afterwards, where the report reads it (as in production).
    location = AuditLocation(audit_table=f"{prefix}-audit", state_table=f"{prefix}-state-secrets",
                             bucket=f"{prefix}-audit-log", signing_key_id=settings.audit_signing_key_id,
                             sse_kms_key_id=None, retention_days=2555, seal_interval_seconds=300)
    ensure_table(secrets_table_definition(secrets_table))
    ensure_table(secrets_table_definition(location.state_table))
    ensure_table(audit_table_definition(location.audit_table))
    kms_arn = client("kms").describe_key(KeyId=settings.kms_key_id)["KeyMetadata"]["Arn"]
    ensure_audit_bucket(location.bucket, region=settings.region, retention_days=2555, kms_key_arn=kms_arn)

    now = datetime.now(UTC)
    start = (now - timedelta(days=args.days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    ids, secret_items = secrets(args.secrets, now - timedelta(days=30))
    load(secrets_table, secret_items)
    load(secrets_table, [{"pk": {"S": "PRINCIPALS"}, "sk": {"S": p}, **to_attributes({
        "principal_id": p, "type": "user", "created_at": now - timedelta(days=10), "created_by": "root"})}
        for p in ("bench-admin", "bench-reader")])
    event_items = events(args.events, args.streams, ids, start, (now - timedelta(minutes=30)) - start)
    load(location.audit_table, event_items)
    print(f"loaded {args.secrets} secrets and {args.events} events over {args.days} days "
          f"in {time.perf_counter() - started:.0f} s")
    clock = FrozenClock(now)
    if args.seal:
        sealing = time.perf_counter()
        sealed = Sealer(client("dynamodb"), client("s3"), KmsSigner(client("kms"), location.signing_key_id), location,
                        clock).seal()
        print(f"sealed {sealed.events} events in {sealed.segments} segments, {len(sealed.digests)} digests "
              f"in {time.perf_counter() - sealing:.0f} s")
        head = client("dynamodb").get_item(TableName=location.state_table,
                                           Key={"pk": {"S": STATE_PK}, "sk": {"S": HEAD_SK}}).get("Item")
        if head:
            load(secrets_table, [head])

    dynamodb, s3 = _patient_client("dynamodb", args.read_timeout), _patient_client("s3", args.read_timeout)
    public_key = fetch_public_key(client("kms"), location.signing_key_id)
    verify_seconds: list[float] = []

    def verify(first: datetime, last: datetime | None) -> Any:
        began = time.perf_counter()
        facts = verify_facts(Verifier(dynamodb, s3, location, public_key, clock)
                             .verify(start=first, end=last))
        verify_seconds.append(time.perf_counter() - began)
        return facts

    source = EvidenceSource(dynamodb=dynamodb, s3=s3, secrets_table=secrets_table,
                            audit_table=location.audit_table, audit_bucket=location.bucket,
                            key_providers=frozenset({"kms"}), verify=verify)
    period = Period(PeriodKind.CUSTOM, start, now, now)
    standard = get_standard(STANDARD)
    began = time.perf_counter()
    evidence = gather(source, period, inactive_days=standard.inactive_days)
    gathered = time.perf_counter()
    report = build_report(evidence, standard, generated_at=now, generated_by="bench")
    done = time.perf_counter()
    print(f"report {STANDARD} over {args.secrets} secrets / {args.events} events ({args.days} days): "
          f"{done - began:.1f} s  (evidence {gathered - began:.1f} s, of which audit verify "
          f"{sum(verify_seconds):.1f} s; controls {done - gathered:.2f} s)")
    print(f"  reads: {', '.join(f'{k} {v}' for k, v in sorted(report.evidence_reads.items()))}")
    print(f"  status {report.status.value}; totalSecrets {report.total_secrets}, encrypted {report.encrypted}, "
          f"accesses {sum(d.accesses for d in report.activity)}; failed: "
          f"{[v.control_id for v in report.violations] or 'none'}")


if __name__ == "__main__":
    main()
