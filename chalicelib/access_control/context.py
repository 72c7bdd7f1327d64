"""The authenticated caller of one request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.access_control.auth import PrincipalRecord
from chalicelib.access_control.rbac import Subject
from chalicelib.audit.events import Action, AuditDraft, Status
from chalicelib.audit.request_audit import current_request_audit


@dataclass(frozen=True)
class Caller:
    """Who is calling (from their credentials, never from the body), from where, and with what MFA code."""

    principal: PrincipalRecord
    token_id: str | None
    source_ip: str | None
    request_id: str | None
    mfa_code: str | None = None

    @property
    def principal_id(self) -> str:
        return self.principal.principal_id

    @property
    def subject(self) -> Subject:
        return Subject(self.principal.principal_id, tuple(self.principal.groups), self.principal.admin)

    def draft(self, action: Action, *, status: Status = Status.SUCCESS, **fields: Any) -> AuditDraft:
        """An audit draft with this caller's identity, address and request id filled in.

        Events of an authorized request also say why it was allowed (``authorized_by``).
        """
        trail = current_request_audit()
        if status is not Status.DENIED and trail is not None and trail.authorized_by:
            fields.setdefault("authorized_by", trail.authorized_by)
        return AuditDraft(action=action, status=status, actor=self.principal.principal_id,
                          actor_type=self.principal.actor_type, source_ip=self.source_ip,
                          request_id=self.request_id, **fields)


SYSTEM_ACTOR = "v-secure"


def system_draft(action: Action, *, status: Status = Status.SUCCESS, **fields: Any) -> AuditDraft:
    """An audit draft for work the service does on its own (scheduler, sealer)."""
    return AuditDraft(action=action, status=status, actor=SYSTEM_ACTOR, actor_type="system", **fields)
