"""The audit sealer: closed stream segments to S3 Object Lock, then a signed, chained digest.

Modelled on CloudTrail log-file integrity validation. One *round*:

1. Read the digest-chain head (secrets table, ``pk=SYSTEM sk=AUDIT_DIGEST_HEAD``); if the
   head's digest object is missing (a sealer died after advancing the head), write it again
   from the copy kept in the head item.
2. For each registered stream, take the events after its sealed position whose timestamp is
   older than the seal interval: a contiguous seq range of that one stream, at most
   ``MAX_SEGMENT_EVENTS`` of them.
3. Write each range as a JSON Lines *segment* (the stored canonical ``event`` strings, one per
   line) under ``segments/<stream>/<first seq>-<last seq>.jsonl``: Object Lock COMPLIANCE until
   now + ``retention_days``, SSE-KMS when the audit log is encrypted. Keys are deterministic and
   the writes conditional (``If-None-Match: *``), so a second sealer writing the same range is a
   no-op.
4. Sign a *digest* listing the segments (key, SHA-256, stream, seq range, time range, chain
   hashes), the previous digest's key and signature.
5. Advance the head with a condition on the previous digest key, together with the per-stream
   positions, in one transaction: of two sealers racing, exactly one extends the chain (the
   other's segments stay as unreferenced objects and it starts a new round).
6. Write the digest object under ``digests/<time>-<n>.json`` (Object Lock too).

The signature is KMS ``Sign`` (ECDSA_SHA_256, MessageType RAW) over a short signing statement,
the canonical JSON of ``{version, digest_key, created_at, body_sha256, previous_signature}``
where ``body_sha256`` is the SHA-256 of the canonical digest body, as CloudTrail signs a string
holding the digest file's hash: KMS refuses RAW messages over 4096 bytes, which a digest with
many segments exceeds.

Example::

    from chalicelib.audit.sealer import seal_all

    seal_all()   # {"digests": 1, "segments": 3, "events": 412, ...}
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict

from chalicelib.audit.events import chain_hash
from chalicelib.audit.stream import STREAMS_PK, stream_pk
from chalicelib.clock import Clock, SystemClock, isoformat
from chalicelib.config import Settings, get_settings
from chalicelib.errors import Conflict, DependencyUnavailable
from chalicelib.logging import logger

SEGMENT_PREFIX = "segments/"
DIGEST_PREFIX = "digests/"
STATE_PK = "SYSTEM"
HEAD_SK = "AUDIT_DIGEST_HEAD"
POSITION_SK_PREFIX = "AUDIT_SEALED#"
MAX_SEGMENT_EVENTS = 5000
MAX_STREAMS_PER_DIGEST = 90
"""A digest's head update and stream positions go in one transaction (100 items at most)."""
MAX_ROUNDS = 50
DIGEST_VERSION = 1
SIGNING_ALGORITHM = "ECDSA_SHA_256"
GENESIS = "0" * 64


class SealConflict(Conflict):
    """A segment key already holds different content: tampering, or a bug; never overwritten."""

    code = "seal_conflict"


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes that are hashed and signed."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- where the audit log lives ----------------------------------------------------------------


@dataclass(frozen=True)
class AuditLocation:
    """Tables, bucket and keys of one audit log (tests build their own, isolated ones).

    Example::

        location = AuditLocation.from_settings()
    """

    audit_table: str
    state_table: str
    bucket: str
    signing_key_id: str
    sse_kms_key_id: str | None
    retention_days: int
    seal_interval_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> AuditLocation:
        settings = settings or get_settings()
        return cls(audit_table=settings.audit_table, state_table=settings.secrets_table,
                   bucket=settings.audit_bucket, signing_key_id=settings.audit_signing_key_id,
                   sse_kms_key_id=settings.kms_key_id if settings.audit_log_encrypted else None,
                   retention_days=settings.retention_days,
                   seal_interval_seconds=settings.seal_interval_seconds)


# --- the documents ----------------------------------------------------------------------------


class SegmentEntry(BaseModel):
    """One sealed segment as a digest lists it."""

    model_config = ConfigDict(frozen=True)

    key: str
    sha256: str
    stream_id: str
    first_seq: int
    last_seq: int
    events: int
    first_prev_hash: str
    """``prev_hash`` of the first event: links this segment to the stream's previous one."""
    last_hash: str
    start_time: str
    end_time: str
    version_id: str | None = None


class DigestBody(BaseModel):
    """What a digest states; the signature covers its canonical JSON (through the statement)."""

    model_config = ConfigDict(frozen=True)

    version: int = DIGEST_VERSION
    digest_key: str
    sequence: int
    created_at: str
    previous_digest_key: str | None
    previous_signature: str | None
    signing_key_id: str
    signing_algorithm: str = SIGNING_ALGORITHM
    segments: list[SegmentEntry]

    def canonical(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))

    def signing_statement(self) -> bytes:
        """The RAW message that KMS signs (always well under KMS's 4096-byte limit)."""
        return canonical_json({"version": self.version, "digest_key": self.digest_key,
                               "created_at": self.created_at, "body_sha256": sha256_hex(self.canonical()),
                               "previous_signature": self.previous_signature})


@dataclass(frozen=True)
class Digest:
    body: DigestBody
    signature: str
    """Base64 of the DER ECDSA signature."""

    def document(self) -> bytes:
        return canonical_json({**self.body.model_dump(mode="json"), "signature": self.signature})

    @classmethod
    def parse(cls, raw: bytes) -> Digest:
        data = json.loads(raw)
        signature = data.pop("signature")
        if not isinstance(signature, str):
            raise ValueError("signature is not a string")
        return cls(DigestBody.model_validate(data), signature)


def segment_key(stream_id: str, first_seq: int, last_seq: int) -> str:
    return f"{SEGMENT_PREFIX}{stream_id}/{first_seq:012d}-{last_seq:012d}.jsonl"


def digest_key(created: datetime, sequence: int) -> str:
    return f"{DIGEST_PREFIX}{created.strftime('%Y%m%dT%H%M%SZ')}-{sequence:012d}.json"


def digest_sequence(key: str) -> int | None:
    """The chain position in a digest key (``digests/20260115T103000Z-000000000042.json`` -> 42)."""
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    _time, _sep, number = name.rpartition("-")
    return int(number) if number.isdigit() else None


def digest_time(key: str) -> datetime | None:
    name = key.rsplit("/", 1)[-1]
    try:
        return datetime.strptime(name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


# --- stored events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    """An audit table item as the sealer and verify read it."""

    seq: int
    ts: str
    event: str
    hash: str

    @property
    def timestamp(self) -> str:
        if self.ts:
            return self.ts.split("#", 1)[0]
        return str(self._fields().get("timestamp", ""))

    @property
    def computed_hash(self) -> str:
        """The event's chain hash, recomputed from the stored canonical bytes."""
        return chain_hash(str(self._fields().get("prev_hash", "")), self.event.encode())

    def _fields(self) -> dict[str, Any]:
        try:
            data = json.loads(self.event)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def event_id(self) -> str:
        return self.ts.split("#", 1)[-1]

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> StoredEvent:
        return cls(seq=int(item["sk"]["N"]), ts=item.get("ts", {}).get("S", ""),
                   event=item.get("event", {}).get("S", ""), hash=item.get("hash", {}).get("S", ""))


class AuditTableReader:
    """Reads the stream registry and stream events from the audit table (Query only, never Scan)."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def streams(self) -> list[str]:
        """Every registered stream id, oldest first."""
        found: list[str] = []
        for item in self._query(KeyConditionExpression="pk = :pk",
                                ExpressionAttributeValues={":pk": {"S": STREAMS_PK}}):
            stream_id = item.get("stream_id", {}).get("S")
            if stream_id and stream_id not in found:
                found.append(stream_id)
        return found

    def events_after(self, stream_id: str, seq: int, page_size: int = 1000, *,
                     with_body: bool = True) -> Iterator[StoredEvent]:
        """The stream's events with a sequence number above ``seq``, in order (consistent reads).

        ``with_body=False`` reads only sequence numbers and timestamps (``event`` is then empty).
        """
        # Fewer attributes read is less to transfer: the body carries its own time and chain.
        projection = "sk, #event" if with_body else "sk, ts"
        names = {"#event": "event"} if with_body else None
        kwargs: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        for item in self._query(KeyConditionExpression="pk = :pk AND sk > :seq",
                                ExpressionAttributeValues={":pk": {"S": stream_pk(stream_id)},
                                                           ":seq": {"N": str(seq)}},
                                ConsistentRead=True, Limit=page_size, ProjectionExpression=projection, **kwargs):
            yield StoredEvent.from_item(item)

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        kwargs["TableName"] = self._table
        while True:
            answer = _dynamodb_call("Query", self._db.query, **kwargs)
            yield from answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


# --- sealer state (head of the digest chain, per-stream positions) ----------------------------


@dataclass(frozen=True)
class ChainHead:
    digest_key: str
    sequence: int
    signature: str
    document: str


@dataclass(frozen=True)
class StreamPosition:
    last_seq: int = 0
    last_hash: str = GENESIS


class SealState:
    """The sealer's durable state in the secrets table; the head is advanced check-and-set."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def head(self) -> ChainHead | None:
        item = _dynamodb_call("GetItem", self._db.get_item, TableName=self._table, ConsistentRead=True,
                              Key={"pk": {"S": STATE_PK}, "sk": {"S": HEAD_SK}}).get("Item")
        if not item:
            return None
        return ChainHead(digest_key=item["digest_key"]["S"], sequence=int(item["sequence"]["N"]),
                         signature=item["signature"]["S"], document=item["document"]["S"])

    def positions(self) -> dict[str, StreamPosition]:
        """Every stream's sealed position (one Query over the ``AUDIT_SEALED#`` items)."""
        found: dict[str, StreamPosition] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._table, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": STATE_PK}, ":prefix": {"S": POSITION_SK_PREFIX}}}
        while True:
            answer = _dynamodb_call("Query", self._db.query, **kwargs)
            for item in answer.get("Items", []):
                stream_id = item["sk"]["S"].removeprefix(POSITION_SK_PREFIX)
                found[stream_id] = StreamPosition(int(item["last_seq"]["N"]), item["last_hash"]["S"])
            if "LastEvaluatedKey" not in answer:
                return found
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def advance(self, previous: ChainHead | None, digest: Digest,
                positions: dict[str, tuple[StreamPosition, StreamPosition]]) -> bool:
        """Move the head to ``digest`` and the streams to their new positions; False if another won."""
        head_put: dict[str, Any] = {"TableName": self._table, "Item": {
            "pk": {"S": STATE_PK}, "sk": {"S": HEAD_SK}, "digest_key": {"S": digest.body.digest_key},
            "sequence": {"N": str(digest.body.sequence)}, "signature": {"S": digest.signature},
            "document": {"S": digest.document().decode()}}}
        if previous is None:
            head_put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            head_put["ConditionExpression"] = "digest_key = :previous"
            head_put["ExpressionAttributeValues"] = {":previous": {"S": previous.digest_key}}
        items: list[dict[str, Any]] = [{"Put": head_put}]
        for stream_id, (old, new) in positions.items():
            put: dict[str, Any] = {"TableName": self._table, "Item": {
                "pk": {"S": STATE_PK}, "sk": {"S": POSITION_SK_PREFIX + stream_id},
                "last_seq": {"N": str(new.last_seq)}, "last_hash": {"S": new.last_hash},
                "digest_key": {"S": digest.body.digest_key}}}
            if old.last_seq == 0:
                put["ConditionExpression"] = "attribute_not_exists(pk) OR last_seq = :zero"
                put["ExpressionAttributeValues"] = {":zero": {"N": "0"}}
            else:
                put["ConditionExpression"] = "last_seq = :old"
                put["ExpressionAttributeValues"] = {":old": {"N": str(old.last_seq)}}
            items.append({"Put": put})
        try:
            self._db.transact_write_items(TransactItems=items)
        except ClientError as error:
            if _code(error) in ("TransactionCanceledException", "ConditionalCheckFailedException"):
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
                if not reasons or "ConditionalCheckFailed" in reasons:
                    return False
            raise DependencyUnavailable("dynamodb", f"sealer state update failed: {_code(error)}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("dynamodb", f"sealer state update failed: {type(error).__name__}") from None
        return True


# --- signing and the bucket -------------------------------------------------------------------


class Signer(Protocol):
    """Signs digest statements with ECDSA P-256 / SHA-256; ``key_id`` names the key."""

    key_id: str

    def sign(self, message: bytes) -> bytes: ...


class KmsSigner:
    """KMS ``Sign`` with an ECC_NIST_P256 key, ECDSA_SHA_256, MessageType RAW."""

    def __init__(self, kms: Any, key_id: str) -> None:
        self._kms = kms
        self.key_id = key_id

    def sign(self, message: bytes) -> bytes:
        try:
            answer = self._kms.sign(KeyId=self.key_id, Message=message, MessageType="RAW",
                                    SigningAlgorithm=SIGNING_ALGORITHM)
        except ClientError as error:
            raise DependencyUnavailable("kms", f"Sign failed: {_code(error)}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("kms", f"Sign failed: {type(error).__name__}") from None
        return bytes(answer["Signature"])


@dataclass(frozen=True)
class StoredObject:
    body: bytes
    version_id: str | None
    lock_mode: str | None
    """The Object Lock headers GetObject returns (``s3:GetObjectRetention`` lets the caller see them)."""
    retain_until: datetime | None


class LockedBucket:
    """Writes objects once, under Object Lock COMPLIANCE retention (and SSE-KMS when configured)."""

    def __init__(self, s3: Any, location: AuditLocation, clock: Clock) -> None:
        self._s3 = s3
        self._location = location
        self._clock = clock

    def put_once(self, key: str, body: bytes, content_type: str) -> str | None:
        """Write ``body`` at ``key`` unless it is there already; return the object's version id.

        Raises :class:`SealConflict` when ``key`` already holds different bytes.
        """
        digest = hashlib.sha256(body).digest()
        arguments: dict[str, Any] = {
            "Bucket": self._location.bucket, "Key": key, "Body": body, "ContentType": content_type,
            "ChecksumAlgorithm": "SHA256", "IfNoneMatch": "*",
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": self._clock.now() + timedelta(days=self._location.retention_days),
        }
        if self._location.sse_kms_key_id:
            arguments.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self._location.sse_kms_key_id)
        try:
            answer = self._s3.put_object(**arguments)
            return answer.get("VersionId")
        except ClientError as error:
            if _code(error) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise DependencyUnavailable("s3", f"PutObject {key} failed: {_code(error)}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("s3", f"PutObject {key} failed: {type(error).__name__}") from None
        existing, version_id = self.get(key)
        if existing is None or hashlib.sha256(existing).digest() != digest:
            raise SealConflict(f"{key} already holds different content; it was not overwritten")
        return version_id

    def get(self, key: str) -> tuple[bytes | None, str | None]:
        """The current bytes at ``key`` and their version id; ``(None, None)`` when there are none."""
        found = self.fetch(key)
        return (found.body, found.version_id) if found else (None, None)

    def fetch(self, key: str) -> StoredObject | None:
        """The current object at ``key`` with its Object Lock headers, or None."""
        try:
            answer = self._s3.get_object(Bucket=self._location.bucket, Key=key)
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "404", "NotFound", "MethodNotAllowed"):
                return None
            raise DependencyUnavailable("s3", f"GetObject {key} failed: {_code(error)}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("s3", f"GetObject {key} failed: {type(error).__name__}") from None
        return StoredObject(answer["Body"].read(), answer.get("VersionId"), answer.get("ObjectLockMode"),
                            answer.get("ObjectLockRetainUntilDate"))

    def get_version(self, key: str, version_id: str) -> bytes | None:
        """The bytes of one exact version (the sealed one), or None when it is gone."""
        try:
            answer = self._s3.get_object(Bucket=self._location.bucket, Key=key, VersionId=version_id)
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "NoSuchVersion", "404", "NotFound", "MethodNotAllowed",
                                "InvalidArgument"):
                return None
            raise DependencyUnavailable("s3", f"GetObject {key} failed: {_code(error)}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("s3", f"GetObject {key} failed: {type(error).__name__}") from None
        body: bytes = answer["Body"].read()
        return body

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        arguments: dict[str, Any] = {"Bucket": self._location.bucket, "Prefix": prefix}
        while True:
            try:
                answer = self._s3.list_objects_v2(**arguments)
            except ClientError as error:
                raise DependencyUnavailable("s3", f"ListObjectsV2 failed: {_code(error)}") from None
            except BotoCoreError as error:
                raise DependencyUnavailable("s3", f"ListObjectsV2 failed: {type(error).__name__}") from None
            found.extend(obj["Key"] for obj in answer.get("Contents", []))
            if not answer.get("IsTruncated"):
                return found
            arguments["ContinuationToken"] = answer["NextContinuationToken"]


# --- the sealer -------------------------------------------------------------------------------


@dataclass
class _Plan:
    stream_id: str
    position: StreamPosition
    events: list[StoredEvent]


@dataclass
class SealResult:
    """What one ``seal`` run did (also the scheduled job's answer)."""

    digests: list[str] = field(default_factory=list)
    segments: int = 0
    events: int = 0
    streams: int = 0
    lost_races: int = 0
    repaired: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"digests": self.digests, "segments": self.segments, "events": self.events,
                "streams": self.streams, "lostRaces": self.lost_races, "repaired": self.repaired}


class Sealer:
    """Seals closed segments of every stream and extends the signed digest chain.

    Example::

        sealer = Sealer(client("dynamodb"), client("s3"), KmsSigner(client("kms"), key_id), location)
        result = sealer.seal()
    """

    def __init__(self, dynamodb: Any, s3: Any, signer: Signer, location: AuditLocation,
                 clock: Clock | None = None) -> None:
        self.location = location
        self.clock = clock or SystemClock()
        self.signer = signer
        self.reader = AuditTableReader(dynamodb, location.audit_table)
        self.state = SealState(dynamodb, location.state_table)
        self.bucket = LockedBucket(s3, location, self.clock)

    def seal(self, max_rounds: int = MAX_ROUNDS) -> SealResult:
        """Run rounds until nothing closed is left unsealed (or ``max_rounds``)."""
        result = SealResult()
        sealed_streams: set[str] = set()
        for _round in range(max_rounds):
            outcome = self.seal_round(result)
            if outcome is None:
                break
            sealed_streams.update(outcome)
        result.streams = len(sealed_streams)
        return result

    def seal_round(self, result: SealResult) -> set[str] | None:
        """One digest at most. Returns the streams sealed, ``set()`` after a lost race, None when idle."""
        head = self.state.head()
        self._repair(head, result)
        plans = self._plan()
        if not plans:
            return None
        entries = [self._write_segment(plan) for plan in plans]
        digest = self._sign(head, entries)
        positions = {plan.stream_id: (plan.position, StreamPosition(entry.last_seq, entry.last_hash))
                     for plan, entry in zip(plans, entries, strict=True)}
        if not self.state.advance(head, digest, positions):
            result.lost_races += 1
            logger.info("audit sealer lost the race for the digest chain; starting again")
            return set()
        self.bucket.put_once(digest.body.digest_key, digest.document(), "application/json")
        result.digests.append(digest.body.digest_key)
        result.segments += len(entries)
        result.events += sum(entry.events for entry in entries)
        return {plan.stream_id for plan in plans}

    def _repair(self, head: ChainHead | None, result: SealResult) -> None:
        """A sealer that died between advancing the head and writing the digest: write it now."""
        if head is None or self.bucket.get(head.digest_key)[0] is not None:
            return
        self.bucket.put_once(head.digest_key, head.document.encode(), "application/json")
        result.repaired.append(head.digest_key)

    def _plan(self) -> list[_Plan]:
        cutoff = isoformat(self.clock.now() - timedelta(seconds=self.location.seal_interval_seconds))
        streams = self.reader.streams()
        positions = self.state.positions()
        plans: list[_Plan] = []
        for stream_id in streams:
            position = positions.get(stream_id, StreamPosition())
            events = self._closed_events(stream_id, position.last_seq, cutoff)
            if events:
                plans.append(_Plan(stream_id, position, events))
                if len(plans) == MAX_STREAMS_PER_DIGEST:
                    break
        return plans

    def _closed_events(self, stream_id: str, after_seq: int, cutoff: str) -> list[StoredEvent]:
        events: list[StoredEvent] = []
        for event in self.reader.events_after(stream_id, after_seq,
                                              page_size=MAX_SEGMENT_EVENTS + 1):
            if event.timestamp >= cutoff or len(events) == MAX_SEGMENT_EVENTS:
                break
            events.append(event)
        return events

    def _write_segment(self, plan: _Plan) -> SegmentEntry:
        body = "".join(event.event + "\n" for event in plan.events).encode()
        first, last = plan.events[0], plan.events[-1]
        key = segment_key(plan.stream_id, first.seq, last.seq)
        version_id = self.bucket.put_once(key, body, "application/x-ndjson")
        return SegmentEntry(key=key, sha256=sha256_hex(body), stream_id=plan.stream_id, first_seq=first.seq,
                            last_seq=last.seq, events=len(plan.events), first_prev_hash=_prev_hash(first),
                            last_hash=last.computed_hash, start_time=first.timestamp, end_time=last.timestamp,
                            version_id=version_id)

    def _sign(self, head: ChainHead | None, entries: list[SegmentEntry]) -> Digest:
        now = self.clock.now()
        sequence = (head.sequence if head else 0) + 1
        body = DigestBody(digest_key=digest_key(now, sequence), sequence=sequence, created_at=isoformat(now),
                          previous_digest_key=head.digest_key if head else None,
                          previous_signature=head.signature if head else None,
                          signing_key_id=self.signer.key_id, segments=entries)
        return Digest(body, base64.b64encode(self.signer.sign(body.signing_statement())).decode())


def _prev_hash(event: StoredEvent) -> str:
    try:
        value = json.loads(event.event).get("prev_hash")
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def _dynamodb_call(operation: str, method: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = method(**kwargs)
        return answer
    except ClientError as error:
        raise DependencyUnavailable("dynamodb", f"{operation} failed: {_code(error)}") from None
    except BotoCoreError as error:
        raise DependencyUnavailable("dynamodb", f"{operation} failed: {type(error).__name__}") from None


def build_sealer(location: AuditLocation | None = None, clock: Clock | None = None) -> Sealer:
    """A sealer on this process's clients, for ``location`` (default: from settings)."""
    from chalicelib.aws import client

    location = location or AuditLocation.from_settings()
    return Sealer(client("dynamodb"), client("s3"), KmsSigner(client("kms"), location.signing_key_id),
                  location, clock)


def seal_all() -> dict[str, Any]:
    """The scheduled job (and ``v-secure audit seal``): seal everything closed, return counts."""
    result = build_sealer().seal()
    logger.info("audit log sealed", extra=result.as_dict())
    return result.as_dict()
