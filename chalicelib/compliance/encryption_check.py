"""Encryption at rest, checked on what is stored, not on the settings.

Every envelope a secret holds is inspected as read from DynamoDB: the META item's ``current``
copy and ``staged`` copies, and each version item that is not destroyed. A sound envelope is a
map ``{v: 1, alg: "AES-256-GCM", kid: "<provider>:...", edk, iv, ct, tag, ctx}`` whose ``iv``
is 12 bytes, ``tag`` 16 bytes, ``edk`` (the wrapped data key) present, ``kid`` naming a key
provider this deployment reads with, and ``ctx`` naming this secret and version. Anything else
is a problem, and a *plaintext-looking* one when the item carries readable data: an envelope
stored as text, a ``value``/``plaintext`` field or attribute, byte fields stored as strings, or
a ciphertext that reads as text (at least 24 printable characters, 8+ bytes of JSON, or a PEM block — random
ciphertext of that length is printable with probability below 1e-10).

Nothing is decrypted and no key provider is called: the check reads the table only.

Example::

    result = inspect_secret(secret_facts, providers=frozenset({"kms"}))
    for problem in result.problems:
        print(problem.location, problem.problem)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chalicelib.compliance.evidence import SecretFacts
from chalicelib.vault.encryption import ALGORITHM, ENVELOPE_VERSION, NONCE_BYTES, TAG_BYTES

ENVELOPE_FIELDS = frozenset({"v", "alg", "kid", "edk", "iv", "ct", "tag", "ctx"})
PLAINTEXT_NAMES = frozenset({"value", "plaintext", "secret_value", "secret", "password", "cleartext"})
"""Field or attribute names that, beside an envelope, mean a readable copy was stored."""
TEXT_LIKE_MIN_BYTES = 24
JSON_LIKE_MIN_BYTES = 8
_BYTE_FIELDS = ("edk", "iv", "ct", "tag")


@dataclass(frozen=True)
class EnvelopeProblem:
    location: str
    """``current``, ``staged PENDING``, ``version 3``, ``META item``."""
    problem: str
    plaintext: bool = False


@dataclass(frozen=True)
class SecretEncryption:
    secret_id: str
    envelopes: int
    problems: tuple[EnvelopeProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def plaintext(self) -> bool:
        return any(p.plaintext for p in self.problems)


def inspect_secret(secret: SecretFacts, providers: frozenset[str]) -> SecretEncryption:
    """Every envelope ``secret`` holds (a destroyed secret holds none: see the crypto-shredding check)."""
    problems: list[EnvelopeProblem] = []
    problems.extend(_stored_beside("META item", secret.attributes))
    if secret.unreadable:
        problems.append(EnvelopeProblem("META item", secret.unreadable))
    if secret.destroyed:
        return SecretEncryption(secret.secret_id, 0, tuple(problems))
    checked = 0
    if secret.current_version > 0:
        checked += 1
        if secret.current_envelope is None:
            problems.append(EnvelopeProblem("current", f"no envelope for the CURRENT version "
                                                       f"{secret.current_version}"))
        else:
            problems.extend(_located("current", inspect_envelope(
                secret.current_envelope, secret.secret_id, secret.current_version, providers)))
    for label, envelope in sorted(secret.staged.items()):
        checked += 1
        problems.extend(_located(f"staged {label}", inspect_envelope(
            envelope, secret.secret_id, secret.labels.get(label), providers)))
    for version in secret.versions:
        if not version.present or version.destroyed_at is not None:
            continue
        checked += 1
        location = f"version {version.version}"
        problems.extend(_stored_beside(location, version.attributes))
        if version.envelope is None:
            problems.append(EnvelopeProblem(location, "no envelope, and the version is not marked destroyed"))
        else:
            problems.extend(_located(location, inspect_envelope(version.envelope, secret.secret_id,
                                                                version.version, providers)))
    return SecretEncryption(secret.secret_id, checked, tuple(problems))


def inspect_envelope(envelope: Any, secret_id: str, version: int | None,
                     providers: frozenset[str]) -> list[tuple[str, bool]]:
    """``(problem, plaintext-looking)`` pairs for one stored envelope; empty when it is sound."""
    if isinstance(envelope, str | bytes):
        return [("the envelope is stored as text, not as an encrypted map", True)]
    if not isinstance(envelope, dict):
        return [(f"the envelope is a {type(envelope).__name__}, not an encrypted map", False)]
    problems: list[tuple[str, bool]] = []
    extra = sorted(set(envelope) - ENVELOPE_FIELDS)
    readable = [name for name in extra if name.lower() in PLAINTEXT_NAMES]
    if readable:
        problems.append((f"field {', '.join(repr(n) for n in readable)} holds data beside the ciphertext", True))
    if set(extra) - set(readable):
        problems.append((f"unexpected field(s) {', '.join(sorted(set(extra) - set(readable)))}", False))
    if envelope.get("v") != ENVELOPE_VERSION:
        problems.append((f"envelope format {envelope.get('v')!r}, expected {ENVELOPE_VERSION}", False))
    if envelope.get("alg") != ALGORITHM:
        problems.append((f"algorithm {envelope.get('alg')!r}, expected {ALGORITHM}", False))
    problems.extend(_byte_fields(envelope))
    problems.extend(_kid(envelope.get("kid"), providers))
    problems.extend(_context(envelope.get("ctx"), secret_id, version))
    return problems


def _byte_fields(envelope: dict[str, Any]) -> Iterable[tuple[str, bool]]:
    expected = {"iv": NONCE_BYTES, "tag": TAG_BYTES}
    for name in _BYTE_FIELDS:
        value = envelope.get(name)
        if value is None or value in (b"", ""):
            yield (_MISSING[name], False)
            continue
        if isinstance(value, str):
            yield (f"{name} is stored as text, not bytes", name == "ct")
            continue
        if not isinstance(value, bytes):
            yield (f"{name} is a {type(value).__name__}, not bytes", False)
            continue
        if name in expected and len(value) != expected[name]:
            yield (f"{name} is {len(value)} bytes, expected {expected[name]}", False)
        if name == "ct" and looks_like_text(value):
            yield ("the ciphertext reads as text", True)


_MISSING = {"edk": "no wrapped data key (edk)", "iv": "no nonce (iv)", "ct": "no ciphertext (ct)",
            "tag": "no authentication tag"}


def _kid(kid: Any, providers: frozenset[str]) -> list[tuple[str, bool]]:
    if not isinstance(kid, str) or ":" not in kid:
        return [(f"kid {kid!r} does not name a key provider", False)]
    provider = kid.split(":", 1)[0]
    if provider not in providers:
        return [(f"kid names key provider {provider!r}, which this deployment does not read with "
                 f"({', '.join(sorted(providers))})", False)]
    return []


def _context(ctx: Any, secret_id: str, version: int | None) -> list[tuple[str, bool]]:
    if not isinstance(ctx, dict):
        return [("no encryption context (ctx)", False)]
    if ctx.get("secret_id") != secret_id or (version is not None and str(ctx.get("version")) != str(version)):
        return [(f"bound to {ctx.get('secret_id')!r} version {ctx.get('version')!r}, not this secret and version",
                 False)]
    return []


def looks_like_text(data: bytes) -> bool:
    """Readable data where ciphertext should be: JSON, a PEM block, or 24+ printable characters."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if "-----BEGIN " in text:
        return True
    if len(data) >= JSON_LIKE_MIN_BYTES and text[:1] in "{[":
        try:
            json.loads(text)
            return True
        except ValueError:
            pass
    return len(data) >= TEXT_LIKE_MIN_BYTES and all(c.isprintable() or c in "\t\r\n" for c in text)


def _located(location: str, found: list[tuple[str, bool]]) -> list[EnvelopeProblem]:
    return [EnvelopeProblem(location, problem, plaintext) for problem, plaintext in found]


def _stored_beside(location: str, attributes: frozenset[str]) -> list[EnvelopeProblem]:
    readable = sorted(name for name in attributes if name.lower() in PLAINTEXT_NAMES)
    if not readable:
        return []
    return [EnvelopeProblem(location, f"attribute {', '.join(repr(n) for n in readable)} is stored beside "
                                      "the envelope", True)]
