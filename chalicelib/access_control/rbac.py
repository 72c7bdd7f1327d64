"""Who may do what: one function decides every request and says why.

Grants come from the secret's own access map (the spec's ``permissions`` block: principal or
group name -> permissions) and from prefix policies (``prod/*``). A grant key is a principal
id or a group name (``principal:<id>`` / ``group:<name>`` when a name must not be ambiguous,
``*`` for every authenticated principal). ``admin`` granted on a secret implies every
permission on it; a global admin principal may do anything.

An explicit deny (the secret's ``deny`` map, a policy's ``deny``) wins over every allow, a
global admin's included. It takes away exactly the permissions it lists. The one exception:
a global admin keeps ``admin`` (changing the secret's access), so that no deny can lock a
secret away for good. Everything not granted is denied.

Requests that are not about one secret are decided by :func:`decide_global_admin`
(principals, groups, policies, keys), :func:`decide_self` (a principal's own tokens and MFA)
and :func:`decide` on ``*`` (``audit:read`` over the whole log).

Example::

    decision = decide(principal, Permission.READ, "db_password", record.access, record.deny, policies)
    if not decision.allowed:
        raise AccessDenied(decision.message, reason=decision.reason)
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from chalicelib.models import Permission

WILDCARD = "*"
PRINCIPAL_PREFIX = "principal:"
GROUP_PREFIX = "group:"
IMPLIED_BY_ADMIN = frozenset(Permission)
GRANT_KEY_PATTERN = r"^(\*|(principal:|group:)?[a-z0-9][a-z0-9_.-]{0,63})$"
POLICY_PATTERN = r"^[A-Za-z0-9_./*?-]{1,256}$"
_GRANT_KEY = re.compile(GRANT_KEY_PATTERN)

EXPLICIT_DENY = "explicit_deny"
PERMISSION_DENIED = "permission_denied"
GLOBAL_ADMIN = "global_admin"
SELF = "self"
AUTHENTICATED = "authenticated"
ALL_SECRETS = "*"


def valid_grant_key(name: str) -> bool:
    """``backend-team``, ``group:backend-team``, ``principal:app-instance`` or ``*``."""
    return bool(_GRANT_KEY.match(name))


@dataclass(frozen=True)
class Subject:
    """The names a grant can match: the principal itself and its groups."""

    principal_id: str
    groups: tuple[str, ...] = ()
    admin: bool = False

    def names(self) -> set[str]:
        return {self.principal_id, f"{PRINCIPAL_PREFIX}{self.principal_id}", WILDCARD,
                *self.groups, *(f"{GROUP_PREFIX}{g}" for g in self.groups)}


@dataclass(frozen=True)
class PrefixPolicy:
    """A named policy over secret ids matching ``pattern`` (``prod/*``, ``*``).

    Example::

        PrefixPolicy("prod-readers", "prod/*", allow={"backend-team": ["read"]}).covers("prod/db")  # True
    """

    name: str
    pattern: str
    allow: Mapping[str, Sequence[str]] = field(default_factory=dict)
    deny: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def covers(self, secret_id: str) -> bool:
        return fnmatch.fnmatchcase(secret_id, self.pattern)


@dataclass(frozen=True)
class Decision:
    """The answer and its reason (``global_admin``, ``secret_grant:<key>``, ``policy:<name>``,
    ``explicit_deny``, ``permission_denied``); ``message`` names the missing permission."""

    allowed: bool
    reason: str
    message: str = ""


def _allowed_by(grants: Mapping[str, Sequence[str]], names: set[str], permission: Permission) -> str | None:
    """The grant key that gives ``permission`` to one of ``names`` (``admin`` implies all)."""
    for name in sorted(grants):
        permissions = grants[name]
        if name in names and (permission.value in permissions or Permission.ADMIN.value in permissions):
            return name
    return None


def _denied_by(denies: Mapping[str, Sequence[str]], names: set[str], permission: Permission) -> str | None:
    """The deny key that takes ``permission`` away from one of ``names`` (exact permission only)."""
    for name in sorted(denies):
        if name in names and permission.value in denies[name]:
            return name
    return None


def decide(subject: Subject, permission: Permission, secret_id: str,
           access: Mapping[str, Sequence[str]] | None = None,
           deny: Mapping[str, Sequence[str]] | None = None,
           policies: Iterable[PrefixPolicy] = ()) -> Decision:
    """Allow or deny ``permission`` on ``secret_id`` for ``subject``, with the reason."""
    names = subject.names()
    applicable = sorted((p for p in policies if p.covers(secret_id)), key=lambda p: p.name)
    denied_by = _denied_by(deny or {}, names, permission)
    if denied_by is None:
        denied_by = next((f"policy:{p.name}" for p in applicable if _denied_by(p.deny, names, permission)), None)
    if denied_by is not None and not (subject.admin and permission is Permission.ADMIN):
        return Decision(False, EXPLICIT_DENY, f"'{permission.value}' on this secret is explicitly denied")
    if subject.admin:
        return Decision(True, GLOBAL_ADMIN)
    granted = _allowed_by(access or {}, names, permission)
    if granted is not None:
        return Decision(True, f"secret_grant:{granted}")
    for policy in applicable:
        if _allowed_by(policy.allow, names, permission):
            return Decision(True, f"policy:{policy.name}")
    return Decision(False, PERMISSION_DENIED, f"missing permission '{permission.value}' on this secret")


def decide_global_admin(subject: Subject, what: str) -> Decision:
    """Only a global admin may do ``what`` (``"managing principals"``)."""
    if subject.admin:
        return Decision(True, GLOBAL_ADMIN)
    return Decision(False, PERMISSION_DENIED, f"{what} needs global admin")


def decide_self(subject: Subject, principal_id: str, what: str) -> Decision:
    """The principal itself, or a global admin, may do ``what`` to ``principal_id``'s own things."""
    if subject.principal_id == principal_id:
        return Decision(True, SELF)
    if subject.admin:
        return Decision(True, GLOBAL_ADMIN)
    return Decision(False, PERMISSION_DENIED, f"{what} is for the principal itself or a global admin")


def decide_authenticated(subject: Subject) -> Decision:
    """Any authenticated principal (what it then sees is filtered by :func:`decide`)."""
    return Decision(True, AUTHENTICATED)
