"""Bring up the AWS side of the dev stack: an embedded moto server or an external endpoint.

Shared by ``python -m chalicelib.local`` and the test fixtures.

Example::

    aws = start_local_aws(port=0)       # moto on a free loopback port, resources bootstrapped
    print(aws.endpoint, aws.resources.events_queue_url)
    aws.stop()
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from chalicelib.config import get_settings
from chalicelib.local.bootstrap import BootstrapResult, bootstrap_resources
from chalicelib.local.environment import set_dummy_credentials, use_endpoint
from chalicelib.local.moto_server import MotoServer

LOOPBACK = "127.0.0.1"


@dataclass
class LocalAws:
    """The AWS endpoint in use, what the bootstrap found, and the moto server if we own one."""

    endpoint: str
    resources: BootstrapResult
    moto: MotoServer | None = None

    @property
    def embedded(self) -> bool:
        """True when the endpoint is our own moto server (all data in memory)."""
        return self.moto is not None

    def stop(self) -> None:
        """Stop the moto server if we started one (an external endpoint is left alone)."""
        if self.moto is not None:
            self.moto.stop()


def start_local_aws(*, endpoint: str | None = None, port: int | None = None) -> LocalAws:
    """Use ``endpoint`` (default ``V_SECURE_AWS_ENDPOINT``) or start moto on loopback, then bootstrap.

    With the embedded moto server this process always uses dummy credentials (it talks to
    nothing else); with an external local endpoint (LocalStack) dummies are set only if no
    credentials are. ``port`` defaults to ``V_SECURE_AWS_PORT`` (0 = a free port).

    Example::

        aws = start_local_aws(endpoint="http://localhost:4566")  # LocalStack
    """
    external = endpoint or os.environ.get("V_SECURE_AWS_ENDPOINT") or None
    moto: MotoServer | None = None
    if external:
        use_endpoint(external)
        url = external
    else:
        moto = MotoServer(LOOPBACK, get_settings().aws_port if port is None else port).start()
        url = moto.endpoint
        set_dummy_credentials(force=True)
        use_endpoint(url, dummy_credentials=False)
    try:
        resources = bootstrap_resources(get_settings())
    except BaseException:
        if moto is not None:
            moto.stop()
        raise
    return LocalAws(endpoint=url, resources=resources, moto=moto)
