"""Who may do what: one function decides every request and says why.

Grants come from the secret's own access map (the spec's ``permissions`` block: principal or
group name -> permissions) and from prefix policies (``prod/*``). An explicit deny wins over
any allow; ``admin`` on a secret implies every permission on it; a global admin principal
may do anything. Everything else is denied.

Example::

    decision = decide(principal, Permission.READ, "db_password", record.access, record.deny, policies)
    if not decision.allowed:
        raise AccessDenied(decision.message, reason=decision.reason)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from chalicelib.models import Permission

WILDCARD = "*"
IMPLIED_BY_ADMIN = frozenset(Permission)


@dataclass(frozen=True)
class Subject:
    """The names a grant can match: the principal itself and its groups."""

    principal_id: str
    groups: tuple[str, ...] = ()
    admin: bool = False

    def names(self) -> set[str]:
        return {self.principal_id, f"principal:{self.principal_id}", WILDCARD,
                *self.groups, *(f"group:{g}" for g in self.groups)}


@dataclass(frozen=True)
class PrefixPolicy:
    """A named policy over secret ids matching ``pattern`` (``prod/*``, ``*``)."""

    name: str
    pattern: str
    allow: Mapping[str, Sequence[str]] = field(default_factory=dict)
    deny: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def covers(self, secret_id: str) -> bool:
        return fnmatch.fnmatchcase(secret_id, self.pattern)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    message: str = ""


def _granted(grants: Mapping[str, Sequence[str]], names: set[str], permission: Permission) -> str | None:
    """The grant key that gives ``permission`` to one of ``names``, if any."""
    for name, permissions in grants.items():
        if name in names and (permission.value in permissions or Permission.ADMIN.value in permissions):
            return name
    return None


def decide(subject: Subject, permission: Permission, secret_id: str,
           access: Mapping[str, Sequence[str]] | None = None,
           deny: Mapping[str, Sequence[str]] | None = None,
           policies: Iterable[PrefixPolicy] = ()) -> Decision:
    """Allow or deny ``permission`` on ``secret_id`` for ``subject``, with the reason."""
    names = subject.names()
    applicable = [p for p in policies if p.covers(secret_id)]
    denied_by = _granted(deny or {}, names, permission) or next(
        (f"policy:{p.name}" for p in applicable if _granted(p.deny, names, permission)), None)
    if denied_by is not None:
        return Decision(False, "explicit_deny", f"'{permission.value}' is explicitly denied ({denied_by})")
    if subject.admin:
        return Decision(True, "global_admin")
    granted = _granted(access or {}, names, permission)
    if granted is not None:
        return Decision(True, f"secret_grant:{granted}")
    for policy in applicable:
        if _granted(policy.allow, names, permission):
            return Decision(True, f"policy:{policy.name}")
    return Decision(False, "permission_denied", f"missing permission '{permission.value}' on this secret")
