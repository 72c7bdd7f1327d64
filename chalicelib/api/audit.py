"""Audit routes: the trail, Vault-style hashing of a candidate value, sealing and verification.

Reading the audit log needs ``audit:read``: a global admin, a prefix policy covering every
secret (``*``) that grants it, or — for one secret's trail — a grant on that secret. Every call
is itself audited (``audit_read``, ``audit_hash``, ``audit_seal``, ``audit_verify``), denials too.

Example::

    GET  /audit?secretId=db_password&startDate=2026-01-01&endDate=2026-01-31&action=retrieve
    POST /audit/hash     {"value": "sk_live_..."}   -> {"hash": "hmac-sha256:..."}
    POST /audit/seal                                 -> {"digests": [...], "segments": 3, ...}
    GET  /audit/verify?startDate=2026-01-01          -> {"ok": true, "problems": [], ...}
    GET  /audit/public-key                           -> {"keyId": ..., "publicKey": "-----BEGIN PUBLIC KEY..."}
"""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.access_control.context import Caller
from chalicelib.access_control.gate import SecretGrants, require_audit_read, require_global_admin
from chalicelib.api.http import current_caller, endpoint, parse_body, path_id, query, query_int, respond
from chalicelib.api.openapi import register_operations
from chalicelib.audit.events import Action, Status
from chalicelib.audit.query import (
    DEFAULT_LIMIT,
    AuditEntry,
    AuditFilters,
    AuditQuery,
    AuditTrail,
    HashRequest,
    HashResponse,
    SealResponse,
    VerifyResponse,
    parse_time,
)
from chalicelib.audit.stream import get_audit_writer
from chalicelib.aws import client
from chalicelib.config import get_settings
from chalicelib.errors import InvalidRequest, NotFound
from chalicelib.models import WireModel
from chalicelib.vault.service import get_vault_service

audit_api = Blueprint(__name__)

_NO_STORE = {"Cache-Control": "no-store"}


class PublicKeyResponse(WireModel):
    key_id: str
    public_key: str


@audit_api.route("/audit", methods=["GET"])
@endpoint()
def audit_trail() -> Response:
    caller = current_caller()
    filters = AuditFilters.parse(secret_id=query("secretId"), actor=query("actor"), action=query("action"),
                                 status=query("status"), start_date=query("startDate"), end_date=query("endDate"))
    _authorize(caller, Action.AUDIT_READ, filters.secret_id, filters.describe())
    trail = AuditQuery(client("dynamodb"), get_settings().audit_table).search(
        filters, limit=query_int("limit") or DEFAULT_LIMIT, next_token=query("nextToken"))
    _record(caller, Action.AUDIT_READ, filters.secret_id,
            {"filters": filters.describe(), "count": len(trail.entries)})
    return respond(trail, headers=_NO_STORE)


@audit_api.route("/audit/streams/{stream_id}/events/{seq}", methods=["GET"])
@endpoint()
def audit_event(stream_id: str, seq: str) -> Response:
    caller = current_caller()
    if not seq.isdigit():
        raise InvalidRequest("seq must be a positive integer")
    _authorize(caller, Action.AUDIT_READ, None, {"streamId": path_id(stream_id), "seq": int(seq)})
    entry = AuditQuery(client("dynamodb"), get_settings().audit_table).get_event(path_id(stream_id), int(seq))
    if entry is None:
        raise NotFound(f"stream {path_id(stream_id)} has no event {seq}")
    _record(caller, Action.AUDIT_READ, entry.secret_id, {"eventId": entry.event_id})
    return respond(entry, headers=_NO_STORE)


@audit_api.route("/audit/hash", methods=["POST"])
@endpoint()
def audit_hash() -> Response:
    caller = current_caller()
    request = parse_body(HashRequest)
    _authorize(caller, Action.AUDIT_HASH, None, {})
    from chalicelib.audit.hashing import get_audit_hasher

    hashed = get_audit_hasher().hash(request.value)
    _record(caller, Action.AUDIT_HASH, None, {"input": hashed})
    return respond(HashResponse(hash=hashed), headers=_NO_STORE)


@audit_api.route("/audit/seal", methods=["POST"])
@endpoint()
def audit_seal() -> Response:
    caller = current_caller()
    require_global_admin(caller, Action.AUDIT_SEAL, "sealing the audit log")
    from chalicelib.audit.sealer import seal_all

    result = seal_all()
    _record(caller, Action.AUDIT_SEAL, None, {"digests": result["digests"], "segments": result["segments"],
                                              "events": result["events"]})
    return respond(SealResponse.model_validate(result))


@audit_api.route("/audit/verify", methods=["GET"])
@endpoint()
def audit_verify() -> Response:
    caller = current_caller()
    _authorize(caller, Action.AUDIT_VERIFY, None, {})
    from chalicelib.audit.verify import build_verifier

    start, end = query("startDate"), query("endDate")
    report = build_verifier().verify(start=parse_time(start, "startDate") if start else None,
                                     end=parse_time(end, "endDate", end_of_day=True) if end else None)
    _record(caller, Action.AUDIT_VERIFY, None, {"ok": report.ok, "problems": len(report.problems)},
            status=Status.SUCCESS if report.ok else Status.FAILURE)
    return respond(VerifyResponse.model_validate(report.as_dict()))


@audit_api.route("/audit/public-key", methods=["GET"])
@endpoint()
def audit_public_key() -> Response:
    caller = current_caller()
    _authorize(caller, Action.AUDIT_READ, None, {"publicKey": True})
    from chalicelib.audit.verify import fetch_public_key, public_key_pem
    key_id = get_settings().audit_signing_key_id
    pem = public_key_pem(fetch_public_key(client("kms"), key_id))
    return respond(PublicKeyResponse(key_id=key_id, public_key=pem))


# --- who may read the audit log ---------------------------------------------------------------


def _authorize(caller: Caller, action: Action, secret_id: str | None, details: dict[str, Any]) -> None:
    """``audit:read`` on the secret (its trail, kept after it is destroyed) or on every secret.

    The secret's own IP and MFA constraints guard its value, not its trail; the service-wide
    ones apply as to every request. Denials are audited.
    """
    secret = None
    if secret_id is not None:
        record = get_vault_service().repo.get(secret_id)
        secret = SecretGrants(secret_id, access=record.access if record else {}, deny=record.deny if record else {})
    require_audit_read(caller, action, secret=secret, details=details)


def _record(caller: Caller, action: Action, secret_id: str | None, details: dict[str, Any],
            status: Status = Status.SUCCESS) -> None:
    """The audit event of this audit call, durable before the answer leaves (fail closed)."""
    get_audit_writer().commit(caller.draft(action, status=status, secret_id=secret_id, details=details))


register_operations([
    ("get", "/audit", "The audit trail (filters: secretId, actor, action, status, startDate, endDate; newest "
                      "first; limit, nextToken)", None, AuditTrail, 200),
    ("get", "/audit/streams/{streamId}/events/{seq}", "One audit event by stream and sequence number", None,
     AuditEntry, 200),
    ("post", "/audit/hash", "HMAC-SHA256 of a value, as it appears in audit events", HashRequest,
     HashResponse, 200),
    ("post", "/audit/seal", "Seal closed audit segments to S3 Object Lock and sign a digest", None,
     SealResponse, 200),
    ("get", "/audit/verify", "Verify digests, segments, hash chains and sealing (startDate, endDate)", None,
     VerifyResponse, 200),
    ("get", "/audit/public-key", "The audit digest signing key's public key (PEM), for offline verify", None,
     PublicKeyResponse, 200),
])
