"""Wire models of the key administration API (``/keys/...``), shared by API, SDK and CLI.

Kept free of boto3 and provider imports so the SDK and the CLI stay light.

Example::

    progress = RewrapProgress.model_validate(client.request("POST", "/keys/rewrap", json={}))
    print(progress.rewrapped, progress.done)
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.models import WireModel


class KeyUsage(WireModel):
    """How many envelopes one master key (``kid``) wraps, by where they are."""

    kid: str
    provider: str
    envelopes: int = 0
    """versions + copies + mfa_seeds."""
    versions: int = 0
    copies: int = 0
    """META copies of the current and staged versions' envelopes."""
    mfa_seeds: int = 0
    writer: bool = False
    state: str | None = None
    """KMS key state (``Enabled``, ``Disabled``, ``PendingDeletion``), or ``present`` / ``missing``
    for a PKCS#11 or passphrase key version, or ``unconfigured`` when no provider of this vault reads it."""


class KeyStatus(WireModel):
    """One page of ``GET /keys/status`` (or all pages merged by the SDK)."""

    writer: str | None = None
    """The kid new data keys are wrapped under (None if the writer has no key yet)."""
    providers: list[str] = Field(default_factory=list)
    keys: list[KeyUsage] = Field(default_factory=list)
    secrets: int = 0
    principals: int = 0
    next_token: str | None = None


class RotateKeyRequest(WireModel):
    on_demand: bool = False
    """KMS: rotate the key material now (``RotateKeyOnDemand``), besides enabling automatic rotation."""
    rotation_period_days: int | None = Field(default=None, ge=90, le=2560)
    """KMS: automatic rotation period (90 to 2560 days; KMS's default is 365)."""


class KeyRotation(WireModel):
    provider: str
    kid: str
    """The kid new data keys are wrapped under from now on."""
    previous_kid: str | None = None
    new_version: bool = False
    """True when a new key version was created (PKCS#11, passphrase)."""
    automatic_rotation: bool | None = None
    rotation_period_days: int | None = None
    rotated_on_demand: bool | None = None
    message: str


class RewrapRequest(WireModel):
    """``POST /keys/rewrap``: start a job (no ``jobId``) or run its next batch."""

    job_id: str | None = Field(default=None, pattern=r"^rw_[0-9a-f]{16}$")
    source: str | None = Field(default=None, alias="from", max_length=2048)
    """Only envelopes under this key: a kid, a provider name (``kms``), or a KMS key id/alias/ARN."""
    target: str | None = Field(default=None, alias="to", max_length=2048)
    """The key to wrap under: a provider name (its current key), a kid, or ``kms:<key id/alias/ARN>``.
    Default: the configured writer's current key."""
    include_target: bool = False
    """Also re-wrap envelopes already under the target (KMS: moves them to the newest key material)."""
    limit: int = Field(default=100, ge=1, le=500)
    """Secrets (or principals) per batch."""


class RewrapJob(BaseModel):
    """The stored checkpoint of a rewrap job (``SYSTEM`` / ``REWRAP#<job id>``)."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    source: str | None = None
    target: str
    include_target: bool = False
    phase: str = "secrets"
    cursor: str | None = None
    """The last owner (secret or principal id) of ``phase`` whose envelopes are all done."""
    step: int = 0
    """Advanced by every checkpoint; each checkpoint is conditioned on the step it read."""
    owners: int = 0
    rewrapped: int = 0
    data_keys: int = 0
    skipped: int = 0
    conflicts: int = 0
    batches: int = 0
    done: bool = False
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class RewrapProgress(WireModel):
    job_id: str
    source: str | None = Field(default=None, alias="from")
    target: str = Field(alias="to")
    include_target: bool = False
    phase: str
    done: bool
    owners: int
    """Secrets and principals looked at so far."""
    rewrapped: int
    """Envelopes now under the target that were not before (META copies and MFA seeds included)."""
    data_keys: int
    """Distinct data keys re-wrapped (a version and its META copy share one)."""
    skipped: int
    """Envelopes left as they are (under another key than ``from``, or already under the target)."""
    conflicts: int
    """Secrets or principals that kept changing during the job; run a new job for them."""
    batches: int
    next_token: str | None = None
    """The job id while there is more to do (pass it back as ``jobId``); None when done."""

    @classmethod
    def of(cls, job: RewrapJob) -> RewrapProgress:
        return cls.model_validate({
            "job_id": job.job_id, "from": job.source, "to": job.target, "include_target": job.include_target,
            "phase": job.phase, "done": job.done, "owners": job.owners, "rewrapped": job.rewrapped,
            "data_keys": job.data_keys, "skipped": job.skipped, "conflicts": job.conflicts, "batches": job.batches,
            "next_token": None if job.done else job.job_id})
