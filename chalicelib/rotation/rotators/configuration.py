"""``configuration`` rotation: rolling out a validated new version; nothing is generated.

A configuration value is a JSON document someone writes, so there is no ``generate``: a rotation
is started with the new value (``POST /secrets/{id}/rotate`` with ``{"value": ...}``, or
``v-secure secret rotate --now --value-file new.json``) and rolled out with the secret's strategy
(a canary of a configuration change, for instance). The test checks the value against the
secret's JSON Schema (``value_schema``); ``apply`` and ``revoke`` have nothing to do. Automatic
(interval) rotation is refused for this type when the rotation is configured.

Example::

    ROTATOR.test(RotationContext("app/flags", SecretType.CONFIGURATION, {}, value_schema=schema),
                 '{"region": "eu-west-1"}')
"""

from __future__ import annotations

from typing import Any

from chalicelib.errors import InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.rotation.rotators.base import RotationContext, RotationNotSupported, RotationTestFailed
from chalicelib.secret_types import validate_value


class ConfigurationRotator:
    """Validated new versions only."""

    secret_type = SecretType.CONFIGURATION
    generates = False
    """The engine refuses interval rotation for a rotator that cannot make values itself."""

    def check_config(self, config: dict[str, Any]) -> None:
        """No per-type options."""

    def generate(self, ctx: RotationContext) -> str:
        raise RotationNotSupported(
            f"'{ctx.secret_id}' is a configuration secret: its new values are not generated; "
            "rotate it with a new value (POST /secrets/{id}/rotate with {\"value\": ...})")

    def apply(self, ctx: RotationContext, new_value: str) -> None:
        """Nothing to apply: readers pick the new version up through the rollout."""

    def test(self, ctx: RotationContext, new_value: str) -> None:
        try:
            validate_value(SecretType.CONFIGURATION, new_value, value_schema=ctx.value_schema)
        except InvalidSecretValue as error:
            raise RotationTestFailed(error.message) from None

    def revoke(self, ctx: RotationContext, old_value: str) -> None:
        """Nothing to revoke: an old configuration grants nothing."""


ROTATOR = ConfigurationRotator()
