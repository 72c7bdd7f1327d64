"""The ``v-secure`` CLI through click's CliRunner, against an ``httpx.MockTransport``."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from chalicelib.cli.context import CliState, emit, sdk
from chalicelib.cli.main import cli, register_module
from chalicelib.cli.output import render_text
from chalicelib.cli.profiles import save_profile

NOW = "2025-01-02T03:04:05Z"
SECRET = "correct-horse-battery-staple"
RETRIEVED = {"secretId": "prod/db", "value": SECRET, "version": 3, "type": "database_credential",
             "labels": ["current"], "audit": "evt_1"}

Handler = Callable[[httpx.Request], httpx.Response]


def summary(secret_id: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {"secretId": secret_id, "type": "api_key", "currentVersion": 1, "tags": tags or [],
            "updatedAt": NOW}


class Server:
    """Answers every request with ``respond(request)`` and records it."""

    def __init__(self, respond: Handler | dict[str, Any], status: int = 200) -> None:
        if callable(respond):
            self.respond = respond
        else:
            self.respond = lambda _request: httpx.Response(status, json=respond)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No V_SECURE_* from the developer's shell; profiles live in a temporary directory."""
    for name in ("V_SECURE_ENDPOINT", "V_SECURE_TOKEN", "V_SECURE_PROFILE", "V_SECURE_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("V_SECURE_CONFIG_DIR", str(tmp_path))
    return tmp_path


def run(server: Server, *args: str, endpoint: str | None = "http://vsecure.test", stdin: str | None = None,
        env: dict[str, str] | None = None) -> Result:
    prefix = ["--endpoint-url", endpoint] if endpoint else []
    state = CliState(transport=httpx.MockTransport(server))
    return CliRunner().invoke(cli, [*prefix, *args], obj=state, input=stdin, env=env)


# --- output formats ------------------------------------------------------------------------


def test_json_output_is_the_wire_form() -> None:
    server = Server(RETRIEVED)
    result = run(server, "secret", "get", "--secret-id", "prod/db", "--version", "3")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == RETRIEVED
    assert server.last.url.raw_path == b"/secrets/prod%2Fdb?version=3"
    assert result.stdout.startswith('{\n  "secretId"')


def test_text_output_of_get_is_only_the_value() -> None:
    result = run(Server(RETRIEVED), "--output", "text", "secret", "get", "--secret-id", "prod/db")
    assert result.exit_code == 0
    assert result.stdout == SECRET + "\n"


def test_table_output_has_key_value_rows() -> None:
    result = run(Server(RETRIEVED), "--output", "table", "secret", "get", "--secret-id", "prod/db")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any("secretId" in line and "prod/db" in line for line in lines)
    assert any("version" in line and "3" in line for line in lines)


def test_table_output_of_a_list_has_a_row_per_item() -> None:
    server = Server({"secrets": [summary("a/one", ["x", "y"]), summary("b/two")]})
    result = run(server, "--output", "table", "secret", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "secretId" in line)
    assert "currentVersion" in header
    assert any("a/one" in line and "x, y" in line for line in lines)
    assert any("b/two" in line for line in lines)


def test_table_cells_are_not_rich_markup() -> None:
    server = Server({"secrets": [summary("[bold]x")]})
    result = run(server, "--output", "table", "secret", "list")
    assert "[bold]x" in result.stdout


def test_text_output_is_tab_separated_like_the_aws_cli() -> None:
    server = Server({"secrets": [summary("a", ["t1", "t2"]), summary("b")]})
    result = run(server, "--output", "text", "secret", "list")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"SECRETS\ta\tapi_key\t1\t{NOW}\tFalse",
        "TAGS\tt1\tt2",
        f"SECRETS\tb\tapi_key\t1\t{NOW}\tFalse",
    ]


def test_render_text_of_scalars_and_lists() -> None:
    assert render_text(["a", "b", 3]) == "a\tb\t3"
    assert render_text({"ok": True, "n": None}) == "True\tNone"
    assert render_text("plain") == "plain"


def test_render_text_keeps_the_keys_of_nested_maps() -> None:
    form = {"secretId": "a", "labels": {"current": 2, "previous": 1},
            "access": {"group:ops": ["read", "rotate"]}, "tags": ["x"]}
    assert render_text(form).splitlines() == [
        "a", "LABELS\tcurrent\t2", "LABELS\tprevious\t1", "ACCESS\tgroup:ops\tread\trotate", "TAGS\tx",
    ]


def test_query_is_applied_to_the_json_form() -> None:
    server = Server({"secrets": [summary("a"), summary("b")]})
    result = run(server, "--query", "secrets[].secretId", "secret", "list")
    assert json.loads(result.stdout) == ["a", "b"]
    result = run(server, "--query", "secrets[].secretId", "--output", "text", "secret", "list")
    assert result.stdout == "a\tb\n"


def test_query_overrides_the_text_shortcut_of_get() -> None:
    result = run(Server(RETRIEVED), "--query", "version", "--output", "text", "secret", "get",
                 "--secret-id", "prod/db")
    assert result.stdout == "3\n"


def test_invalid_query_is_a_usage_error() -> None:
    server = Server({"status": "ok"})
    result = run(server, "--query", "secrets[", "health")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert server.requests == []


def test_global_options_may_follow_the_verb() -> None:
    server = Server({"secrets": [summary("a"), summary("b")]})
    result = run(server, "secret", "list", "--prefix", "p/", "--output", "text", "--query=secrets[].secretId")
    assert result.exit_code == 0, result.output
    assert result.stdout == "a\tb\n"
    assert server.last.url.params["prefix"] == "p/"


def test_option_values_are_never_taken_for_global_options() -> None:
    server = Server({"secretId": "x", "version": 1, "createdAt": NOW})
    result = run(server, "secret", "store", "--secret-id", "x", "--value", "--output")
    assert result.exit_code == 0, result.output
    assert json.loads(server.last.content)["value"] == "--output"
    assert json.loads(result.stdout)["version"] == 1


def test_output_format_from_the_environment() -> None:
    result = run(Server(RETRIEVED), "secret", "get", "--secret-id", "prod/db",
                 env={"V_SECURE_OUTPUT": "text"})
    assert result.stdout == SECRET + "\n"


# --- errors and exit codes -----------------------------------------------------------------


def test_api_errors_exit_1_with_the_code_on_stderr() -> None:
    conflict = {"code": "version_conflict", "message": "expected version 3 but the current version is 4"}
    server = Server(conflict, status=409)
    result = run(server, "secret", "store", "--secret-id", "db", "--value", SECRET, "--expected-version", "3")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "error (version_conflict): expected version 3 but the current version is 4\n"
    assert SECRET not in result.stderr


def test_access_denied_shows_the_reason() -> None:
    server = Server({"code": "access_denied", "message": "no read access", "reason": "permission_denied"},
                    status=403)
    result = run(server, "secret", "get", "--secret-id", "db")
    assert result.exit_code == 1
    assert result.stderr == "error (access_denied): no read access (reason: permission_denied)\n"


def test_rate_limited_shows_the_retry_delay() -> None:
    body = {"code": "rate_limited", "message": "slow down"}
    server = Server(lambda _request: httpx.Response(429, json=body, headers={"Retry-After": "12"}))
    result = run(server, "health")
    assert result.stderr == "error (rate_limited): slow down (retry after 12s)\n"


def test_unreachable_endpoint_exits_1() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    result = run(Server(refuse), "health")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error (endpoint_unreachable): cannot reach v-secure at http://vsecure.test")


def test_usage_errors_exit_2() -> None:
    server = Server({})
    for args in (["secret", "get"],
                 ["secret", "store", "--secret-id", "x", "--value", "a", "--value-stdin"],
                 ["secret", "store", "--secret-id", "x"],
                 ["secret", "delete", "--secret-id", "x", "--recovery-window-days", "7",
                  "--force-delete-without-recovery"],
                 ["secret", "store", "--secret-id", "x", "--value", "a", "--metadata", "novalue"],
                 ["token", "create", "--principal-id", "ci", "--ttl", "forever"],
                 ["--output", "xml", "health"]):
        result = run(server, *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == ""
    assert server.requests == []


def test_no_endpoint_anywhere_exits_2() -> None:
    result = run(Server({}), "health", endpoint=None)
    assert result.exit_code == 2
    assert result.stderr.startswith("error (not_configured): ")


# --- secret commands -----------------------------------------------------------------------


STORED = {"secretId": "prod/db", "version": 1, "createdAt": NOW}


def test_store_from_stdin_strips_one_trailing_newline() -> None:
    server = Server(STORED)
    result = run(server, "secret", "store", "--secret-id", "prod/db", "--value-stdin", stdin=SECRET + "\n")
    assert result.exit_code == 0, result.output
    assert json.loads(server.last.content)["value"] == SECRET
    assert SECRET not in result.stdout


def test_store_from_file_keeps_the_content(tmp_path: Path) -> None:
    pem = tmp_path / "cert.pem"
    pem.write_text("-----BEGIN-----\nabc\n-----END-----\n")
    server = Server(STORED)
    result = run(server, "secret", "store", "--secret-id", "tls", "--value-file", str(pem))
    assert result.exit_code == 0, result.output
    assert json.loads(server.last.content)["value"] == pem.read_text()


def test_store_options_become_the_request_body(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object"}')
    server = Server(STORED)
    result = run(server, "secret", "store", "--secret-id", "prod/cfg", "--type", "configuration",
                 "--value", '{"a": 1}', "--metadata", "team=core,owner=alice", "--metadata", "note=a,b",
                 "--tags", "b,a", "--tags", "c", "--expected-version", "0", "--description", "cfg",
                 "--reason", "initial", "--compliance", "PCI-DSS,SOX", "--value-schema-file", str(schema))
    assert result.exit_code == 0, result.output
    assert json.loads(server.last.content) == {
        "secretId": "prod/cfg", "value": '{"a": 1}', "type": "configuration",
        "metadata": {"team": "core", "owner": "alice", "note": "a,b"}, "tags": ["a", "b", "c"],
        "expectedVersion": 0, "description": "cfg", "reason": "initial", "compliance": ["PCI-DSS", "SOX"],
        "valueSchema": {"type": "object"},
    }


def test_list_follows_pagination() -> None:
    pages = {None: {"secrets": [summary("a")], "nextToken": "t1"}, "t1": {"secrets": [summary("b")]}}
    server = Server(lambda request: httpx.Response(200, json=pages[request.url.params.get("nextToken")]))
    result = run(server, "secret", "list", "--type", "api_key", "--tag", "x", "--include-deleted")
    assert result.exit_code == 0, result.output
    assert [item["secretId"] for item in json.loads(result.stdout)["secrets"]] == ["a", "b"]
    assert "nextToken" not in json.loads(result.stdout)
    params = server.requests[0].url.params
    assert (params["type"], params["tag"], params["includeDeleted"]) == ("api_key", "x", "true")


def test_list_max_items_returns_a_token_to_resume_from() -> None:
    def page(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params["limit"])
        start = int(request.url.params.get("nextToken", "0"))
        items = [summary(f"s{index}") for index in range(start, start + limit)]
        return httpx.Response(200, json={"secrets": items, "nextToken": str(start + limit)})

    server = Server(page)
    result = run(server, "secret", "list", "--max-items", "3", "--page-size", "2")
    body = json.loads(result.stdout)
    assert [item["secretId"] for item in body["secrets"]] == ["s0", "s1", "s2"]
    assert body["nextToken"] == "3"
    assert [request.url.params["limit"] for request in server.requests] == ["2", "1"]
    resumed = json.loads(run(server, "secret", "list", "--max-items", "1", "--starting-token", "3").stdout)
    assert resumed["secrets"][0]["secretId"] == "s3"


@pytest.mark.parametrize(("args", "method", "raw_path"), [
    (["secret", "metadata", "--secret-id", "a/b"], "GET", b"/secrets/a%2Fb/metadata"),
    (["secret", "describe", "--secret-id", "a/b"], "GET", b"/secrets/a%2Fb/metadata"),
    (["secret", "versions", "--secret-id", "a/b"], "GET", b"/secrets/a%2Fb/versions"),
    (["secret", "rollback", "--secret-id", "a/b", "--version", "2"], "POST", b"/secrets/a%2Fb/rollback"),
    (["secret", "delete", "--secret-id", "a/b", "--recovery-window-days", "7"], "DELETE",
     b"/secrets/a%2Fb?recoveryWindowDays=7"),
    (["secret", "delete", "--secret-id", "a/b", "--force-delete-without-recovery"], "DELETE",
     b"/secrets/a%2Fb?force=true"),
    (["secret", "restore", "--secret-id", "a/b"], "POST", b"/secrets/a%2Fb/restore"),
    (["secret", "get", "--secret-id", "a/b", "--stage", "previous", "--mfa-code", "123456"], "GET",
     b"/secrets/a%2Fb?stage=previous"),
    (["principal", "create", "--principal-id", "ci", "--type", "service_account"], "POST", b"/principals"),
    (["principal", "list"], "GET", b"/principals"),
    (["principal", "get", "--principal-id", "ci"], "GET", b"/principals/ci"),
    (["principal", "disable", "--principal-id", "ci"], "POST", b"/principals/ci/disable"),
    (["principal", "enable", "--principal-id", "ci"], "POST", b"/principals/ci/enable"),
    (["token", "create", "--principal-id", "ci"], "POST", b"/principals/ci/tokens"),
    (["token", "list", "--principal-id", "ci"], "GET", b"/principals/ci/tokens"),
    (["token", "revoke", "--principal-id", "ci", "--token-id", "t1"], "DELETE", b"/principals/ci/tokens/t1"),
    (["auth", "whoami"], "GET", b"/auth/whoami"),
    (["health"], "GET", b"/health"),
])
def test_every_command_calls_its_route(args: list[str], method: str, raw_path: bytes) -> None:
    server = Server({"code": "not_found", "message": "stub"}, status=404)
    result = run(server, *args)
    assert result.exit_code == 1, result.output
    assert (server.last.method, server.last.url.raw_path) == (method, raw_path)


def test_get_sends_the_mfa_header() -> None:
    server = Server(RETRIEVED)
    run(server, "secret", "get", "--secret-id", "db", "--mfa-code", "123456")
    assert server.last.headers["X-VSecure-MFA"] == "123456"


# --- principals and tokens -----------------------------------------------------------------


PRINCIPAL = {"principalId": "ci", "type": "service_account", "groups": ["deployers", "ops"], "admin": True,
             "createdAt": NOW, "createdBy": "root"}


def test_principal_create_body() -> None:
    server = Server(PRINCIPAL, status=201)
    result = run(server, "principal", "create", "--principal-id", "ci", "--type", "service_account",
                 "--groups", "deployers,ops", "--admin")
    assert result.exit_code == 0, result.output
    assert json.loads(server.last.content) == {"principalId": "ci", "type": "service_account",
                                               "groups": ["deployers", "ops"], "admin": True}
    assert json.loads(result.stdout)["principalId"] == "ci"


def test_token_create_prints_the_token_once() -> None:
    created = {"tokenId": "t1", "principalId": "ci", "createdAt": NOW, "token": "vs_new_token"}
    server = Server(created, status=201)
    result = run(server, "--output", "text", "token", "create", "--principal-id", "ci", "--ttl", "30d")
    assert result.exit_code == 0, result.output
    assert result.stdout == "vs_new_token\n"
    assert "shown once" in result.stderr
    assert json.loads(server.last.content) == {"ttlSeconds": 30 * 86400}
    result = run(server, "token", "create", "--principal-id", "ci")
    assert json.loads(result.stdout)["token"] == "vs_new_token"


# --- connection settings: flag > environment > profile ------------------------------------


def host_and_auth(server: Server) -> tuple[str, str | None]:
    return server.last.url.host, server.last.headers.get("Authorization")


def test_profile_is_used_when_nothing_else_is_given() -> None:
    save_profile("dev", endpoint="http://dev.test", token="vs_dev")
    server = Server({"status": "ok"})
    assert run(server, "health", endpoint=None).exit_code == 0
    assert host_and_auth(server) == ("dev.test", "Bearer vs_dev")


def test_environment_beats_profile_and_flag_beats_environment() -> None:
    save_profile("dev", endpoint="http://dev.test", token="vs_dev")
    server = Server({"status": "ok"})
    env = {"V_SECURE_ENDPOINT": "http://env.test", "V_SECURE_TOKEN": "vs_env"}
    run(server, "health", endpoint=None, env=env)
    assert host_and_auth(server) == ("env.test", "Bearer vs_env")
    run(server, "--token", "vs_flag", "health", endpoint="http://flag.test", env=env)
    assert host_and_auth(server) == ("flag.test", "Bearer vs_flag")


def test_named_profile_from_flag_or_environment() -> None:
    save_profile("dev", endpoint="http://dev.test", token="vs_dev")
    save_profile("prod", endpoint="http://prod.test", token="vs_prod")
    server = Server({"status": "ok"})
    run(server, "health", endpoint=None, env={"V_SECURE_PROFILE": "prod"})
    assert host_and_auth(server) == ("prod.test", "Bearer vs_prod")
    run(server, "--profile", "dev", "health", endpoint=None, env={"V_SECURE_PROFILE": "prod"})
    assert host_and_auth(server) == ("dev.test", "Bearer vs_dev")


def test_default_profile_token_is_not_sent_to_another_endpoint() -> None:
    save_profile("dev", endpoint="http://dev.test", token="vs_dev")
    server = Server({"status": "ok"})
    run(server, "health", endpoint="http://elsewhere.test")
    assert host_and_auth(server) == ("elsewhere.test", None)
    run(server, "--profile", "dev", "health", endpoint="http://elsewhere.test")
    assert host_and_auth(server) == ("elsewhere.test", "Bearer vs_dev")


def test_unknown_profile_is_reported() -> None:
    result = run(Server({}), "--profile", "nope", "health", endpoint=None)
    assert result.exit_code == 2
    assert "'nope'" in result.stderr


# --- extensions ----------------------------------------------------------------------------


def test_other_modules_can_add_a_command_group() -> None:
    @click.group("rotation")
    def rotation() -> None:
        pass

    @rotation.command("status")
    @click.option("--secret-id", required=True)
    @click.pass_context
    def status(ctx: click.Context, secret_id: str) -> None:
        emit(ctx, sdk(ctx).request("GET", f"/secrets/{secret_id}/rotation"))

    module = types.ModuleType("tests_fake_rotation_cli")
    module.register = lambda root: root.add_command(rotation)  # type: ignore[attr-defined]
    register_module(module)
    try:
        server = Server({"enabled": True, "strategy": "rolling"})
        result = run(server, "rotation", "status", "--secret-id", "db", "--output", "text")
        assert result.exit_code == 0, result.output
        assert result.stdout == "True\trolling\n"
        assert server.last.url.path == "/secrets/db/rotation"
    finally:
        cli.commands.pop("rotation")
