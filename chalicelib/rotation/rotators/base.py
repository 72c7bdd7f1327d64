"""The rotator interface: one rotator per secret type, each with generate, apply, test and revoke.

The engine drives the AWS Secrets Manager steps (create -> set -> test -> finish) and calls
the rotator of the secret's type at each one:

* ``generate``: make the new value (locally, or by asking a provider for it);
* ``apply``: make the provider accept it (``ALTER USER``, register a key, ...);
* ``test``: prove the new value works (log in, call the API, verify a signature...);
* ``revoke``: after the rollout is complete and retirement is due, make the old value useless.

Each step must be idempotent: after a crash the engine runs the step again.

Example::

    class ConfigurationRotator:
        secret_type = SecretType.CONFIGURATION
        def generate(self, ctx): raise RotationNotSupported("configuration values are not generated")
        ...
    register_rotator(ConfigurationRotator())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.errors import InvalidRequest, VSecureError
from chalicelib.models import SecretType


class RotationTestFailed(VSecureError):
    """The new value did not work; the run is aborted and ``CURRENT`` stays where it was."""

    status, code = 422, "rotation_test_failed"


class RotationNotSupported(InvalidRequest):
    code = "rotation_not_supported"


@dataclass(frozen=True)
class RotationContext:
    """What a rotator may know about the rotation it serves."""

    secret_id: str
    secret_type: SecretType
    config: dict[str, Any]
    """The secret's ``rotation`` block (interval, strategy, and per-type options such as ``endpoint``)."""
    metadata: dict[str, str] = field(default_factory=dict)
    current_value: str | None = None
    """The value of the CURRENT version (None for a first rotation of an empty secret)."""
    resolve_secret: Callable[[str], str] | None = None
    """Reads another secret by id as the system principal (audited), e.g. a master credential."""
    value_schema: dict[str, Any] | None = None
    """The secret's JSON Schema for its values (``configuration`` secrets)."""
    rotation_id: str | None = None
    """The id of the rotation run being served (None outside the engine, e.g. a direct call). The same run
    resumed after a crash has the same id, so a provider can recognise a repeated request of that run."""


class Rotator(Protocol):
    secret_type: SecretType

    def generate(self, ctx: RotationContext) -> str: ...

    def apply(self, ctx: RotationContext, new_value: str) -> None: ...

    def test(self, ctx: RotationContext, new_value: str) -> None: ...

    def revoke(self, ctx: RotationContext, old_value: str) -> None: ...


_ROTATORS: dict[SecretType, Rotator] = {}


def register_rotator(rotator: Rotator) -> Rotator | None:
    """Install (or replace) the rotator for ``rotator.secret_type``; returns the one it replaced."""
    previous = _ROTATORS.get(rotator.secret_type)
    _ROTATORS[rotator.secret_type] = rotator
    return previous


def get_rotator(secret_type: SecretType | str) -> Rotator:
    """The rotator for a type; the built-in rotators are registered on first use."""
    if not _ROTATORS:
        from chalicelib.rotation.rotators import load_builtin_rotators

        load_builtin_rotators()
    rotator = _ROTATORS.get(SecretType(secret_type))
    if rotator is None:
        raise RotationNotSupported(f"no rotator is installed for {secret_type} secrets")
    return rotator
