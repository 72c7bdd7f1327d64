"""Plumbing shared by every route: authenticate, parse, call one service function, shape the answer.

Example::

    @bp.route("/secrets/{secret_id}/metadata", methods=["GET"])
    @endpoint()
    def describe(secret_id: str) -> Response:
        return respond(get_vault_service().describe(current_caller(), path_id(secret_id)))
"""

from __future__ import annotations

import functools
import ipaddress
import json
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import unquote

from chalice import Response
from chalice.app import Request
from pydantic import BaseModel, ValidationError

from chalicelib.access_control.context import Caller
from chalicelib.audit.events import Action, AuditDraft, Status
from chalicelib.audit.request_audit import RequestAudit, request_audit
from chalicelib.config import get_settings
from chalicelib.errors import InvalidRequest, PayloadTooLarge, Unauthenticated, VSecureError
from chalicelib.logging import logger

MAX_BODY_BYTES = 256 * 1024
MFA_HEADER = "x-vsecure-mfa"
ModelT = TypeVar("ModelT", bound=BaseModel)

_caller: ContextVar[Caller | None] = ContextVar("v_secure_caller", default=None)


def endpoint(*, public: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a view: authenticate (unless ``public``), map domain errors to JSON, never leak internals.

    Every authenticated request that was authorized leaves one audit event: the view's own,
    or one written here (a read that records nothing, or a refusal after authorization such
    as a 409), before the answer leaves.
    """

    def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def handler(*args: Any, **kwargs: Any) -> Any:
            token = None
            with request_audit() as trail:
                try:
                    if not public:
                        token = _caller.set(_authenticate())
                    answer = view(*args, **kwargs)
                    _record_unaudited(trail)
                    return answer
                except VSecureError as error:
                    _record_unaudited(trail, error)
                    return error_response(error)
                except Exception:
                    logger.exception("unhandled error", extra={"path": _request().path})
                    return Response(status_code=500, body={"code": "internal_error",
                                                           "message": "internal error; see the server log"})
                finally:
                    if token is not None:
                        _caller.reset(token)

        return handler

    return wrap


def _record_unaudited(trail: RequestAudit, error: VSecureError | None = None) -> None:
    """The event of an authorized request that recorded none: success, or the failure ``error``.

    A success whose event cannot be written fails closed (the error propagates); a failed
    request's event is best effort, as that request already served nothing.
    """
    caller = _caller.get()
    if caller is None or not trail.unrecorded or trail.action is None:
        return
    from chalicelib.audit.stream import get_audit_writer

    if error is None:
        get_audit_writer().commit(caller.draft(trail.action, secret_id=trail.secret_id, details=trail.details))
        return
    draft = caller.draft(trail.action, status=Status.FAILURE, secret_id=trail.secret_id,
                         details={**trail.details, "error": error.code})
    try:
        get_audit_writer().commit(draft)
    except VSecureError as audit_error:
        logger.warning("could not audit a failed request", extra={"code": audit_error.code})


def error_response(error: VSecureError) -> Response:
    if error.status >= 500:
        logger.warning("request failed", extra={"code": error.code, "status": error.status})
    headers: dict[str, str | list[str]] = dict(error.headers)
    return Response(status_code=error.status, body=error.to_body(), headers=headers)


def _request() -> Request:
    from app import app

    request = app.current_request
    assert request is not None, "no request in flight"
    return request


def current_caller() -> Caller:
    caller = _caller.get()
    if caller is None:
        raise Unauthenticated("authentication required")
    return caller


def request_id() -> str:
    context = _request().context or {}
    return str(context.get("requestId") or uuid.uuid4())


def source_ip() -> str | None:
    """The client address API Gateway saw; ``X-Forwarded-For`` only behind a trusted proxy."""
    request = _request()
    direct = ((request.context or {}).get("identity") or {}).get("sourceIp")
    proxies = get_settings().trusted_proxies
    forwarded = request.headers.get("x-forwarded-for")
    if not proxies or not forwarded or not _in_networks(direct, proxies):
        return direct
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not _in_networks(hop, proxies):
            return hop
    return direct


def _in_networks(address: str | None, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def _authenticate() -> Caller:
    from chalicelib.access_control.auth import get_directory

    request = _request()
    ip, rid = source_ip(), request_id()
    try:
        principal, token = get_directory().authenticate(request.headers.get("authorization"))
    except Unauthenticated as error:
        _audit_auth_failure(str(error), ip, rid)
        raise
    return Caller(principal=principal, token_id=token.token_id, source_ip=ip, request_id=rid,
                  mfa_code=request.headers.get(MFA_HEADER))


def _audit_auth_failure(reason: str, ip: str | None, rid: str) -> None:
    from chalicelib.audit.stream import get_audit_writer

    draft = AuditDraft(action=Action.AUTH_FAILED, status=Status.DENIED, actor="anonymous",
                       actor_type="anonymous", source_ip=ip, request_id=rid,
                       deny_reason=reason.replace(" ", "_"), details={"path": _request().path})
    get_audit_writer().commit(draft)


def parse_body(model: type[ModelT]) -> ModelT:
    """The JSON body as ``model``; a 400 names the bad fields (never their values)."""
    raw = _request().raw_body or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the request body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                             for e in error.errors(include_input=False))
        raise InvalidRequest(f"invalid request: {problems}") from None


def query(name: str) -> str | None:
    params: Mapping[str, str] = _request().query_params or {}
    value = params.get(name)
    return value if value not in (None, "") else None


def query_int(name: str) -> int | None:
    value = query(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"query parameter {name} must be an integer") from None


def query_bool(name: str) -> bool:
    value = (query(name) or "").lower()
    if value in ("", "false", "0", "no"):
        return False
    if value in ("true", "1", "yes"):
        return True
    raise InvalidRequest(f"query parameter {name} must be true or false")


def path_id(raw: str) -> str:
    """A path parameter, with ``%2F`` turned back into ``/`` (ids may be path-like)."""
    return unquote(raw)


def respond(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return Response(status_code=status, body=body, headers=dict(headers or {}))
