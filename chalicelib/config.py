"""All ``V_SECURE_*`` settings in one place.

Settings are read from the environment the first time :func:`get_settings` is called and
kept for the life of the process; tests call :func:`reset_settings` after changing the
environment.

Example::

    from chalicelib.config import get_settings

    settings = get_settings()
    table = settings.secrets_table
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int) -> int:
    """Parse ``"30d"``, ``"1h"``, ``"90"`` (seconds) into seconds."""
    if isinstance(text, int):
        return text
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h, 30d)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every setting v-secure reads, with its default."""

    model_config = SettingsConfigDict(env_prefix="V_SECURE_", extra="ignore", populate_by_name=True)

    stage: str = "local"
    region: str = Field(default="us-east-1", alias="V_SECURE_AWS_REGION")
    aws_endpoint: str | None = None
    """One endpoint URL for every AWS service (moto server, LocalStack). None means real AWS."""

    host: str = "127.0.0.1"
    port: int = 8000
    aws_port: int = 4566

    secrets_table: str = "v-secure-secrets"
    audit_table: str = "v-secure-audit"
    audit_bucket: str = "v-secure-audit"
    event_bus: str = "v-secure"
    kms_key_id: str = "alias/v-secure-data"
    audit_signing_key_id: str = "alias/v-secure-audit-signing"

    key_provider: Literal["kms", "passphrase", "pkcs11"] = "kms"
    key_providers_read: str = ""
    """More providers to read older envelopes with, e.g. ``kms,passphrase`` (writes use key_provider)."""
    encryption_key: str | None = Field(default=None, repr=False)
    encryption_algorithm: Literal["aes-256-gcm"] = "aes-256-gcm"
    key_derivation_iterations: int = 600_000
    pkcs11_module: str | None = None
    pkcs11_token_label: str = "v-secure"
    pkcs11_pin: str | None = Field(default=None, repr=False)
    pkcs11_pin_file: str | None = None
    pkcs11_key_label: str = "v-secure-master"

    cache_enabled: bool = True
    cache_ttl: int = 300
    cache_max_entries: int = 1000
    cache_max_uses: int = 10_000
    auth_cache_ttl: int = 10

    max_versions: int = 100
    max_value_bytes: int = 64 * 1024

    rotation_enabled: bool = True
    rotation_check_interval: str = "1h"
    rotation_strategy: Literal["immediate", "rolling", "canary", "blue-green"] = "rolling"

    require_mfa: bool = False
    ip_whitelist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit: str | None = None

    compliance_standards: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["PCI-DSS", "HIPAA", "SOX", "GDPR"])
    audit_log_encrypted: bool = True
    retention_days: int = 2555
    seal_interval: str = "5m"

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    _split_lists = field_validator(
        "ip_whitelist", "trusted_proxies", "compliance_standards", mode="before"
    )(_csv)

    @property
    def rotation_check_seconds(self) -> int:
        return parse_duration(self.rotation_check_interval)

    @property
    def seal_interval_seconds(self) -> int:
        return parse_duration(self.seal_interval)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (after the environment changed)."""
    get_settings.cache_clear()
