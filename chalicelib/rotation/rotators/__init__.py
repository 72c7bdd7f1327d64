"""Rotators, one module per secret type (``rotators/<type>.py``), each exposing ``ROTATOR``."""

from __future__ import annotations

import importlib

from chalicelib.models import SecretType
from chalicelib.rotation.rotators.base import (
    RotationContext,
    RotationNotSupported,
    RotationTestFailed,
    Rotator,
    get_rotator,
    register_rotator,
)

__all__ = ["RotationContext", "RotationNotSupported", "RotationTestFailed", "Rotator", "get_rotator",
           "load_builtin_rotators", "register_rotator"]


def load_builtin_rotators() -> None:
    """Import ``rotators/<type>.py`` for every secret type that has one and register its ``ROTATOR``."""
    for secret_type in SecretType:
        try:
            module = importlib.import_module(f"chalicelib.rotation.rotators.{secret_type.value}")
        except ModuleNotFoundError as error:
            if error.name != f"chalicelib.rotation.rotators.{secret_type.value}":
                raise
            continue
        register_rotator(module.ROTATOR)
