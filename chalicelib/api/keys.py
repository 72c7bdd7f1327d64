"""Keys routes."""

from __future__ import annotations

from chalice import Blueprint

keys_api = Blueprint(__name__)
