"""The embedded AWS: a moto server in a child process on loopback.

The child runs ``moto.server.ThreadedMotoServer`` (moto's public entry point) so moto and the API
server do not share a GIL. It binds first and then reports the port it got on its stdout, so
port 0 ("pick a free port") has no race. It exits when its stdin reaches end-of-file, which
happens when :meth:`MotoServer.stop` closes the pipe *and* when the parent dies for any reason
(even ``SIGKILL``), so a moto server never outlives the process that started it. The child runs
in its own session, so Ctrl-C reaches only the parent, which stops the child in order.

Requests are let into moto one at a time (:class:`SerializedWsgi`), because moto's DynamoDB
transactions are not atomic under concurrent requests.

Example::

    with MotoServer(port=0) as moto:
        print(moto.endpoint)  # http://127.0.0.1:43817
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_PORT = 4566
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 5.0


class MotoServerError(RuntimeError):
    """The moto server could not be started (moto missing, port taken, no answer)."""


def url_host(host: str) -> str:
    """``host`` as it goes in a URL: IPv6 literals get brackets.

    Example::

        url_host("::1")  # "[::1]"
    """
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def endpoint_url(host: str, port: int) -> str:
    """``http://host:port`` for ``host`` (IPv4, IPv6 or a name).

    Example::

        endpoint_url("127.0.0.1", 4566)  # "http://127.0.0.1:4566"
    """
    return f"http://{url_host(host)}:{port}"


def wait_until_answers(url: str, timeout: float = _START_TIMEOUT) -> None:
    """Poll ``url`` until any HTTP answer comes back (an error status counts as an answer).

    Example::

        wait_until_answers("http://127.0.0.1:4566/moto-api/", timeout=5)
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback URL we built
                return
        except urllib.error.HTTPError:
            return
        except OSError as error:
            last = error
            time.sleep(0.05)
    raise MotoServerError(f"{url} did not answer within {timeout:.0f}s: {last}")


class MotoServer:
    """A moto server in a child process; see the module docstring.

    Example::

        moto = MotoServer(host="127.0.0.1", port=0).start()
        try:
            boto3.client("s3", endpoint_url=moto.endpoint).list_buckets()
        finally:
            moto.stop()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 *, start_timeout: float = _START_TIMEOUT) -> None:
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The endpoint URL, e.g. ``http://127.0.0.1:4566`` (only after :meth:`start`)."""
        if self.port is None:
            raise MotoServerError("moto server not started")
        return endpoint_url(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> MotoServer:
        """Start the child, wait for its port and for an HTTP answer; return ``self``."""
        if self._process is not None:
            return self
        command = [sys.executable, "-m", "chalicelib.local.moto_server",
                   "--host", self.host, "--port", str(self.requested_port)]
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self.port = self._read_port()
            wait_until_answers(f"{self.endpoint}/moto-api/", self._start_timeout)
        except BaseException:
            self.stop()
            raise
        logger.debug("moto server listening on %s (pid %s)", self.endpoint, self._process.pid)
        return self

    def _read_port(self) -> int:
        process = self._process
        assert process is not None and process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], self._start_timeout)
        line = process.stdout.readline() if ready else b""
        if not line:
            code = process.poll()
            raise MotoServerError(
                f"moto server on {self.host}:{self.requested_port} did not start"
                + (f" (exit code {code}; is moto[server] installed and the port free?)"
                   if code is not None else " in time"))
        return int(json.loads(line)["port"])

    def stop(self) -> None:
        """Stop the child (close its stdin, then SIGTERM, then SIGKILL). Safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


class SerializedWsgi:
    """WSGI wrapper that lets one request at a time into moto (except long polls).

    moto's backends are not thread-safe: ``TransactWriteItems`` checks its conditions and
    writes without a lock, and rolls back a failed transaction by restoring a copy of the whole
    table, which also erases writes that other requests made meanwhile. Under concurrent
    writers that breaks DynamoDB's check-and-set guarantees (two winners, lost versions).
    Requests that may wait (SQS ``ReceiveMessage`` long polls) bypass the lock so they cannot
    stall everything else.

    Example::

        make_server(host, port, SerializedWsgi(DomainDispatcherApplication(create_backend_app)))
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    @staticmethod
    def may_wait(environ: dict[str, Any]) -> bool:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        return target.endswith(".ReceiveMessage") or "Action=ReceiveMessage" in str(
            environ.get("QUERY_STRING", ""))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.may_wait(environ):
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))


def _child_main(argv: list[str] | None = None) -> int:
    """Child process: serve moto, print ``{"port": N}``, exit when stdin closes."""
    import argparse

    parser = argparse.ArgumentParser(description="moto server that dies with its parent")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)

    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per AWS call
    try:
        app = SerializedWsgi(DomainDispatcherApplication(create_backend_app))
        server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    except OSError as error:
        print(f"moto server: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    port = int(server.server_address[1])
    os.environ["MOTO_PORT"] = str(port)  # moto builds some URLs (SQS queue URLs) from it
    thread = threading.Thread(target=server.serve_forever, name="moto-server", daemon=True)
    thread.start()
    sys.stdout.write(json.dumps({"port": port}) + "\n")
    sys.stdout.flush()
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
