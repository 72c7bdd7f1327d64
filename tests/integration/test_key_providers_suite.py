"""The core integration suite, run again with each other key provider: PKCS#11 (SoftHSM2) and passphrase.

``tests/conftest.py`` builds the stack from the environment, so a nested pytest run whose
environment selects another provider exercises every core test (``-k "secrets or cli"``) with
it, on its own moto server. The probe below runs in that nested run too and checks that the
secrets it writes really are wrapped by the expected provider. The main run (KMS) is the suite
itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from chalicelib.aws import client
from chalicelib.config import get_settings
from tests.integration.helpers import Api, unique
from tests.keys_support import KEY_LABEL, PIN, init_token, softhsm_module, write_conf

NESTED = "V_SECURE_KEYS_NESTED_SUITE"
EXPECT = "V_SECURE_KEYS_EXPECT_PROVIDER"
REPO = Path(__file__).resolve().parents[2]
SELECTION = "secrets or cli or provider_probe"
_STACK_SETTINGS = ("V_SECURE_AWS_ENDPOINT", "V_SECURE_SECRETS_TABLE", "V_SECURE_AUDIT_TABLE", "V_SECURE_AUDIT_BUCKET",
                   "V_SECURE_EVENT_BUS", "V_SECURE_KMS_KEY_ID", "V_SECURE_AUDIT_SIGNING_KEY_ID", "V_SECURE_CONFIG_DIR",
                   "SOFTHSM2_CONF")


def test_provider_probe_writes_with_the_configured_provider(api_server: str, root_token: str) -> None:
    provider = get_settings().key_provider
    assert provider == os.environ.get(EXPECT, provider)
    secret_id = unique("probe")
    assert Api(api_server, root_token).store(secret_id, "probe-value-1234", type="api_key").status_code == 201

    item = client("dynamodb").get_item(TableName=get_settings().secrets_table, ConsistentRead=True,
                                       Key={"pk": {"S": f"SECRET#{secret_id}"}, "sk": {"S": "V#0000000001"}})["Item"]
    assert item["envelope"]["M"]["kid"]["S"].startswith(f"{provider}:")
    check = httpx.get(f"{api_server}/health").json()["checks"]["keyProvider"]
    assert check == {"status": "ok", "provider": provider}


def _pkcs11_env(tmp_path: Path) -> dict[str, str] | str:
    module = softhsm_module()
    if module is None:
        return "service unavailable: softhsm2 not installed (.ci/install-softhsm.sh)"
    conf = write_conf(tmp_path / "softhsm")
    init_token(conf, "vs-suite")
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    env = {"SOFTHSM2_CONF": str(conf), "V_SECURE_KEY_PROVIDER": "pkcs11", "V_SECURE_PKCS11_MODULE": module,
           "V_SECURE_PKCS11_TOKEN_LABEL": "vs-suite", "V_SECURE_PKCS11_PIN_FILE": str(pin_file),
           "V_SECURE_PKCS11_KEY_LABEL": KEY_LABEL}
    created = subprocess.run([sys.executable, "-m", "chalicelib.vault.keys.pkcs11", "create-key"], cwd=REPO,
                             env=_child_env(env), capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"pkcs11:vs-suite/{KEY_LABEL}#1"
    return env


def _passphrase_env(tmp_path: Path) -> dict[str, str] | str:
    return {"V_SECURE_KEY_PROVIDER": "passphrase", "V_SECURE_ENCRYPTION_KEY": "suite passphrase of enough length",
            "V_SECURE_KEY_DERIVATION_ITERATIONS": "20000"}


def _child_env(provider_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _STACK_SETTINGS and not k.startswith(("V_SECURE_PKCS11_", "V_SECURE_KEY_", "PYTEST_"))}
    env.pop("V_SECURE_ENCRYPTION_KEY", None)
    return {**env, **provider_env, NESTED: "1", EXPECT: provider_env["V_SECURE_KEY_PROVIDER"]}


@pytest.mark.parametrize("provider", ["pkcs11", "passphrase"])
def test_core_suite_passes_with_provider(provider: str, tmp_path: Path) -> None:
    if os.environ.get(NESTED):
        pytest.skip("already inside a key-provider suite run")
    env = _pkcs11_env(tmp_path) if provider == "pkcs11" else _passphrase_env(tmp_path)
    if isinstance(env, str):
        pytest.skip(env)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests/integration", "-k", SELECTION,
         "-x"], cwd=REPO, env=_child_env(env), capture_output=True, text=True, timeout=900)

    lines = run.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    problems = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    report = "\n".join([f"with V_SECURE_KEY_PROVIDER={provider}:", *problems, summary, run.stderr[-2000:]])
    passed = re.search(r"(\d+) passed", summary)
    assert run.returncode == 0 and not problems, report
    assert passed is not None and int(passed.group(1)) > 0, report
    assert re.search(r"^PASSED .*test_provider_probe_writes_with_the_configured_provider", run.stdout, re.M), report
    assert not re.search(r"^PASSED .*test_core_suite_passes_with_provider", run.stdout, re.M), report
