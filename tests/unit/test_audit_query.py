"""Audit queries pick an index, never scan, go newest first and page by ``ts`` without repeats."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.audit.events import Action, AuditEvent, Status
from chalicelib.audit.query import AuditFilters, AuditQuery, expand_actions, parse_time
from chalicelib.audit.stream import event_item
from chalicelib.clock import FrozenClock
from chalicelib.errors import InvalidRequest

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
INDEX_ATTRIBUTE = {"by_secret": "secret_id", "by_actor": "actor", "by_action": "action", "by_day": "day"}


class FakeIndexes:
    """Answers ``query`` on the audit GSIs from a list of items; records every call; no scan."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.calls: list[dict[str, Any]] = []

    def query(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        attribute = INDEX_ATTRIBUTE[kwargs["IndexName"]]
        values = kwargs["ExpressionAttributeValues"]
        high, low = values[":high"]["S"], values.get(":low", {"S": ""})["S"]
        found = [i for i in self.items if i.get(attribute) == values[":h"] and low <= i["ts"]["S"] <= high]
        if "#status = :status" in kwargs.get("FilterExpression", ""):
            found = [i for i in found if i["status"] == values[":status"]]
        found.sort(key=lambda i: i["ts"]["S"], reverse=kwargs["ScanIndexForward"] is False)
        return {"Items": found}


def item(seq: int, *, secret: str = "db", actor: str = "app", action: Action = Action.SECRET_READ,
         status: Status = Status.SUCCESS, hour: int = 10) -> dict[str, Any]:
    event = AuditEvent(action=action, actor=actor, actor_type="user", status=status, secret_id=secret,
                       event_id=f"evt_{seq:04d}", timestamp=f"2026-01-15T{hour:02d}:00:{seq % 60:02d}.000000Z",
                       stream_id="s", seq=seq, prev_hash="0" * 64)
    return event_item(event.model_copy(update={"hash": event.computed_hash()}))


def search(items: list[dict[str, Any]], filters: AuditFilters, **kwargs: Any) -> tuple[Any, FakeIndexes]:
    fake = FakeIndexes(items)
    return AuditQuery(fake, "audit", FrozenClock(NOW)).search(filters, **kwargs), fake


def test_a_secret_query_uses_by_secret_newest_first_and_pages_without_repeats() -> None:
    items = [item(n) for n in range(1, 8)] + [item(50, secret="other")]
    page, fake = search(items, AuditFilters(secret_id="db"), limit=3)
    assert [e.seq for e in page.entries] == [7, 6, 5] and page.next_token
    assert {c["IndexName"] for c in fake.calls} == {"by_secret"}
    assert all(c["ScanIndexForward"] is False for c in fake.calls)
    rest, _ = search(items, AuditFilters(secret_id="db"), limit=10, next_token=page.next_token)
    assert [e.seq for e in rest.entries] == [4, 3, 2, 1] and rest.next_token is None


def test_the_index_follows_the_filters() -> None:
    items = [item(1, actor="ci", action=Action.SECRET_STORE), item(2, actor="ci"), item(3, status=Status.DENIED)]
    page, fake = search(items, AuditFilters(actor="ci"))
    assert [e.seq for e in page.entries] == [2, 1] and fake.calls[0]["IndexName"] == "by_actor"
    page, fake = search(items, AuditFilters(actions=("secret_store", "secret_read")))
    assert [e.seq for e in page.entries] == [3, 2, 1] and {c["IndexName"] for c in fake.calls} == {"by_action"}
    page, fake = search(items, AuditFilters(status="denied"))
    assert [e.seq for e in page.entries] == [3] and fake.calls[0]["IndexName"] == "by_day"
    assert fake.calls[0]["ExpressionAttributeValues"][":h"] == {"S": "2026-01-15"}


def test_time_range_is_a_key_condition() -> None:
    items = [item(1, hour=9), item(2, hour=11)]
    filters = AuditFilters.parse(secret_id="db", start_date="2026-01-15T10:00:00Z", end_date="2026-01-15")
    page, fake = search(items, filters)
    assert [e.seq for e in page.entries] == [2]
    assert "BETWEEN" in fake.calls[0]["KeyConditionExpression"]


def test_spec_verbs_and_groups_expand_to_actions() -> None:
    assert expand_actions("retrieve") == ("secret_read",)
    assert "rotation_failed" in expand_actions("rotation") and "secret_rotate" in expand_actions("rotation")
    assert expand_actions("secret_store, retrieve") == ("secret_store", "secret_read")
    with pytest.raises(InvalidRequest):
        expand_actions("launch_missiles")


@pytest.mark.parametrize("bad", [{"status": "maybe"}, {"start_date": "yesterday"},
                                 {"start_date": "2026-02-01", "end_date": "2026-01-01"}])
def test_bad_filters_are_400(bad: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest):
        AuditFilters.parse(**bad)


def test_bad_token_and_limit_are_400() -> None:
    with pytest.raises(InvalidRequest):
        search([], AuditFilters(secret_id="db"), next_token="not-a-token")
    with pytest.raises(InvalidRequest):
        search([], AuditFilters(secret_id="db"), limit=0)


def test_dates_are_whole_days_in_utc() -> None:
    assert parse_time("2026-01-15", "d") == datetime(2026, 1, 15, tzinfo=UTC)
    assert parse_time("2026-01-15", "d", end_of_day=True).hour == 23
    assert json.dumps(AuditFilters.parse(secret_id="db", action="retrieve").describe())
