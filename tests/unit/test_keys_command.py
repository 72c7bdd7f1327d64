"""``v-secure keys ...`` through click's CliRunner against an ``httpx.MockTransport``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from chalicelib.cli.context import CliState
from chalicelib.cli.main import cli

TOKEN = "vs_test-token"


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("V_SECURE_ENDPOINT", "V_SECURE_TOKEN", "V_SECURE_PROFILE", "V_SECURE_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("V_SECURE_CONFIG_DIR", str(tmp_path))


class FakeApi:
    """``/keys/status`` in two pages, and a rewrap job of three batches."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.batches = 0
        self.source: str | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        self.requests.append((request.method, request.url.path, {**dict(request.url.params), **body}))
        if request.url.path == "/keys/status":
            if request.url.params.get("nextToken"):
                return httpx.Response(200, json={"writer": "kms:b", "providers": ["kms"], "secrets": 1, "keys": [
                    {"kid": "kms:a", "provider": "kms", "envelopes": 2, "versions": 1, "copies": 1}]})
            return httpx.Response(200, json={"writer": "kms:b", "providers": ["kms"], "secrets": 2, "nextToken": "p2",
                                             "keys": [{"kid": "kms:a", "provider": "kms", "envelopes": 4},
                                                      {"kid": "kms:b", "provider": "kms", "envelopes": 1,
                                                       "writer": True}]})
        if request.url.path == "/keys/rewrap":
            self.batches += 1
            self.source = self.source or body.get("from")
            done = self.batches == 3
            return httpx.Response(200, json={
                "jobId": "rw_0123456789abcdef", "from": self.source, "to": "kms:b", "phase": "secrets",
                "done": done, "owners": self.batches, "rewrapped": 2 * self.batches, "dataKeys": self.batches,
                "skipped": 0, "conflicts": 0, "batches": self.batches,
                **({} if done else {"nextToken": "rw_0123456789abcdef"})})
        if request.url.path == "/keys/rotate":
            return httpx.Response(200, json={"provider": "pkcs11", "kid": "pkcs11:t/k#2", "previousKid": "pkcs11:t/k#1",
                                             "newVersion": True, "message": "new data keys are wrapped under ..."})
        return httpx.Response(404, json={"code": "not_found", "message": "no route"})


def run(api: FakeApi, *args: str) -> Result:
    state = CliState(transport=httpx.MockTransport(api))
    return CliRunner().invoke(cli, ["--endpoint-url", "http://vsecure.test", "--token", TOKEN, *args], obj=state)


def test_status_adds_every_page_up() -> None:
    api = FakeApi()
    result = run(api, "keys", "status")

    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["secrets"] == 3 and "nextToken" not in status
    assert {k["kid"]: k["envelopes"] for k in status["keys"]} == {"kms:a": 6, "kms:b": 1}
    assert [r[2].get("nextToken") for r in api.requests] == [None, "p2"]


def test_rewrap_loops_over_the_batches_of_one_job_with_a_progress_bar() -> None:
    api = FakeApi()
    result = run(api, "keys", "rewrap", "--from", "kms:a", "--batch-size", "50", "--progress")

    assert result.exit_code == 0, result.output
    rewraps = [r[2] for r in api.requests if r[1] == "/keys/rewrap"]
    assert rewraps == [{"from": "kms:a", "limit": 50}, {"jobId": "rw_0123456789abcdef", "limit": 50},
                       {"jobId": "rw_0123456789abcdef", "limit": 50}]
    assert [r[1] for r in api.requests][:2] == ["/keys/status", "/keys/status"]  # the bar's total first
    final = json.loads(result.stdout)
    assert final["done"] is True and final["rewrapped"] == 6 and final["from"] == "kms:a"
    assert "rewrap rw_0123456789abcdef" in result.stderr and "6/6" in result.stderr


def test_rewrap_goes_on_with_a_job_and_without_a_bar_off_a_terminal() -> None:
    api = FakeApi()
    result = run(api, "keys", "rewrap", "--job-id", "rw_0123456789abcdef", "--to", "kms:b", "--include-target")

    assert result.exit_code == 0, result.output
    assert api.requests[0][2] == {"jobId": "rw_0123456789abcdef", "to": "kms:b", "includeTarget": True}
    assert all(r[1] == "/keys/rewrap" for r in api.requests) and result.stderr == ""


def test_rotate_sends_the_kms_options() -> None:
    api = FakeApi()
    result = run(api, "keys", "rotate", "--on-demand", "--rotation-period-days", "180")

    assert result.exit_code == 0, result.output
    assert api.requests == [("POST", "/keys/rotate", {"onDemand": True, "rotationPeriodDays": 180})]
    assert json.loads(result.stdout)["kid"] == "pkcs11:t/k#2"
    assert run(api, "keys", "rotate", "--rotation-period-days", "30").exit_code == 2
