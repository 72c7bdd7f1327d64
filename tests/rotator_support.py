"""Test support for the rotators.

:class:`LoopbackServer`: a tiny HTTP server on 127.0.0.1, in a thread, standing in for a provider
(key issuer, token endpoint, check URL).

Routes map ``(method, path)`` to a handler that gets the :class:`Seen` request and returns
``(status, body)``; a dict body is sent as JSON, a str as text. Every request is recorded.

Example::

    with LoopbackServer() as server:
        server.route("POST", "/keys", lambda seen: (200, {"key": "sk_test_123456789"}))
        httpx.post(server.url("/keys"))
        server.seen[0].json()
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(self.body.decode()).items()}


Handler = Callable[[Seen], tuple[int, dict[str, Any] | str]]


class LoopbackServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.seen: list[Seen] = []
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length))
                server.seen.append(seen)
                handler = server.routes.get((self.command, self.path))
                status, body = handler(seen) if handler else (404, {"error": "no_route"})
                payload = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
                self.send_response(status)
                self.send_header("content-type", "application/json" if isinstance(body, dict) else "text/plain")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def calls(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == path]

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def rotate_like_engine(rotator: Any, ctx: Any, *, store: Callable[[str], Any]) -> str:
    """The engine's steps in order, without its state machine: generate, apply, test, then ``store``
    (the new value becomes CURRENT) and revoke the old value. A failed test revokes the new value,
    stores nothing and re-raises.

    Example::

        new = rotate_like_engine(ROTATOR, ctx, store=lambda value: api.store(secret_id, value))
    """
    from dataclasses import replace

    from chalicelib.rotation.rotators.base import RotationTestFailed

    new = rotator.generate(ctx)
    rotator.apply(ctx, new)
    try:
        rotator.test(ctx, new)
    except RotationTestFailed:
        rotator.revoke(ctx, new)
        raise
    store(new)
    if ctx.current_value is not None:
        rotator.revoke(replace(ctx, current_value=new), ctx.current_value)
    return new
