"""``audit verify``: re-check the sealed audit log, offline-capable, and name every problem.

Checks, like ``aws cloudtrail validate-logs``:

- every digest's signature, with the signing key's *public* key only (fetched once from KMS
  ``GetPublicKey``, or read from a file, so no KMS access is needed);
- the digest chain: each digest names the previous digest's key and signature, none is missing
  (the head in the secrets table names the newest);
- each segment's SHA-256 against its digest;
- each stream's hash chain and sequence continuity, inside and across segments;
- that every event older than the seal interval is in a sealed segment.

Problems read like ``segment <key> modified``, ``segment <key> missing``, ``digest <key> missing``,
``digest <key> signature invalid``, ``stream <id> seq 41-43 missing``, ``stream <id> seq 7 reordered``,
``stream <id> hash chain broken at seq 9``, ``event <id> not sealed``.

Example::

    verifier = build_verifier(public_key=load_public_key(Path("audit.pem").read_bytes()))
    report = verifier.verify()
    print(report.summary())
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from chalicelib.audit.events import GENESIS_HASH, chain_hash
from chalicelib.audit.sealer import (
    DIGEST_PREFIX,
    AuditLocation,
    AuditTableReader,
    ChainHead,
    Digest,
    LockedBucket,
    SealState,
    SegmentEntry,
    digest_sequence,
    digest_time,
    sha256_hex,
)
from chalicelib.clock import Clock, SystemClock, isoformat
from chalicelib.errors import DependencyUnavailable, InvalidRequest

MAX_UNSEALED_REPORTED = 20
"""Per stream; the rest are counted in one line."""

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while segments are checked."""


@dataclass(frozen=True)
class Problem:
    kind: str
    subject: str
    message: str


@dataclass
class VerifyReport:
    """What verify found: the problems (empty when clean) and what it checked."""

    problems: list[Problem] = field(default_factory=list)
    digests: int = 0
    segments: int = 0
    events: int = 0
    streams: int = 0
    pending: int = 0
    """Events younger than the seal interval (not yet due for sealing)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, subject: str, message: str) -> None:
        self.problems.append(Problem(kind, subject, message))

    def summary(self) -> str:
        counts = (f"{self.digests} digests, {self.segments} segments, {self.events} events in "
                  f"{self.streams} streams; {self.pending} recent events not yet due for sealing")
        if self.ok:
            return f"audit log verified: {counts}"
        return f"{len(self.problems)} problems found (checked {counts})"

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": [p.message for p in self.problems],
                "counts": {"digests": self.digests, "segments": self.segments, "events": self.events,
                           "streams": self.streams, "pending": self.pending},
                "summary": self.summary()}


# --- public keys and signatures ---------------------------------------------------------------


def load_public_key(data: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from PEM or DER (SubjectPublicKeyInfo, as KMS GetPublicKey returns)."""
    try:
        key = serialization.load_pem_public_key(data) if data.lstrip().startswith(b"-----") \
            else serialization.load_der_public_key(data)
    except ValueError:
        raise InvalidRequest("the public key is neither PEM nor DER") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidRequest("the audit signing key must be an ECC_NIST_P256 public key")
    return key


def fetch_public_key(kms: Any, key_id: str) -> ec.EllipticCurvePublicKey:
    """The signing key's public half, from KMS ``GetPublicKey`` (once per verify)."""
    try:
        der = kms.get_public_key(KeyId=key_id)["PublicKey"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        raise DependencyUnavailable("kms", f"GetPublicKey failed: {code}") from None
    except BotoCoreError as error:
        raise DependencyUnavailable("kms", f"GetPublicKey failed: {type(error).__name__}") from None
    return load_public_key(bytes(der))


def public_key_pem(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def signature_valid(key: ec.EllipticCurvePublicKey, digest: Digest) -> bool:
    try:
        key.verify(base64.b64decode(digest.signature, validate=True), digest.body.signing_statement(),
                   ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


# --- pure checks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedEvent:
    seq: int
    event_id: str
    stream_id: str
    prev_hash: str
    hash: str


def parse_segment(body: bytes) -> list[ParsedEvent | None]:
    """The events of a segment in line order; ``None`` for a line that is not an event."""
    events: list[ParsedEvent | None] = []
    for line in body.split(b"\n"):
        if not line:
            continue
        try:
            data = json.loads(line)
            events.append(ParsedEvent(seq=int(data["seq"]), event_id=str(data["event_id"]),
                                      stream_id=str(data["stream_id"]), prev_hash=str(data["prev_hash"]),
                                      hash=chain_hash(str(data["prev_hash"]), line)))
        except (ValueError, KeyError, TypeError):
            events.append(None)
    return events


def seq_range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def check_segment(entry: SegmentEntry, body: bytes, report: VerifyReport, *, note: str = "") -> list[ParsedEvent]:
    """Hash, order, gaps and chain of one segment; returns its readable events."""
    stream = entry.stream_id
    if sha256_hex(body) != entry.sha256:
        report.add("segment_modified", entry.key, f"segment {entry.key} modified{note}")
    parsed = parse_segment(body)
    if any(event is None for event in parsed):
        report.add("segment_unreadable", entry.key, f"segment {entry.key} has lines that are not events")
    events = [event for event in parsed if event is not None]
    highest = 0
    for event in events:
        if event.seq < highest:
            report.add("reordered", stream, f"stream {stream} seq {event.seq} reordered")
        highest = max(highest, event.seq)
    by_seq = sorted(events, key=lambda e: e.seq)
    expected, previous = entry.first_seq, None
    for event in by_seq:
        if event.stream_id != stream:
            report.add("foreign_event", entry.key, f"segment {entry.key} holds event {event.event_id} of "
                                                   f"stream {event.stream_id}")
        if previous is not None and event.seq == previous.seq:
            report.add("duplicate", stream, f"stream {stream} seq {event.seq} duplicated")
            continue
        if event.seq > expected:
            report.add("seq_missing", stream, f"stream {stream} seq {seq_range(expected, event.seq - 1)} missing")
        elif _breaks_chain(event, previous, entry):
            report.add("chain_broken", stream, f"stream {stream} hash chain broken at seq {event.seq}")
        expected, previous = event.seq + 1, event
    if expected <= entry.last_seq:
        report.add("seq_missing", stream, f"stream {stream} seq {seq_range(expected, entry.last_seq)} missing")
    if previous is not None and previous.seq == entry.last_seq and previous.hash != entry.last_hash:
        report.add("chain_broken", stream, f"stream {stream} hash chain broken at seq {previous.seq}")
    return events


def _breaks_chain(event: ParsedEvent, previous: ParsedEvent | None, entry: SegmentEntry) -> bool:
    if previous is not None:
        return event.prev_hash != previous.hash
    return event.seq == entry.first_seq and event.prev_hash != entry.first_prev_hash


def check_coverage(entries: Iterable[SegmentEntry], report: VerifyReport, *, from_start: bool) -> dict[str, int]:
    """Per stream: segments contiguous from seq 1 and chained. Returns the sealed-through seq per stream."""
    by_stream: dict[str, list[SegmentEntry]] = defaultdict(list)
    for entry in entries:
        by_stream[entry.stream_id].append(entry)
    sealed: dict[str, int] = {}
    for stream, stream_entries in by_stream.items():
        stream_entries.sort(key=lambda e: (e.first_seq, e.last_seq))
        expected = 1 if from_start else stream_entries[0].first_seq
        previous: SegmentEntry | None = None
        for entry in stream_entries:
            if entry.first_seq > expected:
                report.add("seq_missing", stream,
                           f"stream {stream} seq {seq_range(expected, entry.first_seq - 1)} missing")
            elif entry.first_seq < expected:
                report.add("sealed_twice", stream,
                           f"stream {stream} seq {seq_range(entry.first_seq, min(entry.last_seq, expected - 1))} "
                           "sealed twice")
            elif entry.first_prev_hash != (previous.last_hash if previous else GENESIS_HASH) \
                    and (previous is not None or entry.first_seq == 1):
                report.add("chain_broken", stream, f"stream {stream} hash chain broken at seq {entry.first_seq}")
            expected = max(expected, entry.last_seq + 1)
            previous = entry
        sealed[stream] = expected - 1
    return sealed


# --- the verifier -----------------------------------------------------------------------------


@dataclass
class _LoadedDigest:
    key: str
    sequence: int
    digest: Digest | None
    valid: bool


class Verifier:
    """Reads digests and segments from the bucket and events from the audit table, and checks them.

    Example::

        report = Verifier(client("dynamodb"), client("s3"), location, public_key).verify()
    """

    def __init__(self, dynamodb: Any, s3: Any, location: AuditLocation, public_key: ec.EllipticCurvePublicKey,
                 clock: Clock | None = None) -> None:
        self.location = location
        self.public_key = public_key
        self.clock = clock or SystemClock()
        self.bucket = LockedBucket(s3, location, self.clock)
        self.reader = AuditTableReader(dynamodb, location.audit_table)
        self.state = SealState(dynamodb, location.state_table)

    def verify(self, start: datetime | None = None, end: datetime | None = None,
               progress: Progress | None = None) -> VerifyReport:
        report = VerifyReport()
        digests = self._check_digests(report, start, end)
        entries = [entry for d in digests if d.valid and d.digest for entry in d.digest.body.segments]
        self._check_segments(entries, report, progress)
        sealed = check_coverage(entries, report, from_start=start is None)
        streams = self.reader.streams()
        self._check_unsealed(streams, sealed, report, start, end)
        report.streams = len(set(sealed) | set(streams))
        return report

    # --- digests ------------------------------------------------------------------------------

    def _check_digests(self, report: VerifyReport, start: datetime | None,
                       end: datetime | None) -> list[_LoadedDigest]:
        keys = [k for k in self.bucket.keys(DIGEST_PREFIX) if digest_sequence(k) is not None]
        keys = [k for k in keys if _in_range(digest_time(k), start, end)]
        head = self.state.head()
        loaded = sorted((self._load_digest(key, report) for key in keys), key=lambda d: (d.sequence, d.key))
        report.digests = sum(1 for d in loaded if d.valid)
        self._check_links(loaded, report, from_start=start is None)
        self._check_head(head, loaded, report, end)
        return loaded

    def _load_digest(self, key: str, report: VerifyReport) -> _LoadedDigest:
        sequence = digest_sequence(key) or 0
        raw, _version = self.bucket.get(key)
        if raw is None:
            report.add("digest_missing", key, f"digest {key} missing")
            return _LoadedDigest(key, sequence, None, False)
        try:
            digest = Digest.parse(raw)
        except (ValueError, KeyError, ValidationError):
            report.add("digest_invalid", key, f"digest {key} signature invalid (not a digest document)")
            return _LoadedDigest(key, sequence, None, False)
        if not signature_valid(self.public_key, digest):
            report.add("digest_invalid", key, f"digest {key} signature invalid")
            return _LoadedDigest(key, sequence, digest, False)
        if digest.body.digest_key != key or digest.body.sequence != sequence:
            report.add("digest_moved", key, f"digest {key} was signed as {digest.body.digest_key}")
            return _LoadedDigest(key, sequence, digest, False)
        return _LoadedDigest(key, sequence, digest, True)

    def _check_links(self, loaded: list[_LoadedDigest], report: VerifyReport, *, from_start: bool) -> None:
        by_sequence: dict[int, list[_LoadedDigest]] = defaultdict(list)
        for item in loaded:
            by_sequence[item.sequence].append(item)
        for sequence, items in by_sequence.items():
            for extra in items[1:]:
                report.add("digest_extra", extra.key, f"digest {extra.key} is not in the chain "
                                                      f"(position {sequence} is {items[0].key})")
        previous: _LoadedDigest | None = None
        for _sequence, items in sorted(by_sequence.items()):
            self._check_link(previous, items[0], report, from_start=from_start)
            previous = items[0]

    def _check_link(self, previous: _LoadedDigest | None, item: _LoadedDigest, report: VerifyReport, *,
                    from_start: bool) -> None:
        body = item.digest.body if item.valid and item.digest else None
        first = 1 if from_start else item.sequence
        expected = previous.sequence + 1 if previous is not None else first
        if item.sequence > expected:
            self._report_gap(expected, item, body, report)
            return
        if body is None:
            return
        if body.sequence == 1 and body.previous_digest_key is not None:
            report.add("digest_chain", item.key, f"digest {item.key} does not chain to the start")
        if previous is None:
            if body.previous_digest_key and self.bucket.get(body.previous_digest_key)[0] is None:
                report.add("digest_missing", body.previous_digest_key, f"digest {body.previous_digest_key} missing")
            return
        if previous.valid and previous.digest is not None and (
                body.previous_digest_key != previous.key or body.previous_signature != previous.digest.signature):
            report.add("digest_chain", item.key, f"digest {item.key} does not chain to {previous.key}")

    @staticmethod
    def _report_gap(expected: int, item: _LoadedDigest, body: Any, report: VerifyReport) -> None:
        """Digests ``expected`` .. ``item.sequence - 1`` are gone; the next one names its predecessor."""
        named = body.previous_digest_key if body is not None else None
        last_unnamed = item.sequence - 1 if named is None else item.sequence - 2
        if last_unnamed >= expected:
            span = seq_range(expected, last_unnamed)
            report.add("digest_missing", f"#{span}", f"digest #{span} missing")
        if named is not None:
            report.add("digest_missing", named, f"digest {named} missing")

    def _check_head(self, head: ChainHead | None, loaded: list[_LoadedDigest], report: VerifyReport,
                    end: datetime | None) -> None:
        if head is None:
            for item in loaded:
                report.add("digest_extra", item.key, f"digest {item.key} is not in the chain (no chain head)")
            return
        newest = max((item.sequence for item in loaded), default=0)
        if end is None and head.sequence > newest:
            report.add("digest_missing", head.digest_key, f"digest {head.digest_key} missing")
        for item in loaded:
            if item.sequence > head.sequence:
                report.add("digest_extra", item.key, f"digest {item.key} is not in the chain (beyond the head)")

    # --- segments and events ------------------------------------------------------------------

    def _check_segments(self, entries: list[SegmentEntry], report: VerifyReport,
                        progress: Progress | None) -> None:
        for done, entry in enumerate(entries, start=1):
            self._check_one_segment(entry, report)
            if progress is not None:
                progress(done, len(entries))

    def _check_one_segment(self, entry: SegmentEntry, report: VerifyReport) -> None:
        found = self.bucket.fetch(entry.key)
        if found is None:
            report.add("segment_missing", entry.key, f"segment {entry.key} missing{self._sealed_note(entry)}")
            return
        note = self._sealed_note(entry) if sha256_hex(found.body) != entry.sha256 else ""
        report.events += len(check_segment(entry, found.body, report, note=note))
        report.segments += 1
        if found.lock_mode != "COMPLIANCE" or found.retain_until is None or found.retain_until <= self.clock.now():
            report.add("segment_unlocked", entry.key, f"segment {entry.key} not under Object Lock COMPLIANCE "
                                                      f"retention (mode {found.lock_mode}, until {found.retain_until})")

    def _sealed_note(self, entry: SegmentEntry) -> str:
        """Whether the version the sealer wrote is still there (Object Lock keeps it)."""
        if not entry.version_id:
            return ""
        sealed = self.bucket.get_version(entry.key, entry.version_id)
        if sealed is not None and sha256_hex(sealed) == entry.sha256:
            return f" (the sealed version {entry.version_id} is intact under Object Lock)"
        return f" (the sealed version {entry.version_id} is gone or altered too)"

    def _check_unsealed(self, streams: list[str], sealed: dict[str, int], report: VerifyReport,
                        start: datetime | None, end: datetime | None) -> None:
        cutoff = isoformat(self.clock.now() - timedelta(seconds=self.location.seal_interval_seconds))
        low = isoformat(start) if start else ""
        high = isoformat(end) if end else "~"
        for stream in streams:
            overdue: list[str] = []
            for event in self.reader.events_after(stream, sealed.get(stream, 0), with_body=False):
                if not low <= event.timestamp <= high:
                    continue
                if event.timestamp >= cutoff:
                    report.pending += 1
                else:
                    overdue.append(event.event_id)
            for event_id in overdue[:MAX_UNSEALED_REPORTED]:
                report.add("not_sealed", event_id, f"event {event_id} not sealed (stream {stream})")
            if len(overdue) > MAX_UNSEALED_REPORTED:
                report.add("not_sealed", stream, f"stream {stream}: {len(overdue) - MAX_UNSEALED_REPORTED} "
                                                 "more events not sealed")


def _in_range(moment: datetime | None, start: datetime | None, end: datetime | None) -> bool:
    if moment is None:
        return start is None and end is None
    # Digest keys carry whole seconds.
    return (start is None or moment >= start.replace(microsecond=0)) and (end is None or moment <= end)


def build_verifier(*, location: AuditLocation | None = None, public_key: ec.EllipticCurvePublicKey | None = None,
                   clock: Clock | None = None) -> Verifier:
    """A verifier on this process's clients; the public key comes from KMS unless given."""
    from chalicelib.aws import client

    location = location or AuditLocation.from_settings()
    key = public_key or fetch_public_key(client("kms"), location.signing_key_id)
    return Verifier(client("dynamodb"), client("s3"), location, key, clock)
