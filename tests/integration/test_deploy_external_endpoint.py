"""The integration suite runs unchanged against an external endpoint (LocalStack, a real account).

``V_SECURE_AWS_ENDPOINT`` is the switch. Here a moto server of this test's own stands in for
LocalStack: a child pytest runs real integration tests with the variable pointing at it, and the
resources it used must be there, under the per-run names the fixtures pick for shared endpoints.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3

from tests.cfn_template import REPO
from tests.conftest import service_unavailable

TESTS = ["tests/integration/test_secrets_api.py::test_store_retrieve_versions_rollback",
         "tests/integration/test_secrets_api.py::test_path_like_ids"]


def test_integration_tests_accept_an_external_endpoint(tmp_path: Path) -> None:
    try:
        from chalicelib.local.moto_server import MotoServer, MotoServerError
    except ImportError as error:
        service_unavailable("moto server", error)
    try:
        external = MotoServer("127.0.0.1", 0).start()
    except MotoServerError as error:
        service_unavailable("moto server", error)
    try:
        env = {name: value for name, value in os.environ.items() if not name.startswith("V_SECURE_")}
        env.update(V_SECURE_AWS_ENDPOINT=external.endpoint, V_SECURE_REQUIRE_SERVICES="1",
                   V_SECURE_AWS_ACTIONS_DIR=str(tmp_path / "aws-actions"))
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "2 passed" in run.stdout
        dynamodb = boto3.client("dynamodb", endpoint_url=external.endpoint, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        tables = dynamodb.list_tables()["TableNames"]
        assert any(name.startswith("v-secure-secrets-") for name in tables), tables
        assert any(name.startswith("v-secure-audit-") for name in tables), tables
    finally:
        external.stop()
