"""Principal and token use cases. Managing principals needs global admin; a principal may
list and revoke its own tokens and create new ones for itself."""

from __future__ import annotations

from chalicelib.access_control.auth import Directory, PrincipalRecord, TokenRecord, get_directory
from chalicelib.access_control.context import Caller
from chalicelib.access_control.gate import require_global_admin, require_self
from chalicelib.audit.events import Action
from chalicelib.clock import Clock, SystemClock
from chalicelib.errors import InvalidRequest
from chalicelib.models import (
    CreatePrincipalRequest,
    CreateTokenRequest,
    PrincipalInfo,
    PrincipalList,
    TokenCreated,
    TokenInfo,
    TokenList,
)


def principal_info(record: PrincipalRecord) -> PrincipalInfo:
    return PrincipalInfo(principal_id=record.principal_id, type=record.type, groups=record.groups,
                         admin=record.admin, disabled=record.disabled, description=record.description,
                         created_at=record.created_at, created_by=record.created_by)


def token_info(record: TokenRecord) -> TokenInfo:
    return TokenInfo(token_id=record.token_id, principal_id=record.principal_id, created_at=record.created_at,
                     expires_at=record.expires_at, revoked=record.revoked, description=record.description)


class PrincipalService:
    def __init__(self, directory: Directory, clock: Clock | None = None) -> None:
        self.directory = directory
        self.clock = clock or SystemClock()

    def create(self, caller: Caller, request: CreatePrincipalRequest) -> PrincipalInfo:
        _require_admin(caller, Action.PRINCIPAL_CREATE, request.principal_id)
        record = PrincipalRecord(principal_id=request.principal_id, type=request.type,
                                 groups=sorted(set(request.groups)), admin=request.admin,
                                 description=request.description, created_at=self.clock.now(),
                                 created_by=caller.principal_id)
        self.directory.create_principal(record, caller.draft(
            Action.PRINCIPAL_CREATE, details={"principal": record.principal_id, "groups": record.groups,
                                              "admin": record.admin}))
        return principal_info(record)

    def list(self, caller: Caller) -> PrincipalList:
        _require_admin(caller, Action.PRINCIPAL_READ, None)
        principals = self.directory.list_principals()
        self.directory_event(caller, Action.PRINCIPAL_READ, {"count": len(principals)})
        return PrincipalList(principals=[principal_info(p) for p in principals])

    def get(self, caller: Caller, principal_id: str) -> PrincipalInfo:
        _require_self(caller, Action.PRINCIPAL_READ, principal_id)
        return principal_info(self.directory.require_principal(principal_id))

    def whoami(self, caller: Caller) -> PrincipalInfo:
        """The caller itself (answers under ``V_SECURE_REQUIRE_MFA`` too, so a client can find out who it is)."""
        require_self(caller, Action.PRINCIPAL_READ, caller.principal_id, "whoami", mfa_exempt=True,
                     details={"view": "whoami"})
        return principal_info(caller.principal)

    def set_disabled(self, caller: Caller, principal_id: str, disabled: bool) -> PrincipalInfo:
        action = Action.PRINCIPAL_DISABLE if disabled else Action.PRINCIPAL_ENABLE
        _require_admin(caller, action, principal_id)
        if disabled and principal_id == caller.principal_id:
            raise InvalidRequest("a principal cannot disable itself")
        record = self.directory.require_principal(principal_id).model_copy(update={"disabled": disabled})
        self.directory.save_principal(record, caller.draft(action, details={"principal": principal_id}))
        return principal_info(record)

    def create_token(self, caller: Caller, principal_id: str, request: CreateTokenRequest) -> TokenCreated:
        _require_self(caller, Action.TOKEN_CREATE, principal_id)
        self.directory.require_principal(principal_id)
        token, record, _event = self.directory.issue_token(
            principal_id, caller.draft(Action.TOKEN_CREATE, details={"principal": principal_id}),
            ttl_seconds=request.ttl_seconds, description=request.description)
        return TokenCreated(token=token, **token_info(record).model_dump())

    def list_tokens(self, caller: Caller, principal_id: str) -> TokenList:
        _require_self(caller, Action.PRINCIPAL_READ, principal_id)
        return TokenList(tokens=[token_info(t) for t in self.directory.list_tokens(principal_id)])

    def revoke_token(self, caller: Caller, principal_id: str, token_id: str) -> TokenInfo:
        _require_self(caller, Action.TOKEN_REVOKE, principal_id)
        token = self.directory.get_token(principal_id, token_id)
        revoked, _event = self.directory.revoke_token(token, caller.draft(
            Action.TOKEN_REVOKE, details={"principal": principal_id, "token_id": token_id}))
        return token_info(revoked)

    def directory_event(self, caller: Caller, action: Action, details: dict[str, object]) -> None:
        from chalicelib.audit.stream import get_audit_writer

        get_audit_writer().commit(caller.draft(action, details=details))


def _require_admin(caller: Caller, action: Action, target: str | None) -> None:
    require_global_admin(caller, action, "managing principals", details={"principal": target})


def _require_self(caller: Caller, action: Action, principal_id: str) -> None:
    require_self(caller, action, principal_id, "a principal's own details and tokens",
                 details={"principal": principal_id})


def get_principal_service() -> PrincipalService:
    return PrincipalService(get_directory())
