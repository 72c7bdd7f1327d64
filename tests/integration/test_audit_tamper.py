"""Sealing and ``v-secure audit verify`` against tampering, on the moto server.

Each test seals an audit log of its own (see ``IsolatedAudit``), tampers with it the way the
issue lists, and runs the real CLI (``audit verify --output text``): the problem must be named
specifically and the exit code must be non-zero.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result

from chalicelib.audit.sealer import DIGEST_PREFIX, SEGMENT_PREFIX, Digest
from chalicelib.audit.verify import fetch_public_key, public_key_pem
from chalicelib.aws import client
from chalicelib.cli.main import cli
from tests.integration.test_audit_support import IsolatedAudit

STREAMS = 3
PER_ROUND = 10


def verify_cli(log: IsolatedAudit, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["--output", "text", "audit", "verify", *log.cli_args(), *extra])


def seal_rounds(log: IsolatedAudit, rounds: int = 3) -> list[str]:
    """``rounds`` x (10 events per stream, then seal): one digest per round."""
    digests: list[str] = []
    for _round in range(rounds):
        log.add_events(PER_ROUND, streams=STREAMS)
        digests.extend(log.sealer().seal().digests)
    return digests


@pytest.fixture
def sealed_log(local_aws: str) -> IsolatedAudit:
    log = IsolatedAudit.create()
    assert len(seal_rounds(log)) == 3
    return log


def first_stream(log: IsolatedAudit) -> str:
    return next(iter(log.streams))


def segment_of(log: IsolatedAudit, stream_id: str, round_index: int) -> str:
    return log.keys(f"{SEGMENT_PREFIX}{stream_id}/")[round_index]


def test_clean_sealed_log_verifies(sealed_log: IsolatedAudit) -> None:
    result = verify_cli(sealed_log)
    assert result.exit_code == 0, result.output
    assert "audit log verified: 3 digests, 9 segments, 90 events in 3 streams" in result.output


def test_sealing_again_is_a_no_op(sealed_log: IsolatedAudit) -> None:
    before = sealed_log.keys("")
    again = sealed_log.sealer().seal()
    assert again.digests == [] and again.segments == 0
    assert sealed_log.keys("") == before


def test_modified_event_in_a_sealed_segment(sealed_log: IsolatedAudit) -> None:
    """Object Lock keeps the sealed *version*; someone with s3:PutObject can still put a new
    version on top of the key, which is what readers of the key get. That is the tampering
    simulated here (moto, like S3, accepts the new version); verify reads the key as any reader
    does, finds the bytes changed, and points at the broken link of the chain."""
    stream = first_stream(sealed_log)
    key = segment_of(sealed_log, stream, 1)  # seqs 11-20
    lines = sealed_log.get(key).decode().splitlines()
    event = json.loads(lines[4])  # seq 15
    event["actor"] = "someone-else"
    lines[4] = json.dumps(event, sort_keys=True, separators=(",", ":"))
    sealed_log.put_new_version(key, ("\n".join(lines) + "\n").encode())

    result = verify_cli(sealed_log)
    assert result.exit_code == 1
    assert f"segment {key} modified" in result.output
    assert "sealed version" in result.output and "is intact under Object Lock" in result.output
    assert f"stream {stream} hash chain broken at seq 16" in result.output


def test_deleted_segment(sealed_log: IsolatedAudit) -> None:
    stream = first_stream(sealed_log)
    key = segment_of(sealed_log, stream, 0)
    client("s3").delete_object(Bucket=sealed_log.location.bucket, Key=key)  # a delete marker

    result = verify_cli(sealed_log)
    assert result.exit_code == 1
    assert f"segment {key} missing" in result.output


def test_deleted_digest(sealed_log: IsolatedAudit) -> None:
    middle = sealed_log.keys(DIGEST_PREFIX)[1]
    client("s3").delete_object(Bucket=sealed_log.location.bucket, Key=middle)

    result = verify_cli(sealed_log)
    assert result.exit_code == 1
    assert f"digest {middle} missing" in result.output
    # what it listed can no longer be checked: the streams show the hole
    assert f"stream {first_stream(sealed_log)} seq 11-20 missing" in result.output


def test_events_reordered_in_dynamodb_before_sealing(local_aws: str) -> None:
    log = IsolatedAudit.create()
    log.add_events(10, streams=2)
    stream = first_stream(log)
    fifth, sixth = log.stored_item(stream, 5), log.stored_item(stream, 6)
    for item, other in ((fifth, sixth), (sixth, fifth)):
        swapped = dict(item, event=other["event"], hash=other["hash"], ts=other["ts"])
        client("dynamodb").put_item(TableName=log.location.audit_table, Item=swapped)
    log.sealer().seal()

    result = verify_cli(log)
    assert result.exit_code == 1
    assert f"stream {stream} seq 5 reordered" in result.output
    assert "modified" not in result.output  # the segment is what the sealer saw; the order is the tell


def test_two_events_swapped_inside_a_sealed_segment(sealed_log: IsolatedAudit) -> None:
    stream = first_stream(sealed_log)
    key = segment_of(sealed_log, stream, 2)  # seqs 21-30
    lines = sealed_log.get(key).decode().splitlines()
    lines[2], lines[3] = lines[3], lines[2]  # seqs 23 and 24
    sealed_log.put_new_version(key, ("\n".join(lines) + "\n").encode())

    result = verify_cli(sealed_log)
    assert result.exit_code == 1
    assert f"segment {key} modified" in result.output
    assert f"stream {stream} seq 23 reordered" in result.output


def test_event_dropped_from_dynamodb_before_sealing(local_aws: str) -> None:
    log = IsolatedAudit.create()
    log.add_events(10, streams=2)
    stream = first_stream(log)
    client("dynamodb").delete_item(TableName=log.location.audit_table, Key=log.item_key(stream, 7))
    log.sealer().seal()

    result = verify_cli(log)
    assert result.exit_code == 1
    assert f"stream {stream} seq 7 missing" in result.output


def test_digest_forged_with_another_kms_key(sealed_log: IsolatedAudit) -> None:
    """The forger rewrites a segment and a digest that vouches for it, but can only sign with a
    key of their own: the signature does not verify with the audit signing key's public key."""
    kms = client("kms")
    other_key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    digest_key = sealed_log.keys(DIGEST_PREFIX)[1]
    original = Digest.parse(sealed_log.get(digest_key))
    entry = original.body.segments[0]
    forged_segment = sealed_log.get(entry.key).replace(b"backend-service", b"forger-service")
    sealed_log.put_new_version(entry.key, forged_segment)
    forged_entry = entry.model_copy(update={"sha256": hashlib.sha256(forged_segment).hexdigest()})
    body = original.body.model_copy(update={"segments": [forged_entry, *original.body.segments[1:]]})
    signature = kms.sign(KeyId=other_key, Message=body.signing_statement(), MessageType="RAW",
                         SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    forged = Digest(body, base64.b64encode(signature).decode())
    sealed_log.put_new_version(digest_key, forged.document())

    result = verify_cli(sealed_log)
    assert result.exit_code == 1
    assert f"digest {digest_key} signature invalid" in result.output


def test_old_event_left_unsealed(sealed_log: IsolatedAudit) -> None:
    added = sealed_log.add_events(2, streams=1)  # an hour old, and no sealer ran since

    result = verify_cli(sealed_log)
    assert result.exit_code == 1
    for event in added:
        assert f"event {event.event_id} not sealed" in result.output


def test_offline_verify_with_a_public_key_file(sealed_log: IsolatedAudit, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pem = tmp_path / "audit-signing.pem"
    pem.write_text(public_key_pem(fetch_public_key(client("kms"), sealed_log.location.signing_key_id)))

    def no_kms(*_args: object) -> None:
        raise AssertionError("KMS must not be called when a public key file is given")

    monkeypatch.setattr("chalicelib.audit.verify.fetch_public_key", no_kms)
    result = verify_cli(sealed_log, "--public-key-file", str(pem))
    assert result.exit_code == 0, result.output
    assert "audit log verified" in result.output


def test_a_wrong_public_key_rejects_every_digest(sealed_log: IsolatedAudit, tmp_path: Path) -> None:
    kms = client("kms")
    other = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    pem = tmp_path / "other.pem"
    pem.write_bytes(kms.get_public_key(KeyId=other)["PublicKey"])  # DER works too
    result = verify_cli(sealed_log, "--public-key-file", str(pem))
    assert result.exit_code == 1
    assert result.output.count("signature invalid") == 3


def test_deleting_a_sealed_version_is_refused(sealed_log: IsolatedAudit) -> None:
    s3 = client("s3")
    bucket = sealed_log.location.bucket
    for key in [sealed_log.keys(SEGMENT_PREFIX)[0], sealed_log.keys(DIGEST_PREFIX)[0]]:
        version = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"][0]
        with pytest.raises(ClientError) as refused:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        # (moto does not implement GetObjectRetention; HeadObject carries the same lock headers)
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        expected = datetime.now(UTC) + timedelta(days=sealed_log.location.retention_days)
        assert abs((head["ObjectLockRetainUntilDate"] - expected).total_seconds()) < 600
        assert head["ServerSideEncryption"] == "aws:kms"
    assert verify_cli(sealed_log).exit_code == 0


def test_two_sealers_racing_extend_one_chain(local_aws: str) -> None:
    """Sealer A plans and writes its segments, then sealer B seals everything before A can
    advance the chain head: A's conditional update loses, A starts over and finds nothing left.
    Both wrote the same deterministic segment keys (the second write is a no-op)."""
    log = IsolatedAudit.create()
    log.add_events(50, streams=3)
    first, second = log.sealer(), log.sealer()
    second_results = []
    advance = first.state.advance

    def advance_after_the_other(*args: object) -> bool:
        second_results.append(second.seal())
        return advance(*args)  # type: ignore[arg-type]

    first.state.advance = advance_after_the_other  # type: ignore[method-assign, assignment]
    result = first.seal()

    assert result.lost_races == 1 and result.digests == []
    assert len(second_results[0].digests) == 1 and second_results[0].events == 150
    assert len(log.keys(DIGEST_PREFIX)) == 1
    assert verify_cli(log).exit_code == 0


def test_a_sealer_that_died_before_writing_its_digest_is_repaired(sealed_log: IsolatedAudit) -> None:
    """The head item (DynamoDB) is advanced before the digest object is written; if the process
    dies in between, the next sealer (a new process: new Sealer, state from DynamoDB) writes it."""
    head = sealed_log.sealer().state.head()
    assert head is not None
    client("s3").delete_object(Bucket=sealed_log.location.bucket, Key=head.digest_key)
    assert verify_cli(sealed_log).exit_code == 1

    result = sealed_log.sealer().seal()
    assert result.repaired == [head.digest_key]
    assert verify_cli(sealed_log).exit_code == 0
