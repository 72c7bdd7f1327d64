"""Principal and token routes (administration)."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.access_control.principals import get_principal_service
from chalicelib.api.http import current_caller, endpoint, parse_body, path_id, respond
from chalicelib.models import CreatePrincipalRequest, CreateTokenRequest

principals_api = Blueprint(__name__)


@principals_api.route("/principals", methods=["POST"])
@endpoint()
def create_principal() -> Response:
    request = parse_body(CreatePrincipalRequest)
    return respond(get_principal_service().create(current_caller(), request), status=201)


@principals_api.route("/principals", methods=["GET"])
@endpoint()
def list_principals() -> Response:
    return respond(get_principal_service().list(current_caller()))


@principals_api.route("/principals/{principal_id}", methods=["GET"])
@endpoint()
def get_principal(principal_id: str) -> Response:
    return respond(get_principal_service().get(current_caller(), path_id(principal_id)))


@principals_api.route("/principals/{principal_id}/disable", methods=["POST"])
@endpoint()
def disable_principal(principal_id: str) -> Response:
    return respond(get_principal_service().set_disabled(current_caller(), path_id(principal_id), True))


@principals_api.route("/principals/{principal_id}/enable", methods=["POST"])
@endpoint()
def enable_principal(principal_id: str) -> Response:
    return respond(get_principal_service().set_disabled(current_caller(), path_id(principal_id), False))


@principals_api.route("/principals/{principal_id}/tokens", methods=["POST"])
@endpoint()
def create_token(principal_id: str) -> Response:
    request = parse_body(CreateTokenRequest)
    answer = get_principal_service().create_token(current_caller(), path_id(principal_id), request)
    return respond(answer, status=201, headers={"Cache-Control": "no-store"})


@principals_api.route("/principals/{principal_id}/tokens", methods=["GET"])
@endpoint()
def list_tokens(principal_id: str) -> Response:
    return respond(get_principal_service().list_tokens(current_caller(), path_id(principal_id)))


@principals_api.route("/principals/{principal_id}/tokens/{token_id}", methods=["DELETE"])
@endpoint()
def revoke_token(principal_id: str, token_id: str) -> Response:
    answer = get_principal_service().revoke_token(current_caller(), path_id(principal_id), path_id(token_id))
    return respond(answer)


@principals_api.route("/auth/whoami", methods=["GET"])
@endpoint()
def whoami() -> Response:
    return respond(get_principal_service().whoami(current_caller()))
