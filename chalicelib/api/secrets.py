"""Secret routes: store, list, retrieve, describe, versions, rollback, delete, restore."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.http import current_caller, endpoint, parse_body, path_id, query, query_bool, query_int, respond
from chalicelib.models import RollbackRequest, StoreSecretRequest
from chalicelib.vault.service import get_vault_service

secrets_api = Blueprint(__name__)


@secrets_api.route("/secrets", methods=["POST"])
@endpoint()
def store_secret() -> Response:
    request = parse_body(StoreSecretRequest)
    return respond(get_vault_service().store(current_caller(), request), status=201)


@secrets_api.route("/secrets", methods=["GET"])
@endpoint()
def list_secrets() -> Response:
    answer = get_vault_service().list_secrets(
        current_caller(), secret_type=query("type"), tag=query("tag"), prefix=query("prefix"),
        limit=query_int("limit") or 50, next_token=query("nextToken"),
        include_deleted=query_bool("includeDeleted"))
    return respond(answer)


@secrets_api.route("/secrets/{secret_id}", methods=["GET"])
@endpoint()
def retrieve_secret(secret_id: str) -> Response:
    answer = get_vault_service().retrieve(current_caller(), path_id(secret_id), version=query_int("version"),
                                          stage=query("stage"), reason=query("reason"))
    return respond(answer, headers={"Cache-Control": "no-store"})


@secrets_api.route("/secrets/{secret_id}/metadata", methods=["GET"])
@endpoint()
def describe_secret(secret_id: str) -> Response:
    return respond(get_vault_service().describe(current_caller(), path_id(secret_id)))


@secrets_api.route("/secrets/{secret_id}/versions", methods=["GET"])
@endpoint()
def list_versions(secret_id: str) -> Response:
    return respond(get_vault_service().versions(current_caller(), path_id(secret_id)))


@secrets_api.route("/secrets/{secret_id}/rollback", methods=["POST"])
@endpoint()
def rollback_secret(secret_id: str) -> Response:
    request = parse_body(RollbackRequest)
    return respond(get_vault_service().rollback(current_caller(), path_id(secret_id), request))


@secrets_api.route("/secrets/{secret_id}", methods=["DELETE"])
@endpoint()
def delete_secret(secret_id: str) -> Response:
    answer = get_vault_service().delete(current_caller(), path_id(secret_id),
                                        recovery_window_days=query_int("recoveryWindowDays"),
                                        force=query_bool("force"))
    return respond(answer)


@secrets_api.route("/secrets/{secret_id}/restore", methods=["POST"])
@endpoint()
def restore_secret(secret_id: str) -> Response:
    return respond(get_vault_service().restore(current_caller(), path_id(secret_id)))
