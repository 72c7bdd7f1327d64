"""Wire models of the access-control API: secret access documents, groups, prefix policies, MFA.

The secret access document keeps the spec's snake_case shape
(``{"secret_id", "permissions", "constraints"}``); the other models are camelCase like the
rest of the API.

Example::

    AccessPolicy.model_validate({"secret_id": "db_password",
                                 "permissions": {"backend-team": ["read", "rotate"]},
                                 "constraints": {"require_mfa": True}})
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.access_control.rbac import GRANT_KEY_PATTERN, POLICY_PATTERN, valid_grant_key
from chalicelib.models import PRINCIPAL_ID_PATTERN, Constraints, Permission, SecretId, WireModel

GroupName = Annotated[str, Field(pattern=PRINCIPAL_ID_PATTERN)]
GrantKey = Annotated[str, Field(pattern=GRANT_KEY_PATTERN)]
PolicyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
TotpCode = Annotated[str, Field(pattern=r"^\s*\d{6}\s*$")]


def _check_grant_map(grants: dict[str, list[Permission]] | None) -> dict[str, list[Permission]] | None:
    if grants is None:
        return None
    for name in grants:
        if not valid_grant_key(name):
            raise ValueError(f"{name!r} is not a principal id, a group name, group:<name>, principal:<id> or *")
    return {name: sorted(set(permissions)) for name, permissions in grants.items() if permissions}


class _SpecShape(BaseModel):
    """snake_case on the wire, as in the spec's access document; unknown fields refused."""

    model_config = ConfigDict(extra="forbid")

    def wire(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True)


class AccessPolicy(_SpecShape):
    """A secret's access document: grants, explicit denies, constraints, covering prefix policies."""

    secret_id: str
    permissions: dict[str, list[Permission]] = Field(default_factory=dict)
    deny: dict[str, list[Permission]] = Field(default_factory=dict)
    constraints: Constraints | None = None
    policies: list[str] = Field(default_factory=list)
    """Names of the prefix policies that cover this secret (they may grant or deny too)."""
    version: int | None = None
    """The secret's current version (access changes do not create versions)."""


class AccessUpdate(_SpecShape):
    """``PUT /secrets/{id}/access``: the fields sent replace the stored ones; omitted ones are kept."""

    secret_id: SecretId | None = None
    permissions: dict[str, list[Permission]] | None = None
    deny: dict[str, list[Permission]] | None = None
    constraints: Constraints | None = None
    reason: str | None = Field(default=None, max_length=512)

    _grants = field_validator("permissions", "deny")(_check_grant_map)


class GrantRequest(WireModel):
    """``POST /secrets/{id}/access/grant``: add permissions (or denies, with ``effect: deny``)."""

    to: GrantKey
    permissions: list[Permission] = Field(min_length=1)
    effect: Literal["allow", "deny"] = "allow"
    reason: str | None = Field(default=None, max_length=512)


class RevokeRequest(WireModel):
    """``POST /secrets/{id}/access/revoke``: remove permissions (all of them when none are given)."""

    from_: GrantKey = Field(alias="from")
    permissions: list[Permission] = Field(default_factory=list)
    effect: Literal["allow", "deny"] = "allow"
    reason: str | None = Field(default=None, max_length=512)


class GroupInfo(WireModel):
    group: str
    members: list[str] = Field(default_factory=list)


class GroupList(WireModel):
    groups: list[GroupInfo]


class PolicyRequest(WireModel):
    """``PUT /policies/{name}``: a prefix policy over secret ids matching ``pattern``."""

    pattern: Annotated[str, Field(pattern=POLICY_PATTERN)]
    allow: dict[str, list[Permission]] = Field(default_factory=dict)
    deny: dict[str, list[Permission]] = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=512)

    _grants = field_validator("allow", "deny")(_check_grant_map)


class PolicyDocument(WireModel):
    name: str
    pattern: str
    allow: dict[str, list[Permission]] = Field(default_factory=dict)
    deny: dict[str, list[Permission]] = Field(default_factory=dict)
    description: str | None = None
    updated_at: datetime
    updated_by: str


class PolicyList(WireModel):
    policies: list[PolicyDocument]


class MfaStatus(WireModel):
    principal_id: str
    active: bool = False
    pending: bool = False
    """A setup waiting for its first valid code."""
    enrolment: int = 0


class MfaSetup(MfaStatus):
    otpauth_uri: str
    """``otpauth://totp/...`` with the TOTP secret: shown once, for the authenticator app."""
    secret: str
    """The base32 TOTP secret (the same as in the URI), for typing it in by hand."""


class MfaCodeRequest(WireModel):
    code: TotpCode | None = None
    principal_id: GroupName | None = None
    """``disable`` only: a global admin resetting another principal's MFA (no code needed)."""
