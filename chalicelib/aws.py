"""The one place boto3 clients are built.

Clients are built once per process and shared (boto3 clients are thread-safe). The endpoint
comes from ``V_SECURE_AWS_ENDPOINT`` so the same code talks to AWS, LocalStack or the
embedded moto server.

Example::

    from chalicelib.aws import client

    client("dynamodb").get_item(TableName="v-secure-secrets", Key=...)
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.config import get_settings

_lock = threading.RLock()
_clients: dict[str, Any] = {}
_session: boto3.session.Session | None = None

_CLIENT_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"},
    connect_timeout=2,
    read_timeout=10,
    max_pool_connections=50,
    tcp_keepalive=True,
)


def session() -> boto3.session.Session:
    """The process's boto3 session (one, so botocore event hooks see every client)."""
    global _session
    if _session is None:
        with _lock:
            if _session is None:
                _session = boto3.session.Session(region_name=get_settings().region)
    return _session


def client(service: str) -> Any:
    """A shared, lazily built client for ``service`` ("dynamodb", "kms", "s3", "events", ...)."""
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        if service not in _clients:
            settings = get_settings()
            _clients[service] = session().client(
                service,
                region_name=settings.region,
                endpoint_url=settings.aws_endpoint,
                config=_CLIENT_CONFIG,
            )
        return _clients[service]


def reset_clients() -> None:
    """Drop every cached client (after settings changed; used by tests and the local stack)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None
