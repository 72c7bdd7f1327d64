"""Access routes."""

from __future__ import annotations

from chalice import Blueprint

access_api = Blueprint(__name__)
