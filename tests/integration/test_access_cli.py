"""``v-secure access|group|policy`` against the real HTTP server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from chalicelib.cli.main import cli
from tests.integration.test_access_support import Client, api_process, totp_code

Run = Callable[..., Result]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def run(api_server: str, root_token: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("V_SECURE_ENDPOINT", api_server)
    monkeypatch.setenv("V_SECURE_TOKEN", root_token)
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True, token: str | None = None) -> Result:
        result = runner.invoke(cli, [*([] if token is None else ["--token", token]), *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, (args, result.output)
        return result

    return invoke


def out(result: Result) -> dict:
    return json.loads(result.stdout)


def test_access_commands(run: Run, api_server: str, root_token: str, tmp_path: Path) -> None:
    secret_id, other = unique("cli"), unique("svc")
    run("secret", "store", "--secret-id", secret_id, "--type", "api_key", "--value", "sk_live_abcdefgh1234")
    run("principal", "create", "--principal-id", other, "--type", "service_account")
    granted = out(run("access", "grant", "--secret-id", secret_id, "--to", other, "--permissions", "read,rotate"))
    assert granted["permissions"][other] == ["read", "rotate"]
    denied = out(run("access", "grant", "--secret-id", secret_id, "--to", other, "--permissions", "write", "--deny"))
    assert denied["deny"] == {other: ["write"]}
    assert out(run("access", "revoke", "--secret-id", secret_id, "--from", other, "--deny"))["deny"] == {}
    revoked = out(run("access", "revoke", "--secret-id", secret_id, "--from", other, "--permissions", "rotate"))
    assert revoked["permissions"][other] == ["read"]

    # The constraints bind this very command too: keep loopback in, or the next change is refused.
    constrained = out(run("access", "set-constraints", "--secret-id", secret_id, "--ip-whitelist",
                          "10.0.0.0/8,2001:db8::/32", "--ip-whitelist", "127.0.0.1/32", "--rate-limit", "100:60"))
    assert constrained["constraints"] == {"ip_whitelist": ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1/32"],
                                          "rate_limit": "100:60"}
    cleared = out(run("access", "set-constraints", "--secret-id", secret_id))
    assert "constraints" not in cleared

    document = tmp_path / "policy.json"
    document.write_text(json.dumps({"secret_id": secret_id, "permissions": {"backend-team": ["read"]},
                                    "constraints": {"require_mfa": False}}))
    put = out(run("access", "put", "--secret-id", secret_id, "--policy-file", str(document)))
    assert put["permissions"] == {"backend-team": ["read"]}
    table = run("access", "list", "--secret-id", secret_id, "--output", "table").stdout
    assert "backend-team" in table

    bad = run("access", "grant", "--secret-id", secret_id, "--to", other, "--permissions", "fly", ok=False)
    assert bad.exit_code == 2 and "unknown permission fly" in bad.output
    token = Client(api_server, root_token).post(f"/principals/{other}/tokens", {}).json()["token"]
    refused = run("access", "grant", "--secret-id", secret_id, "--to", other, "--permissions", "admin", ok=False,
                  token=token)
    assert refused.exit_code == 1 and "reason: permission_denied" in refused.stderr and refused.stdout == ""


def test_group_and_policy_commands(run: Run) -> None:
    team, member, name = unique("team"), unique("member"), unique("policy")
    run("principal", "create", "--principal-id", member)
    assert out(run("group", "add-member", "--group", team, "--principal-id", member)) == {
        "group": team, "members": [member]}
    assert {"group": team, "members": [member]} in out(run("group", "list"))["groups"]
    assert out(run("group", "list", "--group", team))["members"] == [member]
    assert out(run("group", "remove-member", "--group", team, "--principal-id", member))["members"] == []

    put = out(run("policy", "put", "--name", name, "--pattern", f"{team}/*", "--allow", f"{team}=read,rotate",
                  "--allow", "auditors=audit:read", "--deny", f"{member}=rotate", "--description", "team prefix"))
    assert (put["pattern"], put["allow"], put["deny"]) == (
        f"{team}/*", {team: ["read", "rotate"], "auditors": ["audit:read"]}, {member: ["rotate"]})
    assert out(run("policy", "get", "--name", name))["description"] == "team prefix"
    assert name in [p["name"] for p in out(run("policy", "list"))["policies"]]
    assert out(run("policy", "delete", "--name", name))["name"] == name
    missing = run("policy", "get", "--name", name, ok=False)
    assert missing.exit_code == 1 and "not_found" in missing.stderr
    bad = run("policy", "put", "--name", name, "--pattern", "x/*", "--allow", "no-equals-sign", ok=False)
    assert bad.exit_code == 2 and "NAME=PERMISSION" in bad.output


def test_every_command_takes_an_mfa_code_when_the_service_requires_one(
        api_server: str, root_token: str, local_aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``V_SECURE_REQUIRE_MFA`` admin commands need a code too: ``--mfa-code`` or ``V_SECURE_MFA_CODE``."""
    admin_id = unique("ops")
    root = Client(api_server, root_token)
    token = root.new_principal(admin_id, admin=True)
    root.close()
    admin = Client(api_server, token)
    seed = admin.enrol_mfa()  # used the previous step's code: the current and the next are fresh
    admin.close()
    runner = CliRunner()
    with api_process(local_aws, {"V_SECURE_REQUIRE_MFA": "true"}, tmp_path) as guarded:
        monkeypatch.setenv("V_SECURE_ENDPOINT", guarded)
        monkeypatch.setenv("V_SECURE_TOKEN", token)

        def invoke(*args: str) -> Result:
            return runner.invoke(cli, list(args), catch_exceptions=False)

        refused = invoke("principal", "list")
        assert refused.exit_code != 0 and "mfa_required" in refused.output
        assert invoke("auth", "whoami").exit_code == 0  # who one is, and one's own MFA, need no code
        code = totp_code(seed)
        listed = invoke("--mfa-code", code, "principal", "list")
        assert listed.exit_code == 0, listed.output
        assert admin_id in [p["principalId"] for p in json.loads(listed.stdout)["principals"]]
        replayed = invoke("principal", "list", "--mfa-code", code)  # global options go anywhere
        assert replayed.exit_code != 0 and "mfa_invalid" in replayed.output
        monkeypatch.setenv("V_SECURE_MFA_CODE", totp_code(seed, 1))
        assert invoke("group", "list").exit_code == 0
