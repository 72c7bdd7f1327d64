"""Pydantic models shared by the HTTP API, the SDK and the CLI.

Field names on the wire are camelCase, as in the product spec (``secretId``,
``expectedVersion``); Python code uses snake_case.

Example::

    request = StoreSecretRequest.model_validate({"secretId": "db_password", "value": "s3cr3t",
                                                 "type": "database_credential"})
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

SECRET_ID_PATTERN = r"^[A-Za-z0-9_./-]{1,256}$"
PRINCIPAL_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_SECRET_ID = re.compile(SECRET_ID_PATTERN)


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SecretType(StrEnum):
    API_KEY = "api_key"
    DATABASE_CREDENTIAL = "database_credential"
    JWT_TOKEN = "jwt_token"
    TLS_CERTIFICATE = "tls_certificate"
    SSH_KEY = "ssh_key"
    OAUTH_TOKEN = "oauth_token"
    CONFIGURATION = "configuration"


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"
    ROTATE = "rotate"
    DELETE = "delete"
    ADMIN = "admin"
    AUDIT_READ = "audit:read"


class VersionStatus(StrEnum):
    ACTIVE = "active"
    PENDING = "pending"
    PREVIOUS = "previous"
    RETIRED = "retired"
    DELETED = "deleted"
    DESTROYED = "destroyed"


class PrincipalType(StrEnum):
    USER = "user"
    SERVICE_ACCOUNT = "service_account"


SecretId = Annotated[str, Field(pattern=SECRET_ID_PATTERN)]
AccessMap = dict[str, list[Permission]]


def valid_secret_id(secret_id: str) -> bool:
    return bool(_SECRET_ID.match(secret_id)) and ".." not in secret_id.split("/")


class Constraints(WireModel):
    """The spec's per-secret ``constraints`` block (snake_case on the wire, as in the spec)."""

    model_config = ConfigDict(alias_generator=None, populate_by_name=True, extra="forbid")

    ip_whitelist: list[str] | None = None
    require_mfa: bool | None = None
    rate_limit: str | None = None


# --- secrets -------------------------------------------------------------------------------


class StoreSecretRequest(WireModel):
    secret_id: SecretId
    value: SecretStr
    type: SecretType | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    description: str | None = Field(default=None, max_length=1024)
    expected_version: int | None = Field(default=None, ge=0)
    """Check-and-set: 0 means "must not exist yet"; N means "current version must be N"."""
    access: AccessMap | None = None
    constraints: Constraints | None = None
    compliance: list[str] | None = None
    value_schema: dict[str, Any] | None = None
    """JSON Schema that ``configuration`` values must satisfy."""
    expires_at: datetime | None = None
    reason: str | None = Field(default=None, max_length=512)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not re.fullmatch(r"[A-Za-z0-9_.:/=+@-]{1,128}", tag):
                raise ValueError(f"invalid tag {tag!r}")
        return sorted(set(tags))


class StoreSecretResponse(WireModel):
    secret_id: str
    version: int
    stored: bool = True
    encrypted: bool = True
    created_at: datetime


class RetrieveSecretResponse(WireModel):
    secret_id: str
    value: str
    version: int
    type: SecretType
    labels: list[str] = Field(default_factory=list)
    rotated_at: datetime | None = None
    expires_at: datetime | None = None
    audit: str
    """The id of the audit event that recorded this read."""


class VersionInfo(WireModel):
    version: int
    status: VersionStatus
    labels: list[str] = Field(default_factory=list)
    created_at: datetime
    created_by: str
    source: str | None = None


class VersionsResponse(WireModel):
    secret_id: str
    versions: list[VersionInfo]


class DeletionState(WireModel):
    deleted_at: datetime
    destroy_after: datetime
    deleted_by: str


class SecretMetadata(WireModel):
    secret_id: str
    type: SecretType
    current_version: int
    latest_version: int
    labels: dict[str, int] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    access: AccessMap = Field(default_factory=dict)
    constraints: Constraints | None = None
    compliance: list[str] = Field(default_factory=list)
    rotation: dict[str, Any] | None = None
    value_schema: dict[str, Any] | None = None
    created_at: datetime
    created_by: str
    updated_at: datetime
    rotated_at: datetime | None = None
    expires_at: datetime | None = None
    deletion: DeletionState | None = None


class SecretSummary(WireModel):
    secret_id: str
    type: SecretType
    current_version: int
    tags: list[str] = Field(default_factory=list)
    updated_at: datetime
    deleted: bool = False


class ListSecretsResponse(WireModel):
    secrets: list[SecretSummary]
    next_token: str | None = None


class RollbackRequest(WireModel):
    version: int = Field(ge=1)
    reason: str | None = Field(default=None, max_length=512)


class RollbackResponse(WireModel):
    secret_id: str
    version: int
    previous_version: int
    rolled_back: bool = True


class DeleteSecretResponse(WireModel):
    secret_id: str
    deleted: bool = True
    destroyed: bool = False
    deleted_at: datetime
    destroy_after: datetime | None = None


class RestoreSecretResponse(WireModel):
    secret_id: str
    restored: bool = True
    version: int


# --- principals and tokens -------------------------------------------------------------


class CreatePrincipalRequest(WireModel):
    principal_id: Annotated[str, Field(pattern=PRINCIPAL_ID_PATTERN)]
    type: PrincipalType = PrincipalType.USER
    groups: list[Annotated[str, Field(pattern=PRINCIPAL_ID_PATTERN)]] = Field(default_factory=list)
    admin: bool = False
    description: str | None = Field(default=None, max_length=512)


class PrincipalInfo(WireModel):
    principal_id: str
    type: PrincipalType
    groups: list[str] = Field(default_factory=list)
    admin: bool = False
    disabled: bool = False
    description: str | None = None
    created_at: datetime
    created_by: str
    last_used_at: datetime | None = None


class PrincipalList(WireModel):
    principals: list[PrincipalInfo]


class CreateTokenRequest(WireModel):
    ttl_seconds: int | None = Field(default=None, ge=60, le=10 * 365 * 86400)
    description: str | None = Field(default=None, max_length=512)


class TokenInfo(WireModel):
    token_id: str
    principal_id: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked: bool = False
    description: str | None = None


class TokenCreated(TokenInfo):
    token: str
    """The bearer token itself. Shown once; only its hash is stored."""


class TokenList(WireModel):
    tokens: list[TokenInfo]


class ErrorBody(BaseModel):
    code: str
    message: str
    reason: str | None = None
    details: dict[str, Any] | None = None
