"""A report over 1 000 secrets and 5 000 audit events on the moto server: it completes, quickly,
reading events with Query on the ``by_day`` index (never Scan) and versions with BatchGetItem."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from chalicelib.aws import client
from tests.integration.test_compliance_support import READER, WRITER, IsolatedVault

SECRETS = 1000
EVENTS = 5000
BUDGET_SECONDS = 30


def test_report_over_1000_secrets_and_5000_events(local_aws: str) -> None:
    vault = IsolatedVault.create()
    vault.add_principals(WRITER, READER)
    vault.add_secrets(SECRETS, "PCI-DSS")
    vault.add_reads(EVENTS, over=__import__("datetime").timedelta(days=2))
    vault.seal()

    calls: Counter[str] = Counter()

    def record(params: dict[str, Any], model: Any, **_kwargs: Any) -> None:
        calls[model.name if not params.get("IndexName") else f"{model.name}:{params['IndexName']}"] += 1

    dynamodb = client("dynamodb")
    dynamodb.meta.events.register("before-parameter-build.dynamodb", record)
    try:
        started = time.monotonic()
        report = vault.report("PCI-DSS", days=3)
        elapsed = time.monotonic() - started
    finally:
        dynamodb.meta.events.unregister("before-parameter-build.dynamodb", record)

    assert elapsed < BUDGET_SECONDS, f"report took {elapsed:.1f}s"
    print(f"report over {SECRETS} secrets / {EVENTS} events: {elapsed:.2f}s, calls {dict(calls)}")
    assert report.total_secrets == SECRETS and report.encrypted == SECRETS
    assert report.status.value == "compliant", [(v.control_id, v.summary) for v in report.violations]
    assert sum(d.accesses for d in report.activity) == EVENTS
    assert not any(name.startswith("Scan") for name in calls)
    assert calls["Query:by_day"] >= 4  # one partition per day of the period (and its pages)
    assert calls["BatchGetItem"] == SECRETS // 100
    assert report.evidence_reads["dynamodb:BatchGetItem"] == SECRETS // 100
