"""The stored shape of a secret (its META item) and of one version, as domain objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.models import VersionStatus
from chalicelib.vault.encryption import Envelope

CURRENT = "CURRENT"
PREVIOUS = "PREVIOUS"
PENDING = "PENDING"


class SecretRecord(BaseModel):
    """Everything about a secret but its versions' ciphertexts (the current one excepted)."""

    model_config = ConfigDict(extra="ignore")

    secret_id: str
    type: str
    current_version: int = 0
    latest_version: int = 0
    labels: dict[str, int] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    access: dict[str, list[str]] = Field(default_factory=dict)
    deny: dict[str, list[str]] = Field(default_factory=dict)
    constraints: dict[str, Any] | None = None
    compliance: list[str] = Field(default_factory=list)
    rotation: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None
    rotation_run: dict[str, Any] | None = None
    """The rotation run in progress: ``{"id": <run id>, "step": <step>}`` (one at a time per secret)."""
    value_schema: dict[str, Any] | None = None
    created_at: datetime
    created_by: str
    updated_at: datetime
    rotated_at: datetime | None = None
    expires_at: datetime | None = None
    deletion: dict[str, Any] | None = None
    destroyed_at: datetime | None = None
    sched_pk: str | None = None
    sched_at: str | None = None
    rev: int = 0
    current: Envelope | None = None
    """A copy of the CURRENT version's envelope, so reading it costs one GetItem."""
    staged: dict[str, Envelope] = Field(default_factory=dict)
    """Copies of other labelled versions' envelopes served during a rollout (by label)."""

    @property
    def deleted(self) -> bool:
        return self.deletion is not None

    @property
    def destroyed(self) -> bool:
        return self.destroyed_at is not None

    def labels_of(self, version: int) -> list[str]:
        return sorted(label for label, v in self.labels.items() if v == version)


class VersionRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    secret_id: str
    version: int
    created_at: datetime
    created_by: str
    source: str = "store"
    facts: dict[str, Any] = Field(default_factory=dict)
    envelope: Envelope | None = None
    destroyed_at: datetime | None = None


def version_status(record: SecretRecord, version: VersionRecord) -> VersionStatus:
    """A version's status follows from the labels on the secret; only destruction is stored."""
    if version.envelope is None or version.destroyed_at is not None:
        return VersionStatus.DESTROYED
    if record.deleted:
        return VersionStatus.DELETED
    labels = record.labels_of(version.version)
    if CURRENT in labels:
        return VersionStatus.ACTIVE
    if PENDING in labels:
        return VersionStatus.PENDING
    if PREVIOUS in labels:
        return VersionStatus.PREVIOUS
    return VersionStatus.RETIRED
