"""Rotation routes: configure, rotate, status, switch, and roll back a rotation."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.http import current_caller, endpoint, parse_body, path_id, respond
from chalicelib.api.openapi import register_operations
from chalicelib.rotation.models import (
    ConfigureRequest,
    ConfigureResponse,
    RotateRequest,
    RotateResponse,
    RotationRollbackRequest,
    RotationStatusResponse,
    SwitchRequest,
)
from chalicelib.rotation.service import get_rotation_service

rotation_api = Blueprint(__name__)

register_operations([
    ("put", "/secrets/{secretId}/config", "Configure rotation (interval, strategy, rollout, test, retirement, "
     "per-type options)", ConfigureRequest, ConfigureResponse, 200),
    ("post", "/secrets/{secretId}/rotate", "Rotate now (optionally to a given value); answers where the run is",
     RotateRequest, RotateResponse, 200),
    ("get", "/secrets/{secretId}/rotation", "Rotation status: configuration, next due time, the run and its steps",
     None, RotationStatusResponse, 200),
    ("post", "/secrets/{secretId}/switch", "Move CURRENT to the rotation's new version (blue-green switch)",
     SwitchRequest, RotateResponse, 200),
    ("post", "/secrets/{secretId}/rotation/rollback", "Roll back the rotation in progress: the old version for "
     "everyone", RotationRollbackRequest, RotateResponse, 200),
])


@rotation_api.route("/secrets/{secret_id}/config", methods=["PUT"])
@endpoint()
def configure_rotation(secret_id: str) -> Response:
    request = parse_body(ConfigureRequest)
    return respond(get_rotation_service().configure(current_caller(), path_id(secret_id), request))


@rotation_api.route("/secrets/{secret_id}/rotate", methods=["POST"])
@endpoint()
def rotate_secret(secret_id: str) -> Response:
    request = parse_body(RotateRequest)
    return respond(get_rotation_service().rotate(current_caller(), path_id(secret_id), request))


@rotation_api.route("/secrets/{secret_id}/rotation", methods=["GET"])
@endpoint()
def rotation_status(secret_id: str) -> Response:
    return respond(get_rotation_service().status(current_caller(), path_id(secret_id)))


@rotation_api.route("/secrets/{secret_id}/switch", methods=["POST"])
@endpoint()
def switch_secret(secret_id: str) -> Response:
    request = parse_body(SwitchRequest)
    return respond(get_rotation_service().switch(current_caller(), path_id(secret_id), request))


@rotation_api.route("/secrets/{secret_id}/rotation/rollback", methods=["POST"])
@endpoint()
def rollback_rotation(secret_id: str) -> Response:
    request = parse_body(RotationRollbackRequest)
    return respond(get_rotation_service().rollback(current_caller(), path_id(secret_id), request))
