"""The Python SDK: one typed method per v-secure API call, on one keep-alive HTTP connection.

Errors from the server come back as the domain errors of :mod:`chalicelib.errors`
(``VersionConflict``, ``AccessDenied`` with its ``reason``, ``RateLimited`` with its
``Retry-After`` header, ...). Failures that happen on this side of the wire are
:class:`ClientSideError` subclasses: :class:`EndpointUnreachable` (also a
``ConnectionError``), :class:`UnexpectedResponse` and :class:`NotConfigured`.

Example::

    from chalicelib.client import VSecurity

    with VSecurity("http://127.0.0.1:8000", token="vs_...") as client:
        client.store("prod/db_password", "s3cr3t", type="database_credential")
        print(client.retrieve("prod/db_password").value)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from chalicelib import errors
from chalicelib.access_control import wire as access_wire
from chalicelib.audit import query as audit_wire
from chalicelib.cli.profiles import DEFAULT_PROFILE, load_profile
from chalicelib.config import parse_duration
from chalicelib.models import (
    Constraints,
    CreatePrincipalRequest,
    CreateTokenRequest,
    DeleteSecretResponse,
    ListSecretsResponse,
    PrincipalInfo,
    PrincipalList,
    RestoreSecretResponse,
    RetrieveSecretResponse,
    RollbackRequest,
    RollbackResponse,
    SecretMetadata,
    SecretSummary,
    StoreSecretRequest,
    StoreSecretResponse,
    TokenCreated,
    TokenInfo,
    TokenList,
    VersionsResponse,
)
from chalicelib.rotation import models as rotation_wire
from chalicelib.vault.keys import models as keys_wire

__all__ = [
    "ClientSideError",
    "EndpointUnreachable",
    "NotConfigured",
    "UnexpectedResponse",
    "VSecurity",
    "error_from_response",
    "path",
    "resolve_connection",
    "retry_after",
]

USER_AGENT = "v-secure-sdk/0.1.0"
MFA_HEADER = "X-VSecure-MFA"
ENV_ENDPOINT = "V_SECURE_ENDPOINT"
ENV_TOKEN = "V_SECURE_TOKEN"
ENV_MFA_CODE = "V_SECURE_MFA_CODE"
ENV_PROFILE = "V_SECURE_PROFILE"

Json = dict[str, Any]
Params = dict[str, Any]
StrList = list[str]
M = TypeVar("M", bound=BaseModel)

# --- client-side errors ------------------------------------------------------------------


class ClientSideError(errors.VSecureError):
    """Raised by the SDK itself: the server never sent this error (``status`` is 0)."""

    status, code = 0, "client_error"


class EndpointUnreachable(ClientSideError, ConnectionError):
    """The endpoint could not be reached (refused, DNS, TLS, timeout, bad URL)."""

    code = "endpoint_unreachable"


class UnexpectedResponse(ClientSideError):
    """The server answered, but not with what the contract says (not JSON, wrong shape)."""

    code = "unexpected_response"


class NotConfigured(ClientSideError):
    """No endpoint was given, in the environment or in a profile."""

    code = "not_configured"


_STATUS_FALLBACK: dict[int, type[errors.VSecureError]] = {
    400: errors.InvalidRequest,
    401: errors.Unauthenticated,
    403: errors.AccessDenied,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    429: errors.RateLimited,
    503: errors.DependencyUnavailable,
}


def _error_classes_by_code() -> dict[str, type[errors.VSecureError]]:
    """``code`` -> class for every server-side VSecureError subclass, walked breadth-first.

    Walked at each call, so error classes defined by modules imported later are found.
    A class counts only if it declares its own ``code`` (a subclass that inherits its
    parent's code does not shadow the parent).
    """
    found: dict[str, type[errors.VSecureError]] = {errors.VSecureError.code: errors.VSecureError}
    queue: list[type[errors.VSecureError]] = [errors.VSecureError]
    while queue:
        cls = queue.pop(0)
        for sub in cls.__subclasses__():
            if issubclass(sub, ClientSideError):
                continue
            if "code" in vars(sub):
                found.setdefault(sub.code, sub)
            queue.append(sub)
    return found


def _class_for(code: str | None, status: int) -> type[errors.VSecureError]:
    by_code = _error_classes_by_code()
    if code and code in by_code:
        return by_code[code]
    if status in _STATUS_FALLBACK:
        return _STATUS_FALLBACK[status]
    if 400 <= status < 500:
        return errors.InvalidRequest
    return errors.VSecureError


def _build_error(cls: type[errors.VSecureError], message: str, *, code: str | None, status: int,
                 reason: str | None, details: Json | None,
                 headers: dict[str, str]) -> errors.VSecureError:
    """An instance of ``cls`` carrying the server's message verbatim.

    Subclass constructors differ (``DependencyUnavailable(dependency, message)``,
    ``AuditUnavailable(message)``), so the base initialiser is used and the subclass
    attributes (``reason``, ``dependency``) are set afterwards.
    """
    error = cls.__new__(cls)
    errors.VSecureError.__init__(error, message, details=details, headers=headers)
    attributes = vars(error)
    # The server's own code/status win over the class defaults (e.g. an unknown code).
    if code and code != cls.code:
        attributes["code"] = code
    if status != cls.status:
        attributes["status"] = status
    if isinstance(error, errors.AccessDenied):
        error.reason = reason or "permission_denied"
    elif reason is not None:
        attributes["reason"] = reason
    if isinstance(error, errors.DependencyUnavailable):
        error.dependency = str(error.details.get("dependency", "unknown"))
    return error


def _error_fields(response: httpx.Response) -> tuple[str | None, str, str | None, Json | None]:
    """(code, message, reason, details) from an error body; tolerant of non-v-secure bodies."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("code") or body.get("Code")
        message = body.get("message") or body.get("Message")
        reason = body.get("reason")
        details = body.get("details")
        if not (code or message):  # not an error body (e.g. a degraded /health): keep it whole
            details = body
        return (
            str(code) if code else None,
            str(message) if message else response.reason_phrase or f"HTTP {response.status_code}",
            str(reason) if reason else None,
            details if isinstance(details, dict) else None,
        )
    text = response.text.strip()[:200]
    return None, text or response.reason_phrase or f"HTTP {response.status_code}", None, None


def error_from_response(response: httpx.Response) -> errors.VSecureError:
    """The typed error for a non-2xx response.

    Example::

        raise error_from_response(response)  # 409 version_conflict -> VersionConflict
    """
    code, message, reason, details = _error_fields(response)
    headers = {}
    if "retry-after" in response.headers:
        headers["Retry-After"] = response.headers["retry-after"]
    cls = _class_for(code, response.status_code)
    return _build_error(cls, message, code=code, status=response.status_code, reason=reason,
                        details=details, headers=headers)


def retry_after(error: errors.VSecureError) -> float | None:
    """Seconds to wait before retrying, from the ``Retry-After`` header kept on the error."""
    value = error.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _validation_message(error: ValidationError) -> str:
    """A validation summary that never echoes input values (which could be the secret)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        location = ".".join(str(part) for part in item["loc"]) or "request"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


# --- paths and connection settings ---------------------------------------------------------


def path(*segments: str | int) -> str:
    """An API path with each segment URL-encoded on its own (``/`` inside a segment too).

    Example::

        path("secrets", "prod/db", "versions")  # "/secrets/prod%2Fdb/versions"
    """
    encoded = []
    for segment in segments:
        text = str(segment)
        if text in ("", ".", ".."):
            raise errors.InvalidRequest(f"invalid path segment {text!r}")
        encoded.append(quote(text, safe=""))
    return "/" + "/".join(encoded)


def resolve_connection(endpoint: str | None, token: str | None, profile: str | None = None,
                       *, profile_explicit: bool | None = None) -> tuple[str, str | None]:
    """(endpoint, token): the explicit values first, then the named profile.

    ``endpoint``/``token`` are what the caller was given (a flag or an environment
    variable). The profile fills what is missing. The profile's token is only used when it
    was chosen on purpose (``profile_explicit``) or belongs to the same endpoint, so the
    default profile's token is never sent to an endpoint named elsewhere.
    """
    name = profile or DEFAULT_PROFILE
    explicit = bool(profile) if profile_explicit is None else profile_explicit
    if not (endpoint and token):
        try:
            stored = load_profile(name)
        except (OSError, ValueError) as exc:  # unreadable file, bad JSON, bad profile shape
            raise NotConfigured(f"cannot read profile {name!r}: {type(exc).__name__}") from None
        if stored is not None:
            same_endpoint = endpoint is None or endpoint.rstrip("/") == stored.endpoint.rstrip("/")
            if token is None and (explicit or same_endpoint):
                token = stored.token
            endpoint = endpoint or stored.endpoint
        elif explicit and not endpoint:
            raise NotConfigured(f"profile {name!r} not found; run `make run` or set {ENV_ENDPOINT}")
    if not endpoint:
        raise NotConfigured(f"no endpoint: pass --endpoint-url, set {ENV_ENDPOINT} or create a profile")
    return endpoint, token


def _bool_param(value: bool) -> str:
    return "true" if value else "false"


def _clean_params(params: Params | None) -> Params:
    cleaned: Params = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        cleaned[key] = _bool_param(value) if isinstance(value, bool) else value
    return cleaned


# --- the client ----------------------------------------------------------------------------


class VSecurity:
    """A v-secure API client on one keep-alive ``httpx.Client``.

    ``mfa_code_provider`` is called (at most once per request) when the server refuses a
    request because it needs MFA (403 with a reason naming ``mfa``); the request is then
    repeated with the ``X-VSecure-MFA`` header. ``transport`` replaces the network (tests
    pass an ``httpx.MockTransport``).

    Example::

        with VSecurity.from_environment() as client:
            for summary in client.iter_secrets(prefix="prod/"):
                print(summary.secret_id, client.metadata(summary.secret_id).current_version)
    """

    def __init__(self, endpoint: str, token: str | None = None, *,
                 mfa_code_provider: Callable[[], str | None] | None = None, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.mfa_code_provider = mfa_code_provider
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.endpoint, headers=headers,
                                  timeout=httpx.Timeout(timeout), transport=transport)

    @classmethod
    def from_environment(cls, profile: str | None = None, **kwargs: Any) -> VSecurity:
        """``V_SECURE_ENDPOINT`` / ``V_SECURE_TOKEN``, else the profile.

        The profile is ``profile``, else ``V_SECURE_PROFILE``, else ``dev``.
        """
        name = profile or os.environ.get(ENV_PROFILE) or None
        endpoint, token = resolve_connection(os.environ.get(ENV_ENDPOINT) or None,
                                             os.environ.get(ENV_TOKEN) or None, name)
        return cls(endpoint, token, **kwargs)

    def __repr__(self) -> str:
        return f"VSecurity(endpoint={self.endpoint!r})"

    def __enter__(self) -> VSecurity:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport -------------------------------------------------------------------------

    def request(self, method: str, path: str, params: Params | None = None, json: Json | None = None,
                *, mfa_code: str | None = None) -> Json:
        """Send one API call and return its JSON object (``{}`` for an empty body).

        ``path`` is already encoded (build it with :func:`path`). ``None`` params are
        dropped and booleans become ``true``/``false``. Non-2xx answers raise the typed
        error. Used by the modules that add API areas (audit, rotation, access, ...).

        Example::

            client.request("GET", path("secrets", "prod/db", "rotation"))
        """
        response = self._send(method, path, _clean_params(params), json, mfa_code)
        if response.is_success:
            return self._json_object(response)
        error = error_from_response(response)
        if mfa_code is None and self._needs_mfa(error) and self.mfa_code_provider is not None:
            code = self.mfa_code_provider()
            if code:
                return self.request(method, path, params, json, mfa_code=code)
        raise error

    def _send(self, method: str, path: str, params: Params, json: Json | None,
              mfa_code: str | None) -> httpx.Response:
        headers = {MFA_HEADER: mfa_code} if mfa_code else None
        try:
            return self._http.request(method, path, params=params or None, json=json, headers=headers)
        except httpx.TimeoutException as exc:
            raise EndpointUnreachable(f"cannot reach v-secure at {self.endpoint}: timed out") from exc
        except httpx.TransportError as exc:
            detail = str(exc) or type(exc).__name__
            raise EndpointUnreachable(f"cannot reach v-secure at {self.endpoint}: {detail}") from exc

    @staticmethod
    def _needs_mfa(error: errors.VSecureError) -> bool:
        return isinstance(error, errors.AccessDenied) and "mfa" in error.reason.lower()

    @staticmethod
    def _json_object(response: httpx.Response) -> Json:
        if response.status_code == 204 or not response.content:
            return {}
        try:
            body = response.json()
        except ValueError as exc:
            raise UnexpectedResponse(f"HTTP {response.status_code} with a body that is not JSON") from exc
        if not isinstance(body, dict):
            raise UnexpectedResponse(f"HTTP {response.status_code} with a JSON {type(body).__name__}, "
                                     "expected an object")
        return body

    @staticmethod
    def _parse(model: type[M], body: Json) -> M:
        """Validate a response; fields this SDK does not know yet are ignored."""
        try:
            return model.model_validate(body, extra="ignore")
        except ValidationError as exc:
            raise UnexpectedResponse(f"response is not a {model.__name__}: "
                                     f"{_validation_message(exc)}") from exc

    def _call(self, model: type[M], method: str, path: str, params: Params | None = None,
              json: Json | None = None, *, mfa_code: str | None = None) -> M:
        return self._parse(model, self.request(method, path, params, json, mfa_code=mfa_code))

    # --- service ---------------------------------------------------------------------------

    def health(self) -> Json:
        """``GET /health``: ``{"status": "ok", ...}``.

        A degraded service (503) raises ``DependencyUnavailable`` naming the failing checks;
        the whole health document is in its ``details``.
        """
        try:
            return self.request("GET", "/health")
        except errors.DependencyUnavailable as exc:
            checks = exc.details.get("checks")
            if not isinstance(checks, dict):
                raise
            failing = [f"{name}: {check.get('message') or check.get('status')}"
                       for name, check in checks.items()
                       if isinstance(check, dict) and check.get("status") != "ok"]
            exc.message = f"v-secure is {exc.details.get('status', 'degraded')}: {'; '.join(failing)}"
            exc.args = (exc.message,)
            raise

    # --- secrets ---------------------------------------------------------------------------

    def store(self, secret_id: str, value: str, type: str | None = None,
              metadata: dict[str, str] | None = None, tags: StrList | None = None,
              expected_version: int | None = None, description: str | None = None,
              access: dict[str, StrList] | None = None,
              constraints: Constraints | dict[str, Any] | None = None,
              compliance: StrList | None = None, value_schema: dict[str, Any] | None = None,
              reason: str | None = None, expires_at: datetime | None = None) -> StoreSecretResponse:
        """Store a new version. ``expected_version=0`` means "must not exist yet"."""
        fields: dict[str, Any] = {
            "secret_id": secret_id, "value": value, "type": type, "metadata": metadata or {},
            "tags": tags or [], "expected_version": expected_version, "description": description,
            "access": access, "constraints": constraints, "compliance": compliance,
            "value_schema": value_schema, "reason": reason, "expires_at": expires_at,
        }
        try:
            request = StoreSecretRequest.model_validate(fields)
        except ValidationError as exc:
            raise errors.InvalidRequest(_validation_message(exc)) from None
        body = request.wire()
        body["value"] = request.value.get_secret_value()  # wire() masks SecretStr
        return self._call(StoreSecretResponse, "POST", "/secrets", json=body)

    def retrieve(self, secret_id: str, version: int | None = None, stage: str | None = None,
                 reason: str | None = None, mfa_code: str | None = None) -> RetrieveSecretResponse:
        """The value of the current version, or of ``version`` / the version labelled ``stage``."""
        params = {"version": version, "stage": stage, "reason": reason}
        return self._call(RetrieveSecretResponse, "GET", path("secrets", secret_id), params,
                          mfa_code=mfa_code)

    def metadata(self, secret_id: str) -> SecretMetadata:
        return self._call(SecretMetadata, "GET", path("secrets", secret_id, "metadata"))

    def versions(self, secret_id: str) -> VersionsResponse:
        return self._call(VersionsResponse, "GET", path("secrets", secret_id, "versions"))

    def rollback(self, secret_id: str, version: int, reason: str | None = None) -> RollbackResponse:
        """Make ``version`` current again (as a new version)."""
        try:
            body = RollbackRequest(version=version, reason=reason).wire()
        except ValidationError as exc:
            raise errors.InvalidRequest(_validation_message(exc)) from None
        return self._call(RollbackResponse, "POST", path("secrets", secret_id, "rollback"), json=body)

    def delete(self, secret_id: str, recovery_window_days: int | None = None,
               force: bool = False) -> DeleteSecretResponse:
        """Schedule deletion (restorable during the window), or destroy now with ``force``."""
        if force and recovery_window_days is not None:
            raise errors.InvalidRequest("give either recovery_window_days or force, not both")
        params = {"recoveryWindowDays": recovery_window_days, "force": True if force else None}
        return self._call(DeleteSecretResponse, "DELETE", path("secrets", secret_id), params)

    def restore(self, secret_id: str) -> RestoreSecretResponse:
        return self._call(RestoreSecretResponse, "POST", path("secrets", secret_id, "restore"))

    def iter_secrets(self, type: str | None = None, tag: str | None = None, prefix: str | None = None,
                     include_deleted: bool = False, page_size: int | None = None) -> Iterator[SecretSummary]:
        """Every matching secret, following ``nextToken`` page after page."""
        next_token: str | None = None
        while True:
            page = self.list(type=type, tag=tag, prefix=prefix, limit=page_size, next_token=next_token,
                             include_deleted=include_deleted)
            yield from page.secrets
            if not page.next_token or page.next_token == next_token:
                return
            next_token = page.next_token

    # --- principals and tokens -------------------------------------------------------------

    def whoami(self) -> PrincipalInfo:
        return self._call(PrincipalInfo, "GET", "/auth/whoami")

    def create_principal(self, principal_id: str, type: str = "user", groups: StrList | None = None,
                         admin: bool = False, description: str | None = None) -> PrincipalInfo:
        fields = {"principal_id": principal_id, "type": type, "groups": groups or [], "admin": admin,
                  "description": description}
        try:
            body = CreatePrincipalRequest.model_validate(fields).wire()
        except ValidationError as exc:
            raise errors.InvalidRequest(_validation_message(exc)) from None
        return self._call(PrincipalInfo, "POST", "/principals", json=body)

    def list_principals(self) -> PrincipalList:
        return self._call(PrincipalList, "GET", "/principals")

    def get_principal(self, principal_id: str) -> PrincipalInfo:
        return self._call(PrincipalInfo, "GET", path("principals", principal_id))

    def disable_principal(self, principal_id: str) -> PrincipalInfo:
        return self._call(PrincipalInfo, "POST", path("principals", principal_id, "disable"))

    def enable_principal(self, principal_id: str) -> PrincipalInfo:
        return self._call(PrincipalInfo, "POST", path("principals", principal_id, "enable"))

    def create_token(self, principal_id: str, ttl: int | str | None = None,
                     description: str | None = None) -> TokenCreated:
        """A new bearer token; ``ttl`` in seconds or as a duration (``"30d"``). Shown once."""
        try:
            ttl_seconds = parse_duration(ttl) if ttl is not None else None
            body = CreateTokenRequest(ttl_seconds=ttl_seconds, description=description).wire()
        except ValidationError as exc:
            raise errors.InvalidRequest(_validation_message(exc)) from None
        except ValueError as exc:
            raise errors.InvalidRequest(str(exc)) from None
        return self._call(TokenCreated, "POST", path("principals", principal_id, "tokens"), json=body)

    def list_tokens(self, principal_id: str) -> TokenList:
        return self._call(TokenList, "GET", path("principals", principal_id, "tokens"))

    def revoke_token(self, principal_id: str, token_id: str) -> TokenInfo:
        return self._call(TokenInfo, "DELETE", path("principals", principal_id, "tokens", token_id))

    # --- keys (global admin) ---------------------------------------------------------------

    def key_status(self, limit: int | None = None, next_token: str | None = None) -> keys_wire.KeyStatus:
        """One page of ``GET /keys/status``; :meth:`key_status_all` adds all pages up."""
        return self._call(keys_wire.KeyStatus, "GET", "/keys/status", {"limit": limit, "nextToken": next_token})

    def key_status_all(self, limit: int | None = None) -> keys_wire.KeyStatus:
        """How many envelopes each master key wraps, over the whole vault."""
        from chalicelib.vault.keys.status import merge

        pages = []
        token: str | None = None
        while True:
            page = self.key_status(limit=limit, next_token=token)
            pages.append(page)
            token = page.next_token
            if not token:
                return merge(pages)

    def rotate_key(self, on_demand: bool = False,
                   rotation_period_days: int | None = None) -> keys_wire.KeyRotation:
        """``POST /keys/rotate``: KMS rotation, or a new PKCS#11 / passphrase key version."""
        body = keys_wire.RotateKeyRequest(on_demand=on_demand, rotation_period_days=rotation_period_days)
        return self._call(keys_wire.KeyRotation, "POST", "/keys/rotate", json=body.wire())

    def rewrap_keys(self, job_id: str | None = None, from_key: str | None = None, to_key: str | None = None,
                    include_target: bool = False, limit: int | None = None) -> keys_wire.RewrapProgress:
        """One batch of ``POST /keys/rewrap``: starts a job without ``job_id``, else goes on with it."""
        body: dict[str, Any] = {"jobId": job_id, "from": from_key, "to": to_key, "limit": limit,
                                "includeTarget": True if include_target else None}
        return self._call(keys_wire.RewrapProgress, "POST", "/keys/rewrap",
                          json={k: v for k, v in body.items() if v is not None})

    def iter_rewrap(self, from_key: str | None = None, to_key: str | None = None, include_target: bool = False,
                    limit: int | None = None, job_id: str | None = None) -> Iterator[keys_wire.RewrapProgress]:
        """Run a rewrap job to its end, yielding the progress after each batch."""
        progress = self.rewrap_keys(job_id, from_key, to_key, include_target, limit)
        yield progress
        while not progress.done:
            progress = self.rewrap_keys(progress.job_id, limit=limit)
            yield progress

    # Last in the class: inside the class body the name ``list`` means this method.
    def list(self, type: str | None = None, tag: str | None = None, prefix: str | None = None,
             limit: int | None = None, next_token: str | None = None,
             include_deleted: bool = False) -> ListSecretsResponse:
        """One page of secret summaries; pass ``next_token`` back for the next page."""
        params = {"type": type, "tag": tag, "prefix": prefix, "limit": limit, "nextToken": next_token,
                  "includeDeleted": True if include_deleted else None}
        return self._call(ListSecretsResponse, "GET", "/secrets", params)

    # --- access control: a secret's access document, groups, prefix policies, MFA ----------
    # (``StrList`` rather than ``list[str]`` below: ``list`` is the method above here.)

    def get_access(self, secret_id: str) -> access_wire.AccessPolicy:
        """The spec's access document: ``permissions``, ``deny``, ``constraints``, covering ``policies``."""
        return self._call(access_wire.AccessPolicy, "GET", path("secrets", secret_id, "access"))

    def put_access(self, secret_id: str, permissions: dict[str, StrList] | None = None,
                   deny: dict[str, StrList] | None = None, constraints: Constraints | dict[str, Any] | None = None,
                   reason: str | None = None) -> access_wire.AccessPolicy:
        """Replace the fields given (the others are kept)."""
        body = self._wire(access_wire.AccessUpdate, {"permissions": permissions, "deny": deny,
                                                     "constraints": constraints, "reason": reason})
        return self._call(access_wire.AccessPolicy, "PUT", path("secrets", secret_id, "access"), json=body)

    def set_constraints(self, secret_id: str, ip_whitelist: StrList | None = None, require_mfa: bool = False,
                        rate_limit: str | None = None) -> access_wire.AccessPolicy:
        """Replace the secret's whole ``constraints`` block (nothing given: no constraints)."""
        constraints = {"ip_whitelist": ip_whitelist or None, "require_mfa": require_mfa or None,
                       "rate_limit": rate_limit}
        return self.put_access(secret_id, constraints=constraints)

    def grant(self, secret_id: str, to: str, permissions: StrList, deny: bool = False,
              reason: str | None = None) -> access_wire.AccessPolicy:
        """Grant ``permissions`` to a principal or group (``deny=True``: deny them explicitly)."""
        body = self._wire(access_wire.GrantRequest, {"to": to, "permissions": permissions,
                                                     "effect": "deny" if deny else "allow", "reason": reason})
        return self._call(access_wire.AccessPolicy, "POST", path("secrets", secret_id, "access", "grant"), json=body)

    def revoke(self, secret_id: str, from_: str, permissions: StrList | None = None, deny: bool = False,
               reason: str | None = None) -> access_wire.AccessPolicy:
        """Revoke ``permissions`` (all of them when None) from a principal or group, or lift a deny."""
        body = self._wire(access_wire.RevokeRequest, {"from": from_, "permissions": permissions or [],
                                                      "effect": "deny" if deny else "allow", "reason": reason})
        return self._call(access_wire.AccessPolicy, "POST", path("secrets", secret_id, "access", "revoke"),
                          json=body)

    def list_groups(self) -> access_wire.GroupList:
        return self._call(access_wire.GroupList, "GET", "/groups")

    def get_group(self, group: str) -> access_wire.GroupInfo:
        return self._call(access_wire.GroupInfo, "GET", path("groups", group))

    def add_group_member(self, group: str, principal_id: str) -> access_wire.GroupInfo:
        return self._call(access_wire.GroupInfo, "PUT", path("groups", group, "members", principal_id))

    def remove_group_member(self, group: str, principal_id: str) -> access_wire.GroupInfo:
        return self._call(access_wire.GroupInfo, "DELETE", path("groups", group, "members", principal_id))

    def list_policies(self) -> access_wire.PolicyList:
        return self._call(access_wire.PolicyList, "GET", "/policies")

    def get_policy(self, name: str) -> access_wire.PolicyDocument:
        return self._call(access_wire.PolicyDocument, "GET", path("policies", name))

    def put_policy(self, name: str, pattern: str, allow: dict[str, StrList] | None = None,
                   deny: dict[str, StrList] | None = None,
                   description: str | None = None) -> access_wire.PolicyDocument:
        """Create or replace the prefix policy ``name`` over ids matching ``pattern`` (``prod/*``)."""
        body = self._wire(access_wire.PolicyRequest, {"pattern": pattern, "allow": allow or {},
                                                      "deny": deny or {}, "description": description})
        return self._call(access_wire.PolicyDocument, "PUT", path("policies", name), json=body)

    def delete_policy(self, name: str) -> access_wire.PolicyDocument:
        return self._call(access_wire.PolicyDocument, "DELETE", path("policies", name))

    def mfa_status(self) -> access_wire.MfaStatus:
        return self._call(access_wire.MfaStatus, "GET", "/auth/mfa")

    def mfa_setup(self) -> access_wire.MfaSetup:
        """Start TOTP enrolment; the result's ``otpauth_uri`` (with the seed) is shown once."""
        return self._call(access_wire.MfaSetup, "POST", "/auth/mfa/setup")

    def mfa_activate(self, code: str) -> access_wire.MfaStatus:
        body = self._wire(access_wire.MfaCodeRequest, {"code": code})
        return self._call(access_wire.MfaStatus, "POST", "/auth/mfa/activate", json=body)

    def mfa_disable(self, code: str | None = None, principal_id: str | None = None) -> access_wire.MfaStatus:
        """Disable MFA with a valid code, or (global admin) reset ``principal_id``'s MFA."""
        body = self._wire(access_wire.MfaCodeRequest, {"code": code, "principal_id": principal_id})
        return self._call(access_wire.MfaStatus, "POST", "/auth/mfa/disable", json=body)

    @staticmethod
    def _wire(model: type[BaseModel], fields: dict[str, Any]) -> Json:
        """Validate a request body here (a clear InvalidRequest before any network call)."""
        try:
            request = model.model_validate({k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            raise errors.InvalidRequest(_validation_message(exc)) from None
        body: Json = request.model_dump(mode="json", by_alias=True, exclude_none=True)
        return body

    # --- audit -----------------------------------------------------------------------------

    def audit_trail(self, secret_id: str | None = None, start_date: str | datetime | None = None,
                    end_date: str | datetime | None = None, action: str | None = None, actor: str | None = None,
                    status: str | None = None, limit: int | None = None,
                    next_token: str | None = None) -> audit_wire.AuditTrail:
        """One page of audit entries, newest first (the spec's ``auditTrail``).

        ``action`` is an action, a comma-separated list, or an alias (``retrieve``, ``rotation``).
        """
        params = {"secretId": secret_id, "startDate": self._audit_time(start_date),
                  "endDate": self._audit_time(end_date), "action": action, "actor": actor, "status": status,
                  "limit": limit, "nextToken": next_token}
        return self._call(audit_wire.AuditTrail, "GET", "/audit", params)

    def iter_audit(self, secret_id: str | None = None, start_date: str | datetime | None = None,
                   end_date: str | datetime | None = None, action: str | None = None, actor: str | None = None,
                   status: str | None = None, page_size: int | None = None) -> Iterator[audit_wire.AuditEntry]:
        """Every matching audit entry, newest first, following ``nextToken``."""
        next_token: str | None = None
        while True:
            page = self.audit_trail(secret_id, start_date, end_date, action, actor, status, page_size, next_token)
            yield from page.entries
            if not page.next_token or page.next_token == next_token:
                return
            next_token = page.next_token

    def audit_event(self, stream_id: str, seq: int) -> audit_wire.AuditEntry:
        """One audit event by its stream and sequence number."""
        return self._call(audit_wire.AuditEntry, "GET", path("audit", "streams", stream_id, "events", seq))

    def audit_hash(self, value: str) -> str:
        """``hmac-sha256:...`` of ``value``, as audit events record request fields that could be secret."""
        body = self._wire(audit_wire.HashRequest, {"value": value})
        return self._call(audit_wire.HashResponse, "POST", "/audit/hash", json=body).hash

    def audit_seal(self) -> audit_wire.SealResponse:
        """Seal closed audit segments now (the scheduled sealer does it every few minutes)."""
        return self._call(audit_wire.SealResponse, "POST", "/audit/seal")

    def audit_verify(self, start_date: str | datetime | None = None,
                     end_date: str | datetime | None = None) -> audit_wire.VerifyResponse:
        """Server-side verification (``v-secure audit verify`` checks on this side, offline-capable)."""
        params = {"startDate": self._audit_time(start_date), "endDate": self._audit_time(end_date)}
        return self._call(audit_wire.VerifyResponse, "GET", "/audit/verify", params)

    def audit_public_key(self) -> str:
        """The audit digest signing key's public key (PEM), to pin for offline verification."""
        return str(self.request("GET", "/audit/public-key").get("publicKey", ""))

    @staticmethod
    def _audit_time(value: str | datetime | None) -> str | None:
        return value.isoformat() if isinstance(value, datetime) else value

    # --- rotation --------------------------------------------------------------------------

    def configure(self, secret_id: str, rotation: dict[str, Any] | None = None, reason: str | None = None,
                  **options: Any) -> rotation_wire.ConfigureResponse:
        """The spec's ``vault.configure``: replace the secret's rotation block.

        ``rotation`` is the block as on the wire (camelCase, per-type options included); keyword
        ``options`` are merged into it, e.g. ``configure("db", interval="30d", strategy="rolling")``.
        """
        body = self._wire(rotation_wire.ConfigureRequest, {"rotation": {**(rotation or {}), **options},
                                                           "reason": reason})
        return self._call(rotation_wire.ConfigureResponse, "PUT", path("secrets", secret_id, "config"), json=body)

    def rotate(self, secret_id: str, strategy: str | None = None, rollout_duration_hours: float | None = None,
               notify_services: StrList | None = None, value: str | None = None, test_new_key: bool | None = None,
               reason: str | None = None) -> rotation_wire.RotateResponse:
        """Rotate now: ``{rotationId, secretId, oldVersion, newVersion, status, progress}``.

        ``value`` rotates to a given value (``configuration`` secrets, whose values are not generated).
        A failed run raises its error (``RotationTestFailed``...) with ``rotationId`` in its details.
        """
        fields = {"strategy": strategy, "rollout_duration_hours": rollout_duration_hours,
                  "notify_services": notify_services or [], "value": value, "test_new_key": test_new_key,
                  "reason": reason}
        try:
            request = rotation_wire.RotateRequest.model_validate({k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            raise errors.InvalidRequest(_validation_message(exc)) from None
        body = request.model_dump(mode="json", by_alias=True, exclude_none=True)
        if request.value is not None:
            body["value"] = request.value.get_secret_value()
        return self._call(rotation_wire.RotateResponse, "POST", path("secrets", secret_id, "rotate"), json=body)

    def rotation_status(self, secret_id: str) -> rotation_wire.RotationStatusResponse:
        """The rotation block, the next due time, the active (or latest) run with its steps, recent runs."""
        return self._call(rotation_wire.RotationStatusResponse, "GET", path("secrets", secret_id, "rotation"))

    def switch(self, secret_id: str, reason: str | None = None) -> rotation_wire.RotateResponse:
        """Blue-green: move CURRENT to the rotation's new version (one conditional write)."""
        body = self._wire(rotation_wire.SwitchRequest, {"reason": reason})
        return self._call(rotation_wire.RotateResponse, "POST", path("secrets", secret_id, "switch"), json=body)

    def rollback_rotation(self, secret_id: str, version: int | None = None,
                          reason: str | None = None) -> rotation_wire.RotateResponse:
        """Undo the rotation in progress: the old version (or ``version``) for everyone."""
        body = self._wire(rotation_wire.RotationRollbackRequest, {"version": version, "reason": reason})
        return self._call(rotation_wire.RotateResponse, "POST", path("secrets", secret_id, "rotation", "rollback"),
                          json=body)

    # --- compliance --------------------------------------------------------------------------

    def compliance_report(self, standard: str, period: str = "monthly", start: str | datetime | None = None,
                          end: str | datetime | None = None, include_secrets: bool = False, mask_ids: bool = False,
                          prefix: str | None = None) -> Any:
        """The spec's ``complianceReport``: a ``chalicelib.compliance.report.ComplianceReport`` with
        ``standard, period, totalSecrets, encrypted, rotatedSecrets, accessViolations, status, violations``
        and the controls. ``period``: monthly, quarterly, yearly (the one holding ``start``, default now)
        or custom (``start`` and ``end``)."""
        from chalicelib.compliance.report import ComplianceReport

        params = self._compliance_params(standard, period, start, end, include_secrets, mask_ids, prefix)
        return self._call(ComplianceReport, "GET", "/compliance/report", params)

    def export_compliance_report(self, standard: str, format: str = "pdf", period: str = "monthly",
                                 start: str | datetime | None = None, end: str | datetime | None = None,
                                 include_secrets: bool = False, mask_ids: bool = False,
                                 prefix: str | None = None) -> bytes:
        """The spec's ``report.export({format})``: the report's bytes as ``pdf``, ``csv`` or ``json``."""
        params = {**self._compliance_params(standard, period, start, end, include_secrets, mask_ids, prefix),
                  "format": format}
        accept = {"pdf": "application/pdf", "csv": "text/csv"}.get(format, "application/json")
        try:
            response = self._http.request("GET", "/compliance/report", params=_clean_params(params),
                                          headers={"Accept": accept})
        except httpx.TransportError as exc:
            raise EndpointUnreachable(f"cannot reach v-secure at {self.endpoint}: "
                                      f"{str(exc) or type(exc).__name__}") from exc
        if not response.is_success:
            raise error_from_response(response)
        return response.content

    @staticmethod
    def _compliance_params(standard: str, period: str, start: str | datetime | None, end: str | datetime | None,
                           include_secrets: bool, mask_ids: bool, prefix: str | None) -> Params:
        def moment(value: str | datetime | None) -> str | None:
            return value.isoformat() if isinstance(value, datetime) else value

        return {"standard": standard, "period": period, "start": moment(start), "end": moment(end),
                "includeSecrets": include_secrets, "maskIds": mask_ids, "prefix": prefix}
