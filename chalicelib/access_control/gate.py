"""The gate of every request that is not about one secret: decide, check constraints, audit.

Per-secret requests pass the same two steps inside the vault service (``decide`` on the
secret's grants, then ``enforce`` with its constraints). Everything else comes here:

- :func:`require_global_admin`: principals, groups, prefix policies, keys, sealing;
- :func:`require_self`: a principal's own tokens and MFA (or a global admin);
- :func:`require_authenticated`: listing secrets (filtered afterwards), ``whoami``;
- :func:`require_audit_read`: the audit log and compliance reports, for one secret or all.

After the decision, the service-wide constraints bind every caller, global admins included:
``V_SECURE_IP_WHITELIST``, then ``V_SECURE_REQUIRE_MFA`` (except on the routes that manage
one's own MFA). A refusal is audited with its reason before it is raised; an allowed request
is noted with its reason (``authorized_by``), which its audit event then carries.

Example::

    require_global_admin(caller, Action.GROUP_CHANGE, "managing groups", details={"group": group})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.access_control.context import Caller
from chalicelib.access_control.policies import check_address_and_mfa
from chalicelib.access_control.rbac import (
    ALL_SECRETS,
    Decision,
    PrefixPolicy,
    decide,
    decide_authenticated,
    decide_global_admin,
    decide_self,
)
from chalicelib.audit.events import Action, AuditDraft, Status
from chalicelib.audit.request_audit import note_authorized
from chalicelib.errors import AccessDenied
from chalicelib.models import Permission

AuditCommit = Callable[[AuditDraft], Any]
MFA_INVALID = "mfa_invalid"


@dataclass(frozen=True)
class SecretGrants:
    """What a per-secret audit read is decided on: the secret's grants and denies."""

    secret_id: str
    access: Mapping[str, Sequence[str]] = field(default_factory=dict)
    deny: Mapping[str, Sequence[str]] = field(default_factory=dict)


def require_global_admin(caller: Caller, action: Action, what: str, **options: Any) -> Decision:
    """Only a global admin may do ``what``; see :func:`admit` for ``options``."""
    return admit(caller, action, decide_global_admin(caller.subject, what), **options)


def require_self(caller: Caller, action: Action, principal_id: str, what: str, **options: Any) -> Decision:
    """``principal_id`` itself, or a global admin."""
    return admit(caller, action, decide_self(caller.subject, principal_id, what), **options)


def require_authenticated(caller: Caller, action: Action, **options: Any) -> Decision:
    return admit(caller, action, decide_authenticated(caller.subject), **options)


def require_audit_read(caller: Caller, action: Action, *, secret: SecretGrants | None = None,
                       policies: Sequence[PrefixPolicy] | None = None, **options: Any) -> Decision:
    """``audit:read`` on ``secret`` (its trail) or on every secret."""
    rules = _policies() if policies is None else policies
    if secret is None:
        decision = decide(caller.subject, Permission.AUDIT_READ, ALL_SECRETS, None, None, rules)
        if not decision.allowed:
            decision = Decision(False, decision.reason, "reading the whole audit log needs 'audit:read' on "
                                                        "every secret (global admin, or a policy on '*')")
        return admit(caller, action, decision, **options)
    decision = decide(caller.subject, Permission.AUDIT_READ, secret.secret_id, secret.access, secret.deny, rules)
    if not decision.allowed:
        decision = Decision(False, decision.reason, f"reading the audit trail of '{secret.secret_id}' needs "
                                                    "'audit:read' on it")
    return admit(caller, action, decision, secret_id=secret.secret_id, **options)


def admit(caller: Caller, action: Action, decision: Decision, *, secret_id: str | None = None,
          details: dict[str, Any] | None = None, compliance_standards: Sequence[str] = (),
          mfa_exempt: bool = False,
          audit: AuditCommit | None = None) -> Decision:
    """Raise (audited) unless ``decision`` allows and the constraints pass; note the allow reason."""
    def refuse(reason: str, refused: Action) -> None:
        commit = audit or _writer_commit()
        commit(caller.draft(refused, status=Status.DENIED, deny_reason=reason, secret_id=secret_id,
                            details=details or {}, compliance_standards=list(compliance_standards)))

    if not decision.allowed:
        refuse(decision.reason, action)
        raise AccessDenied(decision.message, reason=decision.reason)
    try:
        check_address_and_mfa(caller, mfa_exempt=mfa_exempt)
    except AccessDenied as denied:
        refuse(denied.reason, Action.MFA_FAILED if denied.reason == MFA_INVALID else action)
        raise
    note_authorized(action, decision.reason, secret_id=secret_id, details=details)
    return decision


def _writer_commit() -> AuditCommit:
    from chalicelib.audit.stream import get_audit_writer

    return get_audit_writer().commit


def _policies() -> tuple[PrefixPolicy, ...]:
    from chalicelib.access_control.policy_store import cached_policies

    return cached_policies()
