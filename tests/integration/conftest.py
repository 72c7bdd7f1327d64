"""Integration tests: they talk to the local AWS stack (moto server) and the API over real HTTP.

The stack fixtures (``local_aws``, ``aws_resources``, ``api_server``, ``root_token``) live in
``tests/conftest.py``. Here: every test in this directory gets the ``integration`` marker
(``pytest -m "not integration"`` runs the unit tests only), and ``read_events`` reads what was
published on the EventBridge bus (the bootstrap forwards ``source = v-secure`` to an SQS queue).

Example::

    def test_rotation_notifies(read_events: EventReader) -> None:
        ...
        events = read_events(lambda event: event["detail-type"] == "SecretRotated")
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chalicelib.local.bootstrap import BootstrapResult

_HERE = Path(__file__).parent

EventReader = Callable[..., list[dict[str, Any]]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


class EventLog:
    """Every event drained from the events queue this session; readers take what they match.

    Draining (receive + delete everything) keeps the queue short, so events nobody reads
    cannot starve the ones a test waits for.
    """

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url
        self.unclaimed: list[dict[str, Any]] = []

    def drain(self, wait_seconds: int) -> None:
        from chalicelib.aws import client

        sqs = client("sqs")
        messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=wait_seconds).get("Messages", [])
        for message in messages:
            self.unclaimed.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def take(self, match: Callable[[dict[str, Any]], bool], *, timeout: float = 5,
             count: int = 1) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            for event in [event for event in self.unclaimed if match(event)]:
                if len(found) < count:
                    found.append(event)
                    self.unclaimed.remove(event)
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            self.drain(wait_seconds=1)


@pytest.fixture(scope="session")
def event_log(aws_resources: BootstrapResult) -> EventLog:
    return EventLog(aws_resources.events_queue_url)


@pytest.fixture
def read_events(event_log: EventLog) -> EventReader:
    """``read_events(match, timeout=5, count=1)``: events on the bus for which ``match`` is true.

    Waits until ``count`` matching events arrived or ``timeout`` seconds passed; returns them
    (each event is returned to one reader only).
    """
    return event_log.take
