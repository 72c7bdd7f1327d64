"""``v-secure audit ...`` and ``logs tail`` through CliRunner against an ``httpx.MockTransport``."""

from __future__ import annotations

import json
from typing import Any

import httpx
from click.testing import CliRunner, Result

from chalicelib.cli.context import CliState
from chalicelib.cli.main import cli

ENTRY = {"timestamp": "2026-01-15T10:30:00.000000Z", "action": "rotation_started", "secretId": "db",
         "actor": "v-secure", "actorType": "system", "status": "success", "eventId": "evt_1", "streamId": "s",
         "seq": 1, "prevHash": "0" * 64, "hash": "a" * 64}


def run(respond: Any, *args: str) -> tuple[Result, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = respond(request)
        return httpx.Response(status, json=body)

    state = CliState(transport=httpx.MockTransport(handler))
    result = CliRunner().invoke(cli, ["--endpoint-url", "http://vs.test", "--token", "t", *args], obj=state)
    return result, seen


def test_trail_sends_the_filters() -> None:
    result, seen = run(lambda _r: (200, {"secretId": "db", "entries": [ENTRY]}), "audit", "trail",
                       "--secret-id", "db", "--start", "2026-01-01", "--end", "2026-01-31", "--action", "retrieve")
    assert result.exit_code == 0, result.output
    assert seen[0].url.path == "/audit"
    assert dict(seen[0].url.params) == {"secretId": "db", "startDate": "2026-01-01", "endDate": "2026-01-31",
                                        "action": "retrieve"}
    assert json.loads(result.output)["entries"][0]["eventId"] == "evt_1"


def test_hash_prints_only_the_hash_as_text() -> None:
    result, seen = run(lambda _r: (200, {"hash": "hmac-sha256:abc"}), "--output", "text", "audit", "hash",
                       "--value", "s3cr3t")
    assert result.output.strip() == "hmac-sha256:abc"
    assert json.loads(seen[0].content) == {"value": "s3cr3t"}


def test_server_verify_exits_1_on_problems_and_0_when_clean() -> None:
    counts = {"digests": 1, "segments": 1, "events": 3, "streams": 1, "pending": 0}
    bad = {"ok": False, "problems": ["segment segments/s/1-3.jsonl modified"], "counts": counts, "summary": "1 problem"}
    result, _ = run(lambda _r: (200, bad), "--output", "text", "audit", "verify", "--server")
    assert result.exit_code == 1 and "segment segments/s/1-3.jsonl modified" in result.output
    good = {"ok": True, "problems": [], "counts": counts, "summary": "audit log verified"}
    result, _ = run(lambda _r: (200, good), "--output", "text", "audit", "verify", "--server")
    assert result.exit_code == 0 and "audit log verified" in result.output


def test_logs_tail_prints_oldest_first_and_asks_for_the_group() -> None:
    second = dict(ENTRY, eventId="evt_2", seq=2, action="rotation_completed", timestamp="2026-01-15T10:31:00Z")
    result, seen = run(lambda _r: (200, {"entries": [second, ENTRY]}), "--output", "text", "logs", "tail",
                       "--filter", "rotation")
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.output.splitlines()] == ["rotation_started", "rotation_completed"]
    assert seen[0].url.params["action"] == "rotation" and "startDate" in seen[0].url.params
