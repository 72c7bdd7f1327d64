"""HTTP calls to the providers the rotators talk to (key issuers, token endpoints, check URLs).

Rules every call follows:

* only ``https://`` URLs, or ``http://`` to a loopback host (a local test server or sidecar);
* a timeout on every call and no redirects (a redirect could carry a key to another host);
* failures name the dependency and the host, never the URL's query, a header or a body,
  because those can hold keys. A network error, a timeout or a 5xx answer is
  :class:`~chalicelib.errors.DependencyUnavailable` (the engine retries the step later).

Example::

    hook = HttpHook("api_key provider", transport=None)
    answer = hook.send("POST", "https://keys.example/new", json={"secretId": "stripe"})
    answer.status_code, answer.json()
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from chalicelib.errors import DependencyUnavailable
from chalicelib.rotation.rotators._common import RotationConfigInvalid

DEFAULT_TIMEOUT_SECONDS = 10.0
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_ANSWER_BYTES = 64 * 1024


def check_url(url: str, option: str) -> str:
    """``url`` if it is ``https://`` (or ``http://`` to loopback); otherwise :class:`RotationConfigInvalid`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or not host or any(char.isspace() for char in url):
        raise RotationConfigInvalid(f"rotation option '{option}' is not a valid URL")
    if parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS):
        return url
    raise RotationConfigInvalid(f"rotation option '{option}' must be an https:// URL (http:// only to localhost)")


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "?"


class HttpHook:
    """Sends requests to one kind of provider; ``dependency`` names it in errors and logs."""

    def __init__(self, dependency: str, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.dependency = dependency
        self._transport = transport
        self._timeout = timeout

    def send(self, method: str, url: str, *, headers: dict[str, str] | None = None,
             json: Any = None, data: dict[str, str] | None = None) -> httpx.Response:
        """One request; a 5xx answer or a transport failure raises ``DependencyUnavailable``."""
        try:
            with httpx.Client(transport=self._transport, timeout=self._timeout, follow_redirects=False) as client:
                answer = client.request(method, url, headers=headers, json=json, data=data)
                answer.read()
        except httpx.TimeoutException:
            raise DependencyUnavailable(self.dependency, f"{host_of(url)} did not answer in time") from None
        except httpx.HTTPError:
            raise DependencyUnavailable(self.dependency, f"{host_of(url)} could not be reached") from None
        if answer.status_code >= 500:
            raise DependencyUnavailable(self.dependency, f"{host_of(url)} answered HTTP {answer.status_code}")
        if len(answer.content) > MAX_ANSWER_BYTES:
            raise DependencyUnavailable(self.dependency, f"{host_of(url)} answered more than {MAX_ANSWER_BYTES} bytes")
        return answer


def json_object(answer: httpx.Response) -> dict[str, Any] | None:
    """The answer's body as a JSON object, or None if it is not one."""
    try:
        body = answer.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
