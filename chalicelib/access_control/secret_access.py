"""A secret's access document: read it, replace it, grant and revoke.

Reading needs ``read`` on the secret (the same as describing it); every change needs ``admin``
on the secret (or global admin). Both pass the secret's constraints first (IP allow-list,
MFA), like any other request on the secret, and a refusal is a 403 whether or not the secret
exists. A change is one conditional write of the secret's META item (guarded by its ``rev``)
with its ``access_grant`` / ``access_revoke`` audit event in the same transaction; it does not
create a version.

Example::

    service = get_secret_access_service()
    service.grant(caller, "db_password", GrantRequest(to="backend-team", permissions=["read", "rotate"]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from chalicelib.access_control.context import Caller
from chalicelib.access_control.policies import validate_constraints
from chalicelib.access_control.rbac import PrefixPolicy
from chalicelib.access_control.wire import AccessPolicy, AccessUpdate, GrantRequest, RevokeRequest
from chalicelib.audit.events import Action
from chalicelib.errors import InvalidRequest
from chalicelib.models import Constraints, Permission
from chalicelib.vault.records import SecretRecord
from chalicelib.vault.service import VaultService

Grants = dict[str, list[str]]
Computed = tuple[Grants, Grants, dict[str, Any] | None]
"""A change's new (access, deny, constraints)."""


class SecretAccessService:
    def __init__(self, vault: VaultService, policies: Callable[[], Iterable[PrefixPolicy]] = lambda: ()) -> None:
        self.vault = vault
        self._policies = policies

    def get(self, caller: Caller, secret_id: str) -> AccessPolicy:
        record = self.vault.authorized(caller, Action.ACCESS_READ, Permission.READ, secret_id)
        self.vault.repo.record_event(caller.draft(Action.ACCESS_READ, secret_id=secret_id,
                                                  compliance_standards=record.compliance))
        return self.document(record)

    def put(self, caller: Caller, secret_id: str, update: AccessUpdate) -> AccessPolicy:
        """Replace the fields sent (``permissions``, ``deny``, ``constraints``); keep the others."""
        if update.secret_id is not None and update.secret_id != secret_id:
            raise InvalidRequest(f"secret_id {update.secret_id!r} in the body does not match the path")
        constraints = update.constraints.model_dump(exclude_none=True) if update.constraints else None
        validate_constraints(constraints)

        def change(record: SecretRecord) -> Computed:
            access = _plain(update.permissions) if update.permissions is not None else record.access
            deny = _plain(update.deny) if update.deny is not None else record.deny
            kept = constraints if update.constraints is not None else record.constraints
            return access, deny, kept

        return self._change(caller, secret_id, Action.ACCESS_GRANT, "put", update.reason, change)

    def grant(self, caller: Caller, secret_id: str, request: GrantRequest) -> AccessPolicy:
        added = [p.value for p in request.permissions]

        def change(record: SecretRecord) -> Computed:
            access, deny = dict(record.access), dict(record.deny)
            target = deny if request.effect == "deny" else access
            target[request.to] = sorted({*target.get(request.to, []), *added})
            return access, deny, record.constraints

        return self._change(caller, secret_id, Action.ACCESS_GRANT, f"grant:{request.effect}", request.reason,
                            change, subject=request.to, permissions=added)

    def revoke(self, caller: Caller, secret_id: str, request: RevokeRequest) -> AccessPolicy:
        removed = [p.value for p in request.permissions]

        def change(record: SecretRecord) -> Computed:
            access, deny = dict(record.access), dict(record.deny)
            target = deny if request.effect == "deny" else access
            left = [p for p in target.get(request.from_, []) if removed and p not in removed]
            if left:
                target[request.from_] = left
            else:
                target.pop(request.from_, None)
            return access, deny, record.constraints

        return self._change(caller, secret_id, Action.ACCESS_REVOKE, f"revoke:{request.effect}", request.reason,
                            change, subject=request.from_, permissions=removed or ["*"])

    def document(self, record: SecretRecord) -> AccessPolicy:
        return AccessPolicy(
            secret_id=record.secret_id, permissions=_typed(record.access), deny=_typed(record.deny),
            constraints=Constraints.model_validate(record.constraints) if record.constraints else None,
            policies=sorted(p.name for p in self._policies() if p.covers(record.secret_id)),
            version=record.current_version)

    def _change(self, caller: Caller, secret_id: str, action: Action, operation: str, reason: str | None,
                compute: Callable[[SecretRecord], Computed],
                **details: Any) -> AccessPolicy:
        def change(record: SecretRecord) -> tuple[SecretRecord, Any]:
            access, deny, constraints = compute(record)
            updated = record.model_copy(update={
                "access": access, "deny": deny, "constraints": constraints or None,
                "updated_at": self.vault.clock.now(), "rev": record.rev + 1})
            draft = caller.draft(action, secret_id=secret_id, reason=reason, compliance_standards=record.compliance,
                                 details={"operation": operation, **details,
                                          "before": _summary(record), "after": _summary(updated)})
            return updated, draft

        _before, after = self.vault.change(caller, action, Permission.ADMIN, secret_id, change)
        return self.document(after)


def _plain(grants: Mapping[str, Sequence[Permission]] | None) -> Grants:
    return {name: sorted(p.value for p in permissions) for name, permissions in (grants or {}).items()
            if permissions}


def _typed(grants: Mapping[str, Sequence[str]]) -> dict[str, list[Permission]]:
    return {name: [Permission(p) for p in permissions] for name, permissions in sorted(grants.items())}


def _summary(record: SecretRecord) -> dict[str, Any]:
    return {"permissions": record.access, "deny": record.deny, "constraints": record.constraints}


def get_secret_access_service() -> SecretAccessService:
    from chalicelib.access_control.policy_store import cached_policies
    from chalicelib.vault.service import get_vault_service

    return SecretAccessService(get_vault_service(), cached_policies)
