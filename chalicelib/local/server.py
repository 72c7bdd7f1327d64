"""HTTP/1.1 server for the Chalice app, for the dev stack and the tests.

It uses ``chalice.local``'s ``LocalGateway`` (routing, authorizers, CORS preflight, the
API Gateway proxy event) and fixes what makes ``chalice local`` unfit for measuring anything:

- **No 40 ms stalls on keep-alive.** ``chalice local`` writes the headers and the body in
  separate ``send`` calls without ``TCP_NODELAY``, so Nagle + delayed ACK hold every response
  on a reused connection for ~40 ms. Here accepted sockets get ``TCP_NODELAY`` and the response
  is buffered (``wbufsize = -1``; ``BaseHTTPRequestHandler`` flushes once per request), so a
  response normally leaves in one write.
- **The real client address.** ``requestContext.identity.sourceIp`` is the TCP peer, not a
  hard-coded ``127.0.0.1``; ``requestContext.requestId`` is a fresh UUID per request (also sent
  back as ``x-amzn-RequestId``).
- **One gateway per server**, not one per request, and ``app.current_request`` is per thread
  (as ``chalice local`` does it), since requests run concurrently (a thread per connection).
- ``HEAD`` answers carry no body, ``Expect: 100-continue`` works, chunked request bodies are read.

Listening addresses: one per :class:`LocalApiServer` (IPv4 or IPv6, chosen from the host).
It binds exactly the address it is given; the dev stack and the tests use loopback only. To see
another client address in a test, connect *from* another loopback address (on Linux all of
127.0.0.0/8 is local), e.g. ``httpx.HTTPTransport(local_address="127.0.0.2")``; the server
does not need to listen there. :func:`start_api_server` can also listen on extra addresses
(``extra_hosts``, same port) when a test needs to connect *to* e.g. 127.0.0.2.

Example::

    from app import app
    from chalicelib.local.server import start_api_server

    with start_api_server(app, "127.0.0.1", 0) as api:
        httpx.get(f"{api.url}/health").json()  # {"status": "ok"}
"""

from __future__ import annotations

import base64
import importlib
import ipaddress
import logging
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from chalice.app import Chalice, Request
from chalice.config import Config
from chalice.local import (
    LambdaEventConverter,
    LocalGateway,
    LocalGatewayException,
    RouteMatcher,
)

from chalicelib.local.moto_server import endpoint_url

logger = logging.getLogger(__name__)
access_logger = logging.getLogger(f"{__name__}.access")

# --- the app: per-thread request state ------------------------------------------------------

class _ThreadLocalRequestState:
    """Mixin: ``current_request`` and ``lambda_context`` kept per thread (like ``LocalChalice``)."""

    def _v_secure_local(self) -> threading.local:
        state: threading.local = self.__dict__.setdefault("_v_secure_thread_state", threading.local())
        return state

    @property
    def current_request(self) -> Request | None:
        return getattr(self._v_secure_local(), "current_request", None)

    @current_request.setter
    def current_request(self, value: Request | None) -> None:
        self._v_secure_local().current_request = value

    @property
    def lambda_context(self) -> Any:
        return getattr(self._v_secure_local(), "lambda_context", None)

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        self._v_secure_local().lambda_context = value


def make_thread_safe(app: Chalice) -> Chalice:
    """Give ``app`` per-thread ``current_request``/``lambda_context`` (in place; idempotent).

    Chalice stores the current request on the app object, which is right in Lambda (one
    request at a time) and wrong in a threaded server. Like ``chalice local``, this swaps the
    app's class for a subclass with thread-local properties.

    Example::

        make_thread_safe(app).current_request  # None outside a request
    """
    cls = type(app)
    if issubclass(cls, _ThreadLocalRequestState):
        return app
    app.__dict__.pop("current_request", None)
    app.__dict__.pop("lambda_context", None)
    app.__class__ = type(f"ThreadSafe{cls.__name__}", (_ThreadLocalRequestState, cls), {})
    return app


# --- the gateway: the Lambda proxy event with the real client -------------------------------

class ClientAwareEventConverter(LambdaEventConverter):
    """``LambdaEventConverter`` that fills in the real ``sourceIp`` and a fresh ``requestId``.

    The per-request values come from ``scope`` (a ``threading.local`` set by the gateway),
    because one converter serves every thread.

    Example::

        scope = threading.local(); scope.source_ip = "127.0.0.2"; scope.request_id = "r-1"
        converter = ClientAwareEventConverter(RouteMatcher(["/health"]), [], scope)
        converter.create_lambda_event("GET", "/health", {})["requestContext"]["identity"]
    """

    def __init__(self, route_matcher: RouteMatcher, binary_types: list[str] | None,
                 scope: threading.local) -> None:
        super().__init__(route_matcher, binary_types)
        self._scope = scope

    def create_lambda_event(self, method: str, path: str, headers: dict[str, str],
                            body: bytes | None = None) -> dict[str, Any]:
        event = super().create_lambda_event(method, path, headers, body)
        context = event["requestContext"]
        context["requestId"] = getattr(self._scope, "request_id", None) or str(uuid.uuid4())
        context["requestTimeEpoch"] = int(time.time() * 1000)
        context["protocol"] = getattr(self._scope, "protocol", "HTTP/1.1")
        context["identity"] = {
            "sourceIp": getattr(self._scope, "source_ip", None) or self.LOCAL_SOURCE_IP,
            "userAgent": headers.get("user-agent"),
        }
        return event


class ClientAwareGateway(LocalGateway):
    """``LocalGateway`` whose events carry the caller's address and a request id.

    Build one per server; :meth:`handle_request` is safe to call from many threads.

    Example::

        gateway = ClientAwareGateway(app, Config.create(chalice_stage="local"))
        gateway.handle_request("GET", "/health", {}, None, source_ip="127.0.0.2")
    """

    def __init__(self, app_object: Chalice, config: Config) -> None:
        super().__init__(app_object, config)
        self._scope = threading.local()
        self.event_converter = ClientAwareEventConverter(
            RouteMatcher(list(app_object.routes)), app_object.api.binary_types, self._scope)

    def handle_request(self, method: str, path: str, headers: dict[str, Any], body: bytes | None,
                       *, source_ip: str | None = None, request_id: str | None = None,
                       protocol: str = "HTTP/1.1") -> dict[str, Any]:
        self._scope.source_ip = source_ip
        self._scope.request_id = request_id
        self._scope.protocol = protocol
        try:
            return super().handle_request(method, path, headers, body)
        finally:
            self._scope.source_ip = self._scope.request_id = None


def gateway_config(app: Chalice, stage: str = "local") -> Config:
    """The chalice ``Config`` the gateway needs (function name, timeout, memory).

    Example::

        gateway_config(app).lambda_timeout  # None: the gateway then allows 900 s
    """
    return Config.create(chalice_stage=stage, app_name=app.app_name)


def client_ip(address: str) -> str:
    """The client address as API Gateway reports it (IPv4-mapped IPv6 shown as IPv4).

    Example::

        client_ip("::ffff:127.0.0.2")  # "127.0.0.2"
    """
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


# --- HTTP -----------------------------------------------------------------------------------

class ApiRequestHandler(BaseHTTPRequestHandler):
    """One connection: parse HTTP/1.1 requests, dispatch through the server's gateway."""

    protocol_version = "HTTP/1.1"
    wbufsize = -1  # buffered: headers + body leave in one write when the request is done
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: LocalApiServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def handle_expect_100(self) -> bool:
        self.send_response_only(100)
        self.end_headers()
        self.wfile.flush()  # the buffered writer would otherwise hold the 100 Continue
        return True

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("content-length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else None

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65537)

    def _dispatch(self) -> None:
        request_id = str(uuid.uuid4())
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._respond(400, {}, b'{"code": "invalid_request", "message": "bad request body framing"}',
                          request_id)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            response = self.server.gateway.handle_request(
                self.command, self.path, headers, body, source_ip=client_ip(self.client_address[0]),
                request_id=request_id, protocol=self.request_version)
        except LocalGatewayException as error:
            self._respond(error.CODE, dict(error.headers), error.body, request_id)
            return
        except Exception:
            logger.exception("unhandled error serving %s %s", self.command, self.path.split("?")[0])
            self._respond(500, {}, b'{"code": "internal_error", "message": "internal server error"}',
                          request_id)
            return
        response_headers: dict[str, Any] = dict(response.get("headers") or {})
        response_headers.update(response.get("multiValueHeaders") or {})
        payload = response.get("body")
        if response.get("isBase64Encoded") and payload is not None:
            payload = base64.b64decode(payload)
        self._respond(int(response["statusCode"]), response_headers, payload, request_id)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _respond(self, status: int, headers: dict[str, Any], body: str | bytes | None,
                 request_id: str) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        self.send_response(status)
        content_type = None
        for name in [name for name in headers if name.lower() in ("content-type", "content-length")]:
            value = headers.pop(name)
            if name.lower() == "content-type":
                content_type = value
        if body is not None:
            self.send_header("Content-Type", content_type or "application/json")
        elif content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", request_id)
        for name, value in headers.items():
            for item in value if isinstance(value, list) else [value]:
                self.send_header(name, str(item))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        access_logger.info("%s %s", self.client_address[0], format % args)


class LocalApiServer(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server for one Chalice app on one address (IPv4 or IPv6).

    Example::

        server = LocalApiServer(app, "127.0.0.1", 0)
        server.start()            # serves in a daemon thread
        print(server.url)         # http://127.0.0.1:39211
        server.stop()
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, app: Chalice, host: str = "127.0.0.1", port: int = 0, *,
                 stage: str = "local", gateway: ClientAwareGateway | None = None) -> None:
        self.app = make_thread_safe(app)
        self.gateway = gateway or ClientAwareGateway(self.app, gateway_config(self.app, stage))
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.connections_accepted = 0
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), ApiRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can take
        # seconds on some machines; the name is not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def host(self) -> str:
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of this listener."""
        return endpoint_url(self.host, self.port)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        """Book-keeping of open connections, so :meth:`stop` can close idle keep-alives."""
        with self._open_lock:
            if open_:
                self.connections_accepted += 1
                self._open.add(connection)
            else:
                self._open.discard(connection)

    def start(self) -> threading.Thread:
        """Serve in a daemon thread; returns it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                            name=f"api-server {self.url}", daemon=True)
            self._thread.start()
        return self._thread

    def stop(self) -> None:
        """Stop accepting, close open connections, release the port. Safe to call twice."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        with self._open_lock:
            open_connections = list(self._open)
        for connection in open_connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.server_close()


class ApiServer:
    """One or more :class:`LocalApiServer` listeners on the same port, sharing one gateway.

    Example::

        api = start_api_server(app, "127.0.0.1", 8000, extra_hosts=["127.0.0.2"])
        api.urls   # ["http://127.0.0.1:8000", "http://127.0.0.2:8000"]
        api.stop()
    """

    def __init__(self, listeners: list[LocalApiServer]) -> None:
        self.listeners = listeners

    @property
    def url(self) -> str:
        return self.listeners[0].url

    @property
    def urls(self) -> list[str]:
        return [listener.url for listener in self.listeners]

    @property
    def port(self) -> int:
        return self.listeners[0].port

    def stop(self) -> None:
        for listener in self.listeners:
            listener.stop()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def load_app() -> Chalice:
    """The project's Chalice ``app`` (imported from ``app.py`` on first use)."""
    app: Chalice = importlib.import_module("app").app
    return app


def start_api_server(app: Chalice | None = None, host: str | None = None, port: int | None = None,
                     *, extra_hosts: Iterable[str] = (), stage: str | None = None) -> ApiServer:
    """Start serving ``app`` (default: ``app.py``'s) in background threads.

    ``host``/``port`` default to ``V_SECURE_HOST``/``V_SECURE_PORT``; port 0 picks a free port,
    which the ``extra_hosts`` listeners then share.

    Example::

        api = start_api_server(port=0)
        httpx.get(f"{api.url}/health")
        api.stop()
    """
    from chalicelib.config import get_settings

    settings = get_settings()
    app = app if app is not None else load_app()
    stage = stage or settings.stage
    first = LocalApiServer(app, settings.host if host is None else host,
                           settings.port if port is None else port, stage=stage)
    listeners = [first]
    try:
        for extra in extra_hosts:
            listeners.append(LocalApiServer(first.app, extra, first.port, gateway=first.gateway))
    except BaseException:
        for listener in listeners:
            listener.server_close()
        raise
    for listener in listeners:
        listener.start()
    return ApiServer(listeners)


@contextmanager
def serving(app: Chalice, host: str = "127.0.0.1", port: int = 0) -> Iterator[LocalApiServer]:
    """Serve ``app`` for the duration of a ``with`` block (handy in tests).

    Example::

        with serving(test_app) as server:
            httpx.get(f"{server.url}/whoami")
    """
    server = LocalApiServer(app, host, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
