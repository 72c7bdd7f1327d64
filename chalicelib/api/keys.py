"""Key administration routes: ``/keys/status``, ``/keys/rotate``, ``/keys/rewrap`` (global admin only)."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.http import current_caller, endpoint, parse_body, query, query_int, respond
from chalicelib.api.openapi import register_operations
from chalicelib.vault.keys.admin import get_key_admin_service
from chalicelib.vault.keys.models import KeyRotation, KeyStatus, RewrapProgress, RewrapRequest, RotateKeyRequest

keys_api = Blueprint(__name__)

register_operations([
    ("get", "/keys/status", "How many envelopes each master key wraps (one page; pass nextToken back)",
     None, KeyStatus, 200),
    ("post", "/keys/rotate", "Rotate the writer's master key (KMS rotation, or a new key version)",
     RotateKeyRequest, KeyRotation, 200),
    ("post", "/keys/rewrap", "Re-wrap data keys under another master key, one batch per call (resumable)",
     RewrapRequest, RewrapProgress, 200),
])


@keys_api.route("/keys/status", methods=["GET"])
@endpoint()
def key_status() -> Response:
    limit = query_int("limit")
    page = get_key_admin_service().status(current_caller(), limit=200 if limit is None else limit,
                                          next_token=query("nextToken"))
    return respond(page)


@keys_api.route("/keys/rotate", methods=["POST"])
@endpoint()
def rotate_key() -> Response:
    request = parse_body(RotateKeyRequest)
    return respond(get_key_admin_service().rotate(current_caller(), request))


@keys_api.route("/keys/rewrap", methods=["POST"])
@endpoint()
def rewrap_keys() -> Response:
    request = parse_body(RewrapRequest)
    return respond(get_key_admin_service().rewrap(current_caller(), request))
