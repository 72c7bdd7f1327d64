"""Test-wide setup: isolated config dir, dummy AWS credentials, and the local stack fixtures.

Environment for every test session (set in ``pytest_configure``):

- ``V_SECURE_CONFIG_DIR`` points at a fresh temporary directory, so no test reads or writes
  ``~/.v-secure``;
- dummy AWS credentials (``AWS_ACCESS_KEY_ID=testing`` ...), ``AWS_PROFILE`` removed, EC2
  metadata lookups off: tests can never reach a real account with real keys.

Session fixtures (started on first use, once per process, so once per xdist worker):

- ``local_aws`` -> the AWS endpoint URL. Starts moto on a free loopback port and bootstraps
  every resource. If ``V_SECURE_AWS_ENDPOINT`` is set (e.g. LocalStack) that endpoint is used
  instead, with per-run unique table/bucket/bus/key names so runs do not collide.
- ``aws_resources`` -> the :class:`~chalicelib.local.bootstrap.BootstrapResult` (queue URL, ARNs).
- ``api_server`` -> ``"http://127.0.0.1:PORT"``: ``app.py`` served by
  :class:`~chalicelib.local.server.LocalApiServer` in background threads, on a free port.
- ``root_token`` -> a root (admin) bearer token from ``bootstrap_root()``.

Convention, "service unavailable" skips: a test or fixture that cannot run because something
outside the code under test is missing (moto not installed, LocalStack down, no database
server) calls ``pytest.skip("service unavailable: <what>: <why>")`` (see
:func:`service_unavailable`). Normally that is a skip. With ``V_SECURE_REQUIRE_SERVICES=1``
(set in CI, where every service must be there) such a skip is reported as a failure, so a
broken CI environment cannot pass silently. Other skips are left alone.

Example::

    def test_health(api_server: str) -> None:
        assert httpx.get(f"{api_server}/health").status_code == 200
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from chalicelib.local.bootstrap import BootstrapResult
    from chalicelib.local.stack import LocalAws

# Records every AWS call the application makes and checks it against infra/iam-policy.json.
pytest_plugins = ("tests.aws_actions",)

REQUIRE_SERVICES_ENV = "V_SECURE_REQUIRE_SERVICES"
SERVICE_UNAVAILABLE = "service unavailable:"

_DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}
_config_dir: str | None = None


def service_unavailable(what: str, why: object) -> NoReturn:
    """Skip (or, with ``V_SECURE_REQUIRE_SERVICES=1``, fail) because ``what`` is not there.

    Example::

        service_unavailable("PostgreSQL", "connection refused on 127.0.0.1:5432")
    """
    pytest.skip(f"{SERVICE_UNAVAILABLE} {what}: {why}")


def pytest_configure(config: pytest.Config) -> None:
    global _config_dir
    _config_dir = tempfile.mkdtemp(prefix="v-secure-test-config-")
    os.environ["V_SECURE_CONFIG_DIR"] = _config_dir
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(_DUMMY_AWS)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _config_dir is not None:
        shutil.rmtree(_config_dir, ignore_errors=True)


def _requires_services() -> bool:
    return os.environ.get(REQUIRE_SERVICES_ENV, "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                               ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Turn "service unavailable:" skips into failures when ``V_SECURE_REQUIRE_SERVICES=1``."""
    report = yield
    if not (report.skipped and call.excinfo is not None and _requires_services()):
        return report
    reason = str(getattr(call.excinfo.value, "msg", "") or "")
    if reason.startswith(SERVICE_UNAVAILABLE):
        report.outcome = "failed"
        report.longrepr = f"{reason}\n({REQUIRE_SERVICES_ENV} is set: a missing service is a failure)"
    return report


# --- the local stack ------------------------------------------------------------------------

_NAME_SETTINGS = ("V_SECURE_SECRETS_TABLE", "V_SECURE_AUDIT_TABLE", "V_SECURE_AUDIT_BUCKET",
                  "V_SECURE_EVENT_BUS", "V_SECURE_KMS_KEY_ID", "V_SECURE_AUDIT_SIGNING_KEY_ID")


def _unique_names(run: str) -> dict[str, str]:
    """Per-run resource names for a shared external endpoint (LocalStack)."""
    return {
        "V_SECURE_SECRETS_TABLE": f"v-secure-secrets-{run}",
        "V_SECURE_AUDIT_TABLE": f"v-secure-audit-{run}",
        "V_SECURE_AUDIT_BUCKET": f"v-secure-audit-{run}",
        "V_SECURE_EVENT_BUS": f"v-secure-{run}",
        "V_SECURE_KMS_KEY_ID": f"alias/v-secure-data-{run}",
        "V_SECURE_AUDIT_SIGNING_KEY_ID": f"alias/v-secure-audit-signing-{run}",
    }


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalAws]:
    """Moto (or ``V_SECURE_AWS_ENDPOINT``) with every resource bootstrapped; see the module doc."""
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError

        from chalicelib.local.environment import reset_process_state
        from chalicelib.local.moto_server import MotoServerError
        from chalicelib.local.stack import start_local_aws
    except ImportError as error:
        service_unavailable("local AWS stack", error)

    saved = {name: os.environ.get(name) for name in ("V_SECURE_AWS_ENDPOINT", *_NAME_SETTINGS)}
    external = os.environ.get("V_SECURE_AWS_ENDPOINT") or None
    if external:
        os.environ.update(_unique_names(uuid.uuid4().hex[:10]))
    try:
        stack = start_local_aws(endpoint=external, port=0)
    except (MotoServerError, BotoConnectionError) as error:
        _restore(saved)
        service_unavailable(f"AWS endpoint {external or '(embedded moto)'}", error)
    try:
        yield stack
    finally:
        stack.stop()
        _restore(saved)
        reset_process_state()


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def local_aws(local_stack: LocalAws) -> str:
    """The AWS endpoint URL every client of this process now uses (``http://127.0.0.1:PORT``)."""
    return local_stack.endpoint


@pytest.fixture(scope="session")
def aws_resources(local_stack: LocalAws) -> BootstrapResult:
    """What the bootstrap created: table names, key ARNs, bucket, bus, events queue URL."""
    return local_stack.resources


@pytest.fixture(scope="session")
def api_server(local_aws: str) -> Iterator[str]:
    """``app.py`` served on a free port on 127.0.0.1; yields ``http://127.0.0.1:PORT``."""
    from chalicelib.local.server import load_app, start_api_server

    api = start_api_server(load_app(), "127.0.0.1", 0)
    try:
        yield api.url
    finally:
        api.stop()


@pytest.fixture(scope="session")
def root_token(local_aws: str) -> str:
    """A bearer token of the root principal (created on first use)."""
    from chalicelib.access_control.bootstrap import bootstrap_root

    return bootstrap_root()
