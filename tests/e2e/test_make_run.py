"""The dev stack as `make run` starts it, driven with the installed `v-secure` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

VENV_BIN = Path(sys.executable).parent


def _wait_for_profile(path: Path, process: subprocess.Popen[str], timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dev stack exited early: {process.stdout.read() if process.stdout else ''}")
        if path.exists():
            profile: dict[str, str] = json.loads(path.read_text())["dev"]
            try:
                if httpx.get(f"{profile['endpoint']}/health", timeout=2).status_code == 200:
                    return profile
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    raise AssertionError("dev stack did not become healthy")


@pytest.fixture
def dev_stack(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, str], dict[str, str]]:
    env = {**os.environ, "V_SECURE_CONFIG_DIR": str(tmp_path), "V_SECURE_PORT": "0", "V_SECURE_AWS_PORT": "0"}
    for name in ("V_SECURE_AWS_ENDPOINT", "V_SECURE_ENDPOINT", "V_SECURE_TOKEN", "V_SECURE_PROFILE"):
        env.pop(name, None)
    process = subprocess.Popen([sys.executable, "-m", "chalicelib.local"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        profile = _wait_for_profile(tmp_path / "profiles.json", process)
        yield process, profile, env
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_make_run_serves_the_cli_walkthrough_and_stops_on_ctrl_c(
        dev_stack: tuple[subprocess.Popen[str], dict[str, str], dict[str, str]], tmp_path: Path) -> None:
    process, profile, env = dev_stack
    assert oct((tmp_path / "profiles.json").stat().st_mode & 0o777) == "0o600"
    assert profile["token"].startswith("vs_")

    def cli(*args: str) -> str:
        done = subprocess.run([str(VENV_BIN / "v-secure"), *args], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    cli("secret", "store", "--secret-id", "db_password", "--type", "database_credential",
        "--value", "super_secret_password_123", "--metadata", "database=production_db",
        "--tags", "production,critical")
    assert json.loads(cli("secret", "get", "--secret-id", "db_password"))["value"] == "super_secret_password_123"
    cli("secret", "store", "--secret-id", "db_password", "--value", "second")
    cli("secret", "rollback", "--secret-id", "db_password", "--version", "1")
    assert json.loads(cli("secret", "get", "--secret-id", "db_password", "--version", "2"))["value"] == "second"
    assert "db_password" in cli("secret", "list", "--output", "text")

    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert profile["endpoint"] in output and "memory" in output.lower()
    assert profile["token"] not in output  # the token goes to the profile, not the terminal
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{profile['endpoint']}/health", timeout=2)
