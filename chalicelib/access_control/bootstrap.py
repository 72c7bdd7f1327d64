"""First start: create the root principal (global admin) and hand out a token for it.

Like ``vault operator init``, the token is returned once and never logged; the caller
decides where it goes (``make run`` writes it to the ``dev`` CLI profile, mode 0600).
"""

from __future__ import annotations

import contextlib

from chalicelib.access_control.auth import ROOT_PRINCIPAL, PrincipalRecord, get_directory
from chalicelib.access_control.context import system_draft
from chalicelib.audit.events import Action
from chalicelib.clock import SystemClock
from chalicelib.errors import Conflict
from chalicelib.models import PrincipalType


def bootstrap_root(ttl_seconds: int | None = None) -> str:
    """Ensure the root principal exists and return a new token for it."""
    directory = get_directory()
    if directory.get_principal(ROOT_PRINCIPAL) is None:
        root = PrincipalRecord(principal_id=ROOT_PRINCIPAL, type=PrincipalType.USER, admin=True,
                               description="bootstrap administrator", created_at=SystemClock().now(),
                               created_by="v-secure")
        with contextlib.suppress(Conflict):  # another process bootstrapped first
            directory.create_principal(root, system_draft(Action.SYSTEM_BOOTSTRAP,
                                                          details={"principal": ROOT_PRINCIPAL}))
    token, _record, _event = directory.issue_token(
        ROOT_PRINCIPAL, system_draft(Action.TOKEN_CREATE, details={"principal": ROOT_PRINCIPAL}),
        ttl_seconds=ttl_seconds, description="bootstrap token")
    return token
