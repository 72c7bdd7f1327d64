"""What one request has been authorized for, and whether its audit event was written yet.

The HTTP layer opens a :class:`RequestAudit` per request. The access-control gate notes what
the caller was authorized to do and why (``authorized_by``); every caller event of the request
carries that reason; the audit writer counts the events it commits. When an authorized
request ends without an event of its own (a read that records nothing, or a refusal after
authorization such as 409 "no rotation in progress"), the HTTP layer writes one, so every
authenticated request leaves exactly one trace.

Example::

    with request_audit() as trail:
        note_authorized(Action.GROUP_READ, "global_admin")
        ...
        if trail.unrecorded:
            writer.commit(caller.draft(trail.action, secret_id=trail.secret_id))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from chalicelib.audit.events import Action


@dataclass
class RequestAudit:
    action: Action | None = None
    """The action the caller was last authorized for."""
    authorized_by: str | None = None
    """Why (``global_admin``, ``self``, ``secret_grant:<key>``, ``policy:<name>``, ...)."""
    secret_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    events: int = 0

    @property
    def unrecorded(self) -> bool:
        """Authorized, and no event was committed for the request."""
        return self.action is not None and self.events == 0


_current: ContextVar[RequestAudit | None] = ContextVar("v_secure_request_audit", default=None)


@contextlib.contextmanager
def request_audit() -> Iterator[RequestAudit]:
    trail = RequestAudit()
    token = _current.set(trail)
    try:
        yield trail
    finally:
        _current.reset(token)


def current_request_audit() -> RequestAudit | None:
    return _current.get()


def note_authorized(action: Action, authorized_by: str, *, secret_id: str | None = None,
                    details: dict[str, Any] | None = None) -> None:
    """Record that the request's caller may do ``action`` (no-op outside a request)."""
    trail = _current.get()
    if trail is None:
        return
    trail.action, trail.authorized_by, trail.secret_id = action, authorized_by, secret_id
    trail.details = dict(details or {})


def note_event() -> None:
    trail = _current.get()
    if trail is not None:
        trail.events += 1
