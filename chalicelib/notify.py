"""Domain events to EventBridge (the :class:`~chalicelib.ports.Notifier` adapter).

Events go to the bus ``V_SECURE_EVENT_BUS`` with source ``v-secure`` and a detail type such as
``RotationStarted``, ``SecretRotated``, ``RotationFailed`` or ``RotationRolledBack``. The detail
never holds a value: ids, versions, strategy, status, the failing step and error code.

Delivery is at least once: each notification is first written to an outbox item in the same
transaction as the change it reports (:mod:`chalicelib.rotation.outbox`), published right after
the commit and removed once EventBridge accepted it. A notification that could not be published
(EventBridge refused it, or the process died before) stays in the outbox and is published by the
rotation scheduler's next tick. The detail carries ``notificationId``: a consumer drops an id it
has already seen. A failure to publish never undoes the change.

Example::

    get_notifier().publish("SecretRotated", {"secretId": "prod/db", "oldVersion": 2, "newVersion": 3})  # True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.logging import logger
from chalicelib.ports import Notifier
from chalicelib.singleton import ProcessSingleton

SOURCE = "v-secure"
ROTATION_STARTED = "RotationStarted"
SECRET_ROTATED = "SecretRotated"
ROTATION_FAILED = "RotationFailed"
ROTATION_ROLLED_BACK = "RotationRolledBack"


class EventBridgeNotifier:
    """Puts one event per call on an EventBridge bus; ``publish`` is True when the entry was accepted."""

    def __init__(self, events: Any, bus: str, source: str = SOURCE) -> None:
        self._events = events
        self._bus = bus
        self._source = source

    def publish(self, detail_type: str, detail: Mapping[str, object]) -> bool:
        entry = {"Source": self._source, "DetailType": detail_type, "EventBusName": self._bus,
                 "Time": datetime.now(UTC), "Detail": json.dumps(dict(detail), default=str, sort_keys=True)}
        try:
            answer = self._events.put_events(Entries=[entry])
        except (ClientError, BotoCoreError) as error:
            logger.warning("event not published", extra={"detail_type": detail_type,
                                                          "error": type(error).__name__})
            return False
        if answer.get("FailedEntryCount"):
            failed = (answer.get("Entries") or [{}])[0]
            logger.warning("event not published", extra={"detail_type": detail_type,
                                                          "error": failed.get("ErrorCode", "unknown")})
            return False
        return True


class NullNotifier:
    """Drops every event (rotation disabled for events, or tests that do not look); "accepted", so not kept."""

    def publish(self, detail_type: str, detail: Mapping[str, object]) -> bool:
        return True


def _build_notifier() -> Notifier:
    from chalicelib.aws import client
    from chalicelib.config import get_settings

    return EventBridgeNotifier(client("events"), get_settings().event_bus)


_notifier: ProcessSingleton[Notifier] = ProcessSingleton(_build_notifier)


def get_notifier() -> Notifier:
    return _notifier.get()


def reset_notifier() -> None:
    _notifier.reset()
