"""``keys status``: how many envelopes each master key wraps, page by page.

Walks the same owners as a rewrap (secrets through the listing index and each secret's
partition, then principals), so it costs one Query per secret and never scans the table.
Each page counts its own owners; the SDK and the CLI add the pages up with :func:`merge`.

Example::

    page = key_status(store, keyring, limit=200, next_token=None)
    for usage in page.keys:
        print(usage.kid, usage.envelopes)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

from chalicelib.errors import InvalidRequest, VSecureError
from chalicelib.vault.keys.envelopes import CURRENT, MFA, PHASES, SECRETS, STAGED, VERSION, EnvelopeStore, Owner
from chalicelib.vault.keys.keyring import Keyring
from chalicelib.vault.keys.models import KeyStatus, KeyUsage


def key_status(store: EnvelopeStore, keyring: Keyring, *, limit: int = 200,
               next_token: str | None = None) -> KeyStatus:
    """One page: the envelopes of up to ``limit`` owners, counted by kid."""
    if not 1 <= limit <= 1000:
        raise InvalidRequest("limit must be between 1 and 1000")
    phase, cursor = _decode(next_token)
    owners, next_cursor = store.page(phase, cursor, limit)
    usage = count(owners)
    following = _following(phase, next_cursor)
    writer = _writer_kid(keyring)
    for kid, entry in usage.items():
        entry.writer = kid == writer
        entry.state = _state(keyring, kid)
    return KeyStatus(
        writer=writer, providers=[p.name for p in keyring.providers()], keys=sorted(usage.values(), key=_order),
        secrets=sum(o.phase == SECRETS for o in owners), principals=sum(o.phase != SECRETS for o in owners),
        next_token=following)


def count(owners: Iterable[Owner]) -> dict[str, KeyUsage]:
    """Envelope copies by kid (a principal's listing copy of its MFA seed is not counted twice)."""
    usage: dict[str, KeyUsage] = {}
    for owner in owners:
        for ref in owner.refs:
            if not ref.counted:
                continue
            kid = ref.envelope.kid
            entry = usage.setdefault(kid, KeyUsage(kid=kid, provider=kid.split(":", 1)[0]))
            entry.envelopes += 1
            if ref.kind == VERSION:
                entry.versions += 1
            elif ref.kind in (CURRENT, STAGED):
                entry.copies += 1
            elif ref.kind == MFA:
                entry.mfa_seeds += 1
    return usage


def merge(pages: Iterable[KeyStatus]) -> KeyStatus:
    """All pages added up into one :class:`KeyStatus` (``next_token`` None)."""
    total = KeyStatus()
    usage: dict[str, KeyUsage] = {}
    for page in pages:
        total.writer = page.writer
        total.providers = page.providers
        total.secrets += page.secrets
        total.principals += page.principals
        for entry in page.keys:
            found = usage.setdefault(entry.kid, KeyUsage(kid=entry.kid, provider=entry.provider))
            for name in ("envelopes", "versions", "copies", "mfa_seeds"):
                setattr(found, name, getattr(found, name) + getattr(entry, name))
            found.writer = entry.writer
            found.state = entry.state
    total.keys = sorted(usage.values(), key=_order)
    return total


def _order(entry: KeyUsage) -> tuple[bool, str]:
    return not entry.writer, entry.kid


def _writer_kid(keyring: Keyring) -> str | None:
    current = getattr(keyring.writer, "current_kid", None)
    if current is None:
        return None
    try:
        kid: str = current()
        return kid
    except VSecureError:
        return None


def _state(keyring: Keyring, kid: str) -> str:
    try:
        provider = keyring.provider_for(kid)
    except VSecureError:
        return "unconfigured"
    try:
        key_state = getattr(provider, "key_state", None)
        if key_state is not None:
            return str(key_state(kid))
        has_key = getattr(provider, "has_key", None)
        if has_key is not None:
            return "present" if has_key(kid) else "missing"
    except VSecureError as error:
        return f"unavailable ({error.code})"
    return "unknown"


def _encode(phase: str, cursor: str | None) -> str:
    return base64.urlsafe_b64encode(json.dumps({"phase": phase, "cursor": cursor}).encode()).decode()


def _decode(token: str | None) -> tuple[str, str | None]:
    if not token:
        return PHASES[0], None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("nextToken is not valid") from None
    if not isinstance(data, dict) or data.get("phase") not in PHASES or \
            not isinstance(data.get("cursor"), str | None):
        raise InvalidRequest("nextToken is not valid")
    return data["phase"], data["cursor"]


def _following(phase: str, next_cursor: str | None) -> str | None:
    if next_cursor is not None:
        return _encode(phase, next_cursor)
    index = PHASES.index(phase) + 1
    return _encode(PHASES[index], None) if index < len(PHASES) else None
