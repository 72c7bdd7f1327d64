"""Access routes: a secret's access document, groups, prefix policies and MFA enrolment.

Example::

    GET  /secrets/db_password/access          -> {"secret_id", "permissions", "deny", "constraints", ...}
    POST /secrets/db_password/access/grant    {"to": "backend-team", "permissions": ["read", "rotate"]}
    PUT  /groups/backend-team/members/alice
    PUT  /policies/prod-readers               {"pattern": "prod/*", "allow": {"backend-team": ["read"]}}
    POST /auth/mfa/setup                      -> {"otpauthUri": "otpauth://totp/...", ...}
"""

from __future__ import annotations

import re

from chalice import Blueprint, Response

from chalicelib.access_control.groups import get_group_service
from chalicelib.access_control.mfa import get_mfa_service
from chalicelib.access_control.policy_store import get_policy_store
from chalicelib.access_control.secret_access import get_secret_access_service
from chalicelib.access_control.wire import (
    AccessPolicy,
    AccessUpdate,
    GrantRequest,
    GroupInfo,
    GroupList,
    MfaCodeRequest,
    MfaSetup,
    MfaStatus,
    PolicyDocument,
    PolicyList,
    PolicyRequest,
    RevokeRequest,
)
from chalicelib.api.http import current_caller, endpoint, parse_body, path_id, respond
from chalicelib.api.openapi import register_operations
from chalicelib.errors import InvalidRequest
from chalicelib.models import PRINCIPAL_ID_PATTERN

access_api = Blueprint(__name__)

_NAME = re.compile(PRINCIPAL_ID_PATTERN)
_POLICY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NO_STORE = {"Cache-Control": "no-store"}


def _name(raw: str, what: str, pattern: re.Pattern[str] = _NAME) -> str:
    value = path_id(raw)
    if not pattern.match(value):
        raise InvalidRequest(f"{value!r} is not a valid {what}")
    return value


# --- a secret's access document ------------------------------------------------------------


@access_api.route("/secrets/{secret_id}/access", methods=["GET"])
@endpoint()
def get_access(secret_id: str) -> Response:
    return respond(get_secret_access_service().get(current_caller(), path_id(secret_id)))


@access_api.route("/secrets/{secret_id}/access", methods=["PUT"])
@endpoint()
def put_access(secret_id: str) -> Response:
    update = parse_body(AccessUpdate)
    return respond(get_secret_access_service().put(current_caller(), path_id(secret_id), update))


@access_api.route("/secrets/{secret_id}/access/grant", methods=["POST"])
@endpoint()
def grant_access(secret_id: str) -> Response:
    request = parse_body(GrantRequest)
    return respond(get_secret_access_service().grant(current_caller(), path_id(secret_id), request))


@access_api.route("/secrets/{secret_id}/access/revoke", methods=["POST"])
@endpoint()
def revoke_access(secret_id: str) -> Response:
    request = parse_body(RevokeRequest)
    return respond(get_secret_access_service().revoke(current_caller(), path_id(secret_id), request))


# --- groups ----------------------------------------------------------------------------------


@access_api.route("/groups", methods=["GET"])
@endpoint()
def list_groups() -> Response:
    return respond(get_group_service().list_groups(current_caller()))


@access_api.route("/groups/{group}", methods=["GET"])
@endpoint()
def get_group(group: str) -> Response:
    return respond(get_group_service().get_group(current_caller(), _name(group, "group name")))


@access_api.route("/groups/{group}/members/{principal_id}", methods=["PUT"])
@endpoint()
def add_group_member(group: str, principal_id: str) -> Response:
    answer = get_group_service().add_member(current_caller(), _name(group, "group name"),
                                            _name(principal_id, "principal id"))
    return respond(answer)


@access_api.route("/groups/{group}/members/{principal_id}", methods=["DELETE"])
@endpoint()
def remove_group_member(group: str, principal_id: str) -> Response:
    answer = get_group_service().remove_member(current_caller(), _name(group, "group name"),
                                               _name(principal_id, "principal id"))
    return respond(answer)


# --- prefix policies -------------------------------------------------------------------------


@access_api.route("/policies", methods=["GET"])
@endpoint()
def list_policies() -> Response:
    return respond(get_policy_store().list_policies(current_caller()))


@access_api.route("/policies/{name}", methods=["GET"])
@endpoint()
def get_policy(name: str) -> Response:
    return respond(get_policy_store().get(current_caller(), _name(name, "policy name", _POLICY_NAME)))


@access_api.route("/policies/{name}", methods=["PUT"])
@endpoint()
def put_policy(name: str) -> Response:
    request = parse_body(PolicyRequest)
    return respond(get_policy_store().put(current_caller(), _name(name, "policy name", _POLICY_NAME), request))


@access_api.route("/policies/{name}", methods=["DELETE"])
@endpoint()
def delete_policy(name: str) -> Response:
    return respond(get_policy_store().delete(current_caller(), _name(name, "policy name", _POLICY_NAME)))


# --- MFA enrolment ---------------------------------------------------------------------------


@access_api.route("/auth/mfa", methods=["GET"])
@endpoint()
def mfa_status() -> Response:
    return respond(get_mfa_service().status(current_caller()))


@access_api.route("/auth/mfa/setup", methods=["POST"])
@endpoint()
def mfa_setup() -> Response:
    return respond(get_mfa_service().setup(current_caller()), status=201, headers=_NO_STORE)


@access_api.route("/auth/mfa/activate", methods=["POST"])
@endpoint()
def mfa_activate() -> Response:
    request = parse_body(MfaCodeRequest)
    if not request.code:
        raise InvalidRequest("code is required: the 6-digit code your authenticator shows")
    return respond(get_mfa_service().activate(current_caller(), request.code))


@access_api.route("/auth/mfa/disable", methods=["POST"])
@endpoint()
def mfa_disable() -> Response:
    request = parse_body(MfaCodeRequest)
    return respond(get_mfa_service().disable(current_caller(), request.code, request.principal_id))


register_operations([
    ("get", "/secrets/{secretId}/access", "A secret's access document (needs read)", None, AccessPolicy, 200),
    ("put", "/secrets/{secretId}/access", "Replace permissions, denies or constraints (needs admin)",
     AccessUpdate, AccessPolicy, 200),
    ("post", "/secrets/{secretId}/access/grant", "Grant (or deny) permissions (needs admin)", GrantRequest,
     AccessPolicy, 200),
    ("post", "/secrets/{secretId}/access/revoke", "Revoke permissions or denies (needs admin)", RevokeRequest,
     AccessPolicy, 200),
    ("get", "/groups", "Groups and their members (global admin)", None, GroupList, 200),
    ("get", "/groups/{group}", "A group's members (global admin)", None, GroupInfo, 200),
    ("put", "/groups/{group}/members/{principalId}", "Add a member (global admin)", None, GroupInfo, 200),
    ("delete", "/groups/{group}/members/{principalId}", "Remove a member (global admin)", None, GroupInfo, 200),
    ("get", "/policies", "Prefix policies (global admin)", None, PolicyList, 200),
    ("get", "/policies/{name}", "A prefix policy (global admin)", None, PolicyDocument, 200),
    ("put", "/policies/{name}", "Create or replace a prefix policy (global admin)", PolicyRequest,
     PolicyDocument, 200),
    ("delete", "/policies/{name}", "Delete a prefix policy (global admin)", None, PolicyDocument, 200),
    ("get", "/auth/mfa", "The caller's MFA status", None, MfaStatus, 200),
    ("post", "/auth/mfa/setup", "Start TOTP enrolment (the URI is shown once)", None, MfaSetup, 201),
    ("post", "/auth/mfa/activate", "Activate TOTP with its first valid code", MfaCodeRequest, MfaStatus, 200),
    ("post", "/auth/mfa/disable", "Disable TOTP (a valid code, or a global admin for another principal)",
     MfaCodeRequest, MfaStatus, 200),
])
