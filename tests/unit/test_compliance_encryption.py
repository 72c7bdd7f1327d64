"""The envelope check inspects stored envelopes: format, algorithm, lengths, key provider, binding, plaintext."""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.compliance.encryption_check import inspect_envelope, inspect_secret, looks_like_text
from chalicelib.compliance.evidence import VersionFacts
from tests.unit.test_compliance_support import NOW, envelope, secret

KMS = frozenset({"kms"})


def problems(raw: Any, secret_id: str = "db", version: int | None = 1) -> list[tuple[str, bool]]:
    return inspect_envelope(raw, secret_id, version, KMS)


def test_a_sealed_envelope_is_sound() -> None:
    assert problems(envelope("db", 1)) == []


@pytest.mark.parametrize(("change", "expected", "plaintext"), [
    ({"v": 2}, "envelope format 2, expected 1", False),
    ({"alg": "AES-128-CBC"}, "algorithm 'AES-128-CBC', expected AES-256-GCM", False),
    ({"iv": os.urandom(16)}, "iv is 16 bytes, expected 12", False),
    ({"tag": os.urandom(8)}, "tag is 8 bytes, expected 16", False),
    ({"edk": b""}, "no wrapped data key (edk)", False),
    ({"kid": "vault:transit/key"}, "kid names key provider 'vault', which this deployment does not read with (kms)",
     False),
    ({"kid": "no-provider"}, "kid 'no-provider' does not name a key provider", False),
    ({"ctx": {"secret_id": "other", "version": 1, "type": "api_key"}},
     "bound to 'other' version 1, not this secret and version", False),
    ({"ctx": {"secret_id": "db", "version": 7, "type": "api_key"}},
     "bound to 'db' version 7, not this secret and version", False),
    ({"ct": "hunter2"}, "ct is stored as text, not bytes", True),
    ({"value": "hunter2"}, "field 'value' holds data beside the ciphertext", True),
    ({"ct": b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn"}, "the ciphertext reads as text", True),
    ({"ct": b'{"user": "app", "password": "x"}'}, "the ciphertext reads as text", True),
    ({"ct": b"correct horse battery staple 1234"}, "the ciphertext reads as text", True),
])
def test_each_defect_is_named(change: dict[str, Any], expected: str, plaintext: bool) -> None:
    found = problems({**envelope("db", 1), **change})
    assert (expected, plaintext) in found, found


def test_an_envelope_stored_as_text_is_plaintext_looking() -> None:
    assert problems("sk_live_abcdef") == [("the envelope is stored as text, not as an encrypted map", True)]
    assert problems(42) == [("the envelope is a int, not an encrypted map", False)]


def test_random_ciphertexts_are_not_mistaken_for_text() -> None:
    """Short and long random ciphertexts: none may read as text (no false positives over 20 000 of them)."""
    assert not any(looks_like_text(os.urandom(size)) for size in (1, 2, 3, 8, 16, 24, 64, 512) for _ in range(2500))


def test_secret_check_covers_current_staged_and_retained_versions() -> None:
    facts = secret("db", "PCI-DSS", stored=NOW, versions=3)
    staged = {"PENDING": envelope("db", 3)}
    result = inspect_secret(dataclasses.replace(facts, staged=staged, labels={"CURRENT": 3, "PENDING": 3}), KMS)
    assert result.ok and result.envelopes == 5  # current + staged + 3 versions


def test_a_retained_version_without_envelope_is_a_problem_but_a_destroyed_one_is_not() -> None:
    facts = secret("db", "PCI-DSS", stored=NOW, versions=2)
    lost = (dataclasses.replace(facts.versions[0], envelope=None), facts.versions[1])
    result = inspect_secret(dataclasses.replace(facts, versions=lost), KMS)
    assert [(p.location, p.problem) for p in result.problems] == [
        ("version 1", "no envelope, and the version is not marked destroyed")]
    shredded = (dataclasses.replace(facts.versions[0], envelope=None, destroyed_at=NOW - timedelta(days=1)),
                facts.versions[1])
    assert inspect_secret(dataclasses.replace(facts, versions=shredded), KMS).ok


def test_a_plaintext_attribute_beside_the_envelope_is_found() -> None:
    facts = secret("db", "PCI-DSS", stored=NOW)
    leaky = VersionFacts(version=1, created_at=NOW, envelope=envelope("db", 1),
                         attributes=frozenset({"pk", "sk", "envelope", "plaintext"}))
    result = inspect_secret(dataclasses.replace(facts, versions=(leaky,)), KMS)
    assert result.plaintext
    assert [(p.location, p.problem) for p in result.problems] == [
        ("version 1", "attribute 'plaintext' is stored beside the envelope")]


def test_the_current_copy_on_the_meta_item_is_checked_too() -> None:
    facts = secret("db", "PCI-DSS", stored=NOW)
    bad = {**envelope("db", 1), "iv": b"123"}
    result = inspect_secret(dataclasses.replace(facts, current_envelope=bad), KMS)
    assert [(p.location, p.problem) for p in result.problems] == [("current", "iv is 3 bytes, expected 12")]
    missing = inspect_secret(dataclasses.replace(facts, current_envelope=None), KMS)
    assert missing.problems[0].problem == "no envelope for the CURRENT version 1"


def test_an_unreadable_meta_item_fails_the_check() -> None:
    from chalicelib.compliance.evidence import secret_facts

    facts = secret_facts({"pk": "SECRET#db", "secret_id": "db", "type": "api_key", "created_at": "not a time"})
    result = inspect_secret(facts, KMS)
    assert not result.ok and "META item fields do not parse" in result.problems[0].problem
