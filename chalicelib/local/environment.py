"""Point this process at a local AWS endpoint and forget everything built for the old one.

Used by ``python -m chalicelib.local`` and by the test fixtures, so both switch endpoints the
same way: set ``V_SECURE_AWS_ENDPOINT``, give boto3 dummy credentials when the endpoint is
local, then reset the cached settings, the cached boto3 clients and the service singletons
that hold a client.

Example::

    use_endpoint("http://127.0.0.1:4566")
    client("dynamodb")  # now talks to the local endpoint
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from chalicelib.aws import reset_clients
from chalicelib.config import reset_settings

logger = logging.getLogger(__name__)

DUMMY_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

# Process-wide singletons keep boto3 clients or settings. By convention each such module has
# a module-level ``reset_*()`` function; every imported chalicelib module's resets are called
# (a module not imported holds no state), so a new cached service needs no registration here.
_NOT_SINGLETONS = frozenset({"reset_settings", "reset_clients", "reset_process_state"})


def _singleton_resets() -> list[Callable[[], None]]:
    resets: list[Callable[[], None]] = []
    for name, module in sorted(sys.modules.items()):
        if not name.startswith("chalicelib.") or module is None:
            continue
        for attribute, value in vars(module).items():
            if (attribute.startswith("reset_") and attribute not in _NOT_SINGLETONS and callable(value)
                    and getattr(value, "__module__", None) == name):
                resets.append(value)
    return resets


def set_dummy_credentials(*, force: bool = False) -> bool:
    """Give boto3 dummy credentials unless some are already set (or always, with ``force``).

    Returns True when the dummies were set. Then the EC2 metadata lookup is turned off too,
    as it otherwise costs a timeout on machines outside EC2.

    Example::

        set_dummy_credentials()  # AWS_ACCESS_KEY_ID=testing ... if none were set
    """
    if not force and (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        return False
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(DUMMY_CREDENTIALS)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    return True


def is_local_endpoint(endpoint: str) -> bool:
    """True for endpoints on this machine or a LocalStack container (where dummy keys work).

    Example::

        is_local_endpoint("http://localhost.localstack.cloud:4566")  # True
        is_local_endpoint("https://dynamodb.eu-west-1.amazonaws.com")  # False
    """
    host = (urlsplit(endpoint).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost") or "localstack" in host:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reset_process_state() -> None:
    """Forget cached settings, boto3 clients and service singletons (after env changes).

    Example::

        os.environ["V_SECURE_SECRETS_TABLE"] = "other"
        reset_process_state()
    """
    reset_settings()
    reset_clients()
    for reset in _singleton_resets():
        reset()


def use_endpoint(endpoint: str, *, dummy_credentials: bool | None = None) -> None:
    """Send every AWS call of this process to ``endpoint`` (moto, LocalStack).

    ``dummy_credentials`` (default: when the endpoint is local) sets dummy AWS keys if none
    are set.

    Example::

        use_endpoint("http://127.0.0.1:4566")
    """
    os.environ["V_SECURE_AWS_ENDPOINT"] = endpoint
    if dummy_credentials is None:
        dummy_credentials = is_local_endpoint(endpoint)
    if dummy_credentials:
        set_dummy_credentials()
    reset_process_state()
    logger.debug("AWS endpoint is now %s", endpoint)
