"""The first-admin bootstrap writes the token to a 0600 file or profile and never prints it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from chalicelib.access_control import bootstrap_cli
from tests.cfn_template import REPO, load_template

TOKEN = "vs_" + "t0ken" * 8


@pytest.fixture(autouse=True)
def fake_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chalicelib.access_control.bootstrap.bootstrap_root", lambda ttl_seconds=None: TOKEN)


def test_token_file_is_0600_and_the_token_is_not_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    target = tmp_path / "root-token"
    assert bootstrap_cli.main(["--token-file", str(target)]) == 0
    assert target.read_text() == TOKEN + "\n"
    assert target.stat().st_mode & 0o777 == 0o600
    out, err = capsys.readouterr()
    assert str(target) in out
    assert TOKEN not in out + err + caplog.text


def test_an_existing_file_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "root-token"
    target.write_text("keep me")
    assert bootstrap_cli.main(["--token-file", str(target)]) == 1
    assert target.read_text() == "keep me"
    assert "exists" in capsys.readouterr().err


def test_profile_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("V_SECURE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert bootstrap_cli.main(["--profile", "prod", "--endpoint", "https://api.example.test/api"]) == 0
    profiles = tmp_path / "cfg" / "profiles.json"
    assert json.loads(profiles.read_text())["prod"] == {"endpoint": "https://api.example.test/api", "token": TOKEN}
    assert profiles.stat().st_mode & 0o777 == 0o600
    assert TOKEN not in capsys.readouterr().out


def test_stack_outputs_match_the_template() -> None:
    template = load_template(REPO / "infra" / "stateful.yaml")
    assert dict(bootstrap_cli.STACK_OUTPUT_SETTINGS) == template["Metadata"]["VSecure"]["EnvironmentOutputs"]
