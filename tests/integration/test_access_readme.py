"""The README's "Access control" walkthrough, run command by command against the local stack."""

from __future__ import annotations

import json
import re
import shlex
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from chalicelib.cli.main import cli
from chalicelib.vault.service import get_vault_service
from tests.integration.test_access_support import Client, secret_path, totp_code

README = Path(__file__).resolve().parents[2] / "README.md"
# Names the walkthrough creates; each run gets its own copies (the stack is shared by the session).
NAMES = ("db_password", "backend-team", "devops-team", "app-instance", "external-service", "alice", "bob")


def walkthrough() -> list[list[str]]:
    """The commands of the first ```bash block of the README's "## Access control" section."""
    section = README.read_text().split("\n## Access control\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the Access control section has no bash block"
    commands = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(shlex.split(line))
    return commands


def rename(words: list[str], suffix: str) -> list[str]:
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, NAMES)) + r")(?![\w-])")
    return [pattern.sub(lambda m: f"{m.group(1)}-{suffix}", word) for word in words]


def test_the_readme_walkthrough(api_server: str, root_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = walkthrough()
    assert len(commands) >= 10 and all(c[0] == "v-secure" for c in commands)
    assert commands[-1][-3:] == ["--require-mfa", "--rate-limit", "100/min"]
    suffix = uuid.uuid4().hex[:6]
    named = {name: f"{name}-{suffix}" for name in NAMES}
    monkeypatch.setenv("V_SECURE_ENDPOINT", api_server)
    monkeypatch.setenv("V_SECURE_TOKEN", root_token)
    runner = CliRunner()
    outputs = []
    for command in commands:
        args = rename(command[1:], suffix)
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
        outputs.append(json.loads(result.stdout))

    secret_id = named["db_password"]
    document = outputs[-1]
    assert document == {
        "secret_id": secret_id,
        "permissions": {
            named["app-instance"]: ["read"],
            named["backend-team"]: ["read", "rotate"],
            named["devops-team"]: ["delete", "read", "rotate", "write"],
            named["external-service"]: ["read", "rotate"],
            "root": ["admin"],
        },
        "deny": {},
        "constraints": {"ip_whitelist": ["10.0.0.0/8", "127.0.0.0/8"], "require_mfa": True, "rate_limit": "100/min"},
        "policies": [],
        "version": 1,
    }
    listed = next(o for c, o in zip(commands, outputs, strict=True) if c[1:3] == ["access", "list"])
    assert listed["permissions"] == document["permissions"] and "constraints" not in listed
    record = get_vault_service().repo.get(secret_id)
    assert record is not None and record.access == {k: list(v) for k, v in document["permissions"].items()}
    assert record.constraints == document["constraints"]
    root = Client(api_server, root_token)
    members = {g["group"]: g["members"] for g in root.get("/groups").json()["groups"]}
    assert members[named["backend-team"]] == [named["alice"]]
    assert members[named["devops-team"]] == [named["bob"]]

    # And the policy does what the README says (on loopback, inside 127.0.0.0/8).
    token = root.post(f"/principals/{named['app-instance']}/tokens", {}).json()["token"]
    app = Client(api_server, token)
    assert app.get(secret_path(secret_id)).json()["reason"] == "mfa_required"
    seed = app.enrol_mfa()
    assert app.get(secret_path(secret_id), mfa=totp_code(seed)).json()["value"] == "super_secret_password_123"
    write = app.store(secret_id, "new_password_456", type=None)
    assert (write.status_code, write.json()["reason"]) == (403, "permission_denied")
    for client in (root, app):
        client.close()
