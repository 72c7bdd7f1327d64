"""Verify's checks on in-memory segments and digests: each problem is named specifically."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.audit.events import GENESIS_HASH, Action, AuditEvent, Status
from chalicelib.audit.sealer import (
    Digest,
    DigestBody,
    SegmentEntry,
    digest_key,
    digest_sequence,
    digest_time,
    segment_key,
    sha256_hex,
)
from chalicelib.audit.verify import VerifyReport, check_coverage, check_segment, load_public_key, signature_valid

STREAM = "20260115T103000-0123456789abcdef"
START = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)


def events(count: int, first: int = 1, prev: str = GENESIS_HASH) -> list[AuditEvent]:
    made = []
    for seq in range(first, first + count):
        event = AuditEvent(action=Action.SECRET_READ, actor="app", actor_type="service_account",
                           status=Status.SUCCESS, secret_id="db", event_id=f"evt_{seq}",
                           timestamp=(START + timedelta(seconds=seq)).isoformat(), stream_id=STREAM, seq=seq,
                           prev_hash=prev)
        event = event.model_copy(update={"hash": event.computed_hash()})
        prev = event.hash
        made.append(event)
    return made


def segment(evts: list[AuditEvent], lines: list[bytes] | None = None) -> tuple[SegmentEntry, bytes]:
    body = b"".join(line + b"\n" for line in (lines or [e.canonical() for e in evts]))
    entry = SegmentEntry(key=segment_key(STREAM, evts[0].seq, evts[-1].seq),
                         sha256=sha256_hex(b"".join(e.canonical() + b"\n" for e in evts)), stream_id=STREAM,
                         first_seq=evts[0].seq, last_seq=evts[-1].seq, events=len(evts),
                         first_prev_hash=evts[0].prev_hash, last_hash=evts[-1].hash,
                         start_time=evts[0].timestamp, end_time=evts[-1].timestamp)
    return entry, body


def problems(report: VerifyReport) -> list[str]:
    return [p.message for p in report.problems]


def test_a_clean_segment_has_no_problem() -> None:
    entry, body = segment(events(10))
    report = VerifyReport()
    assert len(check_segment(entry, body, report)) == 10
    assert report.ok


def test_a_modified_event_breaks_the_chain_after_it() -> None:
    evts = events(10)
    lines = [e.canonical() for e in evts]
    lines[4] = lines[4].replace(b'"actor":"app"', b'"actor":"eve"')
    entry, body = segment(evts, lines)
    report = VerifyReport()
    check_segment(entry, body, report)
    assert problems(report) == [f"segment {entry.key} modified", f"stream {STREAM} hash chain broken at seq 6"]


def test_a_modified_last_event_is_caught_by_the_signed_last_hash() -> None:
    evts = events(5)
    lines = [e.canonical() for e in evts]
    lines[-1] = lines[-1].replace(b'"actor":"app"', b'"actor":"eve"')
    entry, body = segment(evts, lines)
    report = VerifyReport()
    check_segment(entry, body, report)
    assert f"stream {STREAM} hash chain broken at seq 5" in problems(report)


def test_reordered_and_missing_events_are_named() -> None:
    evts = events(8)
    lines = [e.canonical() for e in evts]
    lines[2], lines[3] = lines[3], lines[2]
    del lines[6]  # seq 7
    entry, body = segment(evts, lines)
    report = VerifyReport()
    check_segment(entry, body, report)
    assert f"stream {STREAM} seq 3 reordered" in problems(report)
    assert f"stream {STREAM} seq 7 missing" in problems(report)
    assert not any("chain broken" in p for p in problems(report))  # explained by order and gap


def test_coverage_across_segments_names_the_gap_and_the_broken_link() -> None:
    first, _ = segment(events(10))
    later = events(10, first=14, prev="f" * 64)
    third, _ = segment(later)
    report = VerifyReport()
    sealed = check_coverage([third, first], report, from_start=True)
    assert problems(report) == [f"stream {STREAM} seq 11-13 missing"]
    assert sealed == {STREAM: 23}

    linked, _ = segment(events(5, first=11, prev="e" * 64))
    report = VerifyReport()
    check_coverage([first, linked], report, from_start=True)
    assert problems(report) == [f"stream {STREAM} hash chain broken at seq 11"]


def test_signatures_verify_only_with_the_signing_key() -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    entry, _ = segment(events(3))
    body = DigestBody(digest_key=digest_key(START, 7), sequence=7, created_at=START.isoformat(),
                      previous_digest_key=None, previous_signature=None, signing_key_id="k", segments=[entry])
    signature = key.sign(body.signing_statement(), ec.ECDSA(hashes.SHA256()))
    digest = Digest(body, base64.b64encode(signature).decode())
    assert signature_valid(key.public_key(), Digest.parse(digest.document()))
    assert not signature_valid(other.public_key(), digest)
    changed = body.model_copy(update={"segments": [entry.model_copy(update={"sha256": "0" * 64})]})
    assert not signature_valid(key.public_key(), Digest(changed, digest.signature))
    assert len(body.signing_statement()) < 4096 and json.loads(body.signing_statement())["digest_key"]


def test_keys_and_public_key_formats() -> None:
    key = digest_key(START, 42)
    assert digest_sequence(key) == 42 and digest_time(key) == START
    assert segment_key(STREAM, 1, 25).endswith("/000000000001-000000000025.jsonl")
    from cryptography.hazmat.primitives import serialization

    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert load_public_key(der) == public and load_public_key(pem) == public
