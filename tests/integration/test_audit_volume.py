"""10 000 events in the real format: a clean seal + verify exits 0, and a secret's last 50 events
are served by the ``by_secret`` index (a Query, newest first), never by a scan.

The events are loaded with BatchWriteItem (see ``IsolatedAudit``); ``bench/audit_query.py``
prints the latency figures at 10 000 and 100 000 events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from chalicelib.audit.query import AuditFilters, AuditQuery
from chalicelib.aws import client
from chalicelib.cli.main import cli
from chalicelib.tables import AUDIT_BY_SECRET
from tests.integration.test_audit_support import IsolatedAudit

TARGET = "volume/target-secret"
SECRETS = [f"volume/secret-{n:04d}" for n in range(1000)]


@pytest.fixture(scope="module")
def volume_log(local_aws: str) -> IsolatedAudit:
    log = IsolatedAudit.create()
    log.add_events(2485, streams=4, secret_ids=SECRETS)  # 9 940 events over 1 000 secrets
    target = IsolatedAudit(log.location, log.clock)  # a fifth stream: 60 events of one secret
    target.streams = {}
    target.add_events(60, streams=1, secret_ids=[TARGET])
    log.streams.update(target.streams)
    return log


@pytest.fixture
def dynamodb_calls() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every DynamoDB operation of this process's shared client while the test runs."""
    calls: list[tuple[str, dict[str, Any]]] = []
    dynamodb = client("dynamodb")

    def record(params: dict[str, Any], model: Any, **_kwargs: Any) -> None:
        calls.append((model.name, dict(params)))

    dynamodb.meta.events.register("before-parameter-build.dynamodb", record)
    try:
        yield calls
    finally:
        dynamodb.meta.events.unregister("before-parameter-build.dynamodb", record)


def test_clean_seal_and_verify_over_10000_events(volume_log: IsolatedAudit) -> None:
    sealed = volume_log.sealer().seal()
    assert sealed.events == 10_000 and sealed.streams == 5

    result = CliRunner().invoke(cli, ["--output", "text", "audit", "verify", *volume_log.cli_args()])
    assert result.exit_code == 0, result.output
    assert "audit log verified" in result.output and "10000 events in 5 streams" in result.output


def test_last_50_events_of_one_secret_come_from_the_index(volume_log: IsolatedAudit,
                                                           dynamodb_calls: list[tuple[str, dict[str, Any]]]) -> None:
    query = AuditQuery(client("dynamodb"), volume_log.location.audit_table)
    started = time.perf_counter()
    page = query.search(AuditFilters(secret_id=TARGET), limit=50)
    elapsed = time.perf_counter() - started

    assert len(page.entries) == 50 and {e.secret_id for e in page.entries} == {TARGET}
    stamps = [e.timestamp for e in page.entries]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    operations = {name for name, _params in dynamodb_calls}
    assert operations == {"Query"}, operations
    for _name, params in dynamodb_calls:
        assert params["IndexName"] == AUDIT_BY_SECRET and params["ScanIndexForward"] is False
    print(f"by_secret query over 10 000 events: {elapsed * 1000:.1f} ms")

    rest = query.search(AuditFilters(secret_id=TARGET), limit=50, next_token=page.next_token)
    assert len(rest.entries) == 10 and rest.next_token is None
    assert {e.event_id for e in rest.entries}.isdisjoint(e.event_id for e in page.entries)
    assert "Scan" not in {name for name, _params in dynamodb_calls}
