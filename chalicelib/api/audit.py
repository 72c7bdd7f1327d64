"""Audit routes."""

from __future__ import annotations

from chalice import Blueprint

audit_api = Blueprint(__name__)
