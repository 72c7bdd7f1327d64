"""The bench's own local stack: moto server, bootstrapped resources, the API server in-process.

The API server runs in threads of the bench process (as in the integration tests), so the
botocore hooks of :mod:`bench.roundtrips` see every AWS call it makes, and the service layer
can be measured without HTTP on the very same clients and caches. The moto server is a child
process (``chalicelib.local.moto_server``), so it does not share the bench's GIL.

Besides KMS, the stack reads envelopes wrapped by the passphrase provider
(``V_SECURE_KEY_PROVIDERS_READ=passphrase`` with a random bench-only passphrase): the scaling
part loads 100 000 secrets with locally wrapped data keys instead of 100 000 KMS calls.
Everything else is written with KMS, the default provider.

Example::

    with BenchStack.start() as stack:
        stack.http.post("/secrets", json={"secretId": "a", "type": "api_key", "value": "x" * 32})
"""

from __future__ import annotations

import os
import secrets as random
import shutil
import tempfile
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from chalicelib.access_control.context import Caller
    from chalicelib.local.server import ApiServer
    from chalicelib.local.stack import LocalAws

BENCH_PRINCIPAL = "bench-service"
BENCH_PREFIX = "bench/"
_ENV_KEYS = ("V_SECURE_CONFIG_DIR", "V_SECURE_AWS_ENDPOINT", "V_SECURE_KEY_PROVIDERS_READ",
             "V_SECURE_ENCRYPTION_KEY", "V_SECURE_RATE_LIMIT", "V_SECURE_LOG_LEVEL")


def secret_path(secret_id: str, *rest: str) -> str:
    """``/secrets/<url-encoded id>/...`` (ids may contain ``/``).

    Example::

        secret_path("prod/db", "versions")  # "/secrets/prod%2Fdb/versions"
    """
    return "/".join(["/secrets", quote(secret_id, safe=""), *rest])


def random_value(size: int = 48) -> str:
    """An ``api_key``-shaped value of ``size`` characters (the same size for every system)."""
    return random.token_urlsafe(size)[:size]


@dataclass
class BenchStack:
    """A running stack and keep-alive HTTP clients for the bench principal and for root."""

    aws: LocalAws
    api: ApiServer
    root: httpx.Client
    http: httpx.Client
    principal_id: str
    token: str
    config_dir: str
    saved_env: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def start(cls) -> BenchStack:
        """Start moto on a free loopback port, bootstrap, serve the API on a free port."""
        saved = {name: os.environ.get(name) for name in _ENV_KEYS}
        config_dir = tempfile.mkdtemp(prefix="v-secure-bench-")
        os.environ.update({
            "V_SECURE_CONFIG_DIR": config_dir,
            "V_SECURE_KEY_PROVIDERS_READ": "passphrase",
            "V_SECURE_ENCRYPTION_KEY": random.token_urlsafe(32),
            "V_SECURE_LOG_LEVEL": "WARNING",
        })
        os.environ.pop("V_SECURE_AWS_ENDPOINT", None)
        os.environ.pop("V_SECURE_RATE_LIMIT", None)

        from chalicelib.access_control.bootstrap import bootstrap_root
        from chalicelib.local.environment import reset_process_state
        from chalicelib.local.server import load_app, start_api_server
        from chalicelib.local.stack import start_local_aws

        reset_process_state()
        aws = start_local_aws(port=0)
        try:
            root_token = bootstrap_root()
            api = start_api_server(load_app(), "127.0.0.1", 0)
        except BaseException:
            aws.stop()
            raise
        root = _client(api.url, root_token)
        principal_id, token = _service_principal(root)
        return cls(aws=aws, api=api, root=root, http=_client(api.url, token), principal_id=principal_id,
                   token=token, config_dir=config_dir, saved_env=saved)

    @property
    def endpoint(self) -> str:
        """The moto server's URL."""
        return self.aws.endpoint

    def caller(self) -> Caller:
        """The bench principal as the service layer sees it (for in-process measurements)."""
        from chalicelib.access_control.auth import get_directory
        from chalicelib.access_control.context import Caller

        principal, token = get_directory().authenticate(f"Bearer {self.token}")
        return Caller(principal=principal, token_id=token.token_id, source_ip="127.0.0.1", request_id=None)

    def store(self, secret_id: str, value: str, **fields: Any) -> httpx.Response:
        """``POST /secrets`` as the bench principal; raises unless 201."""
        answer = self.http.post("/secrets", json={"secretId": secret_id, "value": value, **fields})
        _expect(answer, 201)
        return answer

    def retrieve(self, secret_id: str, **params: Any) -> httpx.Response:
        """``GET /secrets/{id}`` as the bench principal; raises unless 200."""
        answer = self.http.get(secret_path(secret_id), params=params)
        _expect(answer, 200)
        return answer

    def stop(self) -> None:
        """Close the clients, stop the API server and moto, restore the environment."""
        from chalicelib.local.environment import reset_process_state

        self.http.close()
        self.root.close()
        self.api.stop()
        self.aws.stop()
        for name, value in self.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_process_state()
        shutil.rmtree(self.config_dir, ignore_errors=True)

    def __enter__(self) -> BenchStack:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


class BenchError(RuntimeError):
    """The stack answered something the bench did not expect (the figures would be wrong)."""


def _expect(answer: httpx.Response, status: int) -> None:
    if answer.status_code != status:
        raise BenchError(f"{answer.request.method} {answer.request.url.path} answered "
                         f"{answer.status_code}: {answer.text[:300]}")


def _client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _service_principal(root: httpx.Client) -> tuple[str, str]:
    """A service account allowed to create secrets under ``bench/`` (it then owns them).

    Not a global admin: its requests go through per-secret RBAC and the prefix policy, as an
    application's would.
    """
    created = root.post("/principals", json={"principalId": BENCH_PRINCIPAL, "type": "service_account"})
    _expect(created, 201)
    issued = root.post(f"/principals/{BENCH_PRINCIPAL}/tokens", json={})
    _expect(issued, 201)
    policy = root.put("/policies/bench-writers", json={
        "pattern": f"{BENCH_PREFIX}*", "allow": {BENCH_PRINCIPAL: ["write"]},
        "description": "the bench service account creates its secrets under bench/"})
    _expect(policy, 200)
    return BENCH_PRINCIPAL, str(issued.json()["token"])
