"""Every core CLI verb against the real HTTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from chalicelib.cli.main import cli
from tests.integration.helpers import unique

Run = Callable[..., Result]


@pytest.fixture
def run(api_server: str, root_token: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("V_SECURE_ENDPOINT", api_server)
    monkeypatch.setenv("V_SECURE_TOKEN", root_token)
    monkeypatch.setenv("COLUMNS", "250")  # wide enough that table output does not fold ids
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, ok: bool = True) -> Result:
        result = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, (args, result.output, result.stderr)
        return result

    return invoke


def as_json(result: Result) -> dict:
    return json.loads(result.stdout)


def test_the_readme_walkthrough(run: Run) -> None:
    secret_id = unique("db_password")
    stored = as_json(run("secret", "store", "--secret-id", secret_id, "--type", "database_credential",
                         "--value", "super_secret_password_123", "--metadata", "database=production_db",
                         "--tags", "production,critical"))
    assert stored["version"] == 1 and stored["encrypted"] is True
    assert as_json(run("secret", "get", "--secret-id", secret_id))["value"] == "super_secret_password_123"
    assert as_json(run("secret", "store", "--secret-id", secret_id, "--value", "second"))["version"] == 2
    versions = as_json(run("secret", "versions", "--secret-id", secret_id))["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "previous"), (2, "active")]
    run("secret", "rollback", "--secret-id", secret_id, "--version", "1")
    assert run("secret", "get", "--secret-id", secret_id, "--output", "text").stdout.strip() == \
        "super_secret_password_123"
    assert as_json(run("secret", "get", "--secret-id", secret_id, "--version", "2"))["value"] == "second"
    table = run("secret", "list", "--prefix", secret_id, "--output", "table").stdout
    assert secret_id in table
    run("secret", "delete", "--secret-id", secret_id, "--recovery-window-days", "7")
    deleted = run("secret", "get", "--secret-id", secret_id, ok=False)
    assert deleted.exit_code != 0 and "secret_deleted" in deleted.stderr and deleted.stdout == ""
    run("secret", "restore", "--secret-id", secret_id)
    assert as_json(run("secret", "get", "--secret-id", secret_id))["version"] == 1


def test_query_metadata_and_stdin(run: Run) -> None:
    secret_id = f"prod/{unique('cfg')}"
    run("secret", "store", "--secret-id", secret_id, "--type", "configuration", "--value-stdin",
        input='{"feature": true}\n')
    assert run("secret", "get", "--secret-id", secret_id, "--query", "value", "--output", "text").stdout.strip() \
        == '{"feature": true}'
    meta = as_json(run("secret", "metadata", "--secret-id", secret_id))
    assert meta["type"] == "configuration" and meta["currentVersion"] == 1
    assert run("secret", "list", "--prefix", "prod/", "--query", "secrets[].secretId", "--output", "text") \
        .stdout.split().count(secret_id) == 1


def test_errors_exit_non_zero_on_stderr(run: Run) -> None:
    missing = run("secret", "get", "--secret-id", unique("missing"), ok=False)
    assert missing.exit_code == 1 and "secret_not_found" in missing.stderr and missing.stdout == ""
    secret_id = unique()
    run("secret", "store", "--secret-id", secret_id, "--type", "api_key", "--value", "sk_live_abcdefgh")
    conflict = run("secret", "store", "--secret-id", secret_id, "--value", "sk_live_12345678",
                   "--expected-version", "0", ok=False)
    assert conflict.exit_code == 1 and "version_conflict" in conflict.stderr
    usage = run("secret", "get", ok=False)
    assert usage.exit_code == 2


def test_principals_tokens_and_force_delete(run: Run, api_server: str) -> None:
    principal_id = unique("svc")
    run("principal", "create", "--principal-id", principal_id, "--type", "service_account",
        "--groups", "backend-team")
    assert principal_id in run("principal", "list", "--output", "text").stdout
    token = run("token", "create", "--principal-id", principal_id, "--output", "text").stdout.strip()
    assert token.startswith("vs_")
    whoami = CliRunner().invoke(cli, ["auth", "whoami"], env={"V_SECURE_TOKEN": token,
                                                              "V_SECURE_ENDPOINT": api_server})
    assert whoami.exit_code == 0 and principal_id in whoami.stdout
    tokens = as_json(run("token", "list", "--principal-id", principal_id))["tokens"]
    run("token", "revoke", "--principal-id", principal_id, "--token-id", tokens[0]["tokenId"])
    run("principal", "disable", "--principal-id", principal_id)
    assert as_json(run("principal", "get", "--principal-id", principal_id))["disabled"] is True
    secret_id = unique()
    run("secret", "store", "--secret-id", secret_id, "--type", "api_key", "--value", "sk_live_abcdefgh")
    assert as_json(run("secret", "delete", "--secret-id", secret_id, "--force-delete-without-recovery"))[
        "destroyed"] is True


def test_installed_console_script(api_server: str, root_token: str) -> None:
    script = os.path.join(os.path.dirname(sys.executable), "v-secure")
    env = {**os.environ, "V_SECURE_ENDPOINT": api_server, "V_SECURE_TOKEN": root_token}
    answer = subprocess.run([script, "health"], env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0 and '"ok"' in answer.stdout
