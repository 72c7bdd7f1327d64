"""The notification outbox: rotation events are delivered at least once.

A notification is written as an outbox item in the same ``TransactWriteItems`` as the change it
reports, so a committed change always has its notification on record. Right after the commit
the engine publishes it and, once EventBridge accepted it, deletes the item (one DeleteItem).
If the process dies in between, or EventBridge refuses, the item stays; the scheduler's tick
publishes the items older than a grace period and deletes them (:func:`drain`).

Items (secrets table): ``pk = "OUTBOX"``, ``sk = "<iso timestamp>#<notification id>"``, with
``detail_type``, ``detail`` (the event's JSON detail, never a value), ``notification_id`` and
``ttl`` (epoch seconds, :data:`TTL`). The detail carries ``notificationId``: a consumer that
sees one id twice drops the duplicate.

Example::

    outbox = DynamoOutbox(client("dynamodb"), settings.secrets_table)
    notice = new_notice("SecretRotated", {"secretId": "prod/db"}, clock.now())
    repo.commit(draft, record=updated, expected_rev=rev, extra_items=(outbox.put_item(notice),))
    deliver(notifier, outbox, notice)              # True: published and removed
    drain(notifier, outbox, clock.now())           # later, in the scheduler: what is left
"""

from __future__ import annotations

import json
import secrets as random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from chalicelib.clock import isoformat
from chalicelib.errors import DependencyUnavailable
from chalicelib.logging import logger
from chalicelib.ports import Notifier
from chalicelib.vault.storage import dynamodb_call

OUTBOX_PK = "OUTBOX"
GRACE = timedelta(seconds=30)
"""The scheduler leaves younger items alone: the request that wrote one is delivering it."""
TTL = timedelta(days=7)
"""An item nobody delivered in this time is dropped by DynamoDB (the audit log still has the change)."""


@dataclass(frozen=True)
class Notice:
    """One notification waiting in the outbox (``detail`` includes ``notificationId``)."""

    notification_id: str
    detail_type: str
    created_at: datetime
    detail: Mapping[str, object] = field(default_factory=dict)

    @property
    def sk(self) -> str:
        """``2026-01-15T10:30:00.000000Z#ntf_...``: items sort by the time they were written."""
        return f"{isoformat(self.created_at)}#{self.notification_id}"


def new_notice(detail_type: str, detail: Mapping[str, object], now: datetime) -> Notice:
    """A notification with a fresh id, also set as ``notificationId`` in its detail.

    Example::

        new_notice("RotationStarted", {"secretId": "prod/db"}, now).detail["notificationId"]  # "ntf_..."
    """
    notification_id = f"ntf_{random.token_hex(12)}"
    return Notice(notification_id, detail_type, now, {**detail, "notificationId": notification_id})


class Outbox(Protocol):
    """Where notifications wait. ``put_item`` is a TransactWriteItems element writing ``notice``."""

    def put_item(self, notice: Notice) -> dict[str, Any]: ...

    def delete(self, notice: Notice) -> None: ...

    def due(self, before: datetime, limit: int = 100) -> list[Notice]: ...


class DynamoOutbox:
    """The outbox in the secrets table (``pk = "OUTBOX"``)."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def put_item(self, notice: Notice) -> dict[str, Any]:
        return {"Put": {"TableName": self._table, "Item": notice_item(notice),
                        "ConditionExpression": "attribute_not_exists(pk)"}}

    def delete(self, notice: Notice) -> None:
        """Remove a delivered notification (idempotent)."""
        dynamodb_call("DeleteItem", self._db.delete_item, TableName=self._table,
                      Key={"pk": {"S": OUTBOX_PK}, "sk": {"S": notice.sk}})

    def due(self, before: datetime, limit: int = 100) -> list[Notice]:
        """The oldest notifications written before ``before`` (one Query, at most ``limit``)."""
        answer = dynamodb_call("Query", self._db.query, TableName=self._table, ConsistentRead=True,
                               KeyConditionExpression="pk = :pk AND sk < :cutoff",
                               ExpressionAttributeValues={":pk": {"S": OUTBOX_PK},
                                                          ":cutoff": {"S": isoformat(before)}},
                               Limit=limit)
        return [notice_from_item(item) for item in answer.get("Items", [])]


def notice_item(notice: Notice) -> dict[str, Any]:
    """The DynamoDB item of ``notice``."""
    expires = int((notice.created_at + TTL).timestamp())
    return {"pk": {"S": OUTBOX_PK}, "sk": {"S": notice.sk}, "notification_id": {"S": notice.notification_id},
            "detail_type": {"S": notice.detail_type},
            "detail": {"S": json.dumps(dict(notice.detail), default=str, sort_keys=True)},
            "ttl": {"N": str(expires)}}


def notice_from_item(item: dict[str, Any]) -> Notice:
    written = item["sk"]["S"].partition("#")[0]
    created = datetime.strptime(written, "%Y-%m-%dT%H:%M:%S.%f%z")
    return Notice(item["notification_id"]["S"], item["detail_type"]["S"], created,
                  json.loads(item["detail"]["S"]))


def deliver(notifier: Notifier, outbox: Outbox, notice: Notice) -> bool:
    """Publish ``notice``; once accepted, remove it from the outbox. True when it was published.

    A refusal leaves the item for :func:`drain`; so does a failed DeleteItem (the event may then
    be published twice, with the same ``notificationId``).
    """
    if not notifier.publish(notice.detail_type, notice.detail):
        return False
    try:
        outbox.delete(notice)
    except DependencyUnavailable as error:
        logger.warning("delivered notification not removed from the outbox",
                       extra={"notification_id": notice.notification_id, "error": error.message})
    return True


def drain(notifier: Notifier, outbox: Outbox, now: datetime, *, grace: timedelta = GRACE,
          limit: int = 100) -> int:
    """Deliver the notifications older than ``grace`` (at most ``limit``); returns how many were published.

    Example::

        drain(get_notifier(), outbox, clock.now())   # 2: two notifications were left behind, now sent
    """
    delivered = 0
    for notice in outbox.due(now - grace, limit):
        if deliver(notifier, outbox, notice):
            delivered += 1
    return delivered
