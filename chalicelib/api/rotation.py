"""Rotation routes."""

from __future__ import annotations

from chalice import Blueprint

rotation_api = Blueprint(__name__)
