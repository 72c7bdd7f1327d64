"""Compliance routes."""

from __future__ import annotations

from chalice import Blueprint

compliance_api = Blueprint(__name__)
