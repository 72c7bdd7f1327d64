"""Health and API description routes (no authentication)."""

from __future__ import annotations

import threading
import time

from chalice import Blueprint, Response

from chalicelib.api.http import endpoint
from chalicelib.api.openapi import openapi_document
from chalicelib.config import get_settings
from chalicelib.errors import VSecureError

system_api = Blueprint(__name__)
_HEALTH_TTL = 30.0
_health: dict[str, object] = {}
_health_lock = threading.Lock()


def check_key_provider() -> dict[str, str]:
    """Wrap and unwrap a test key (cached briefly so health checks don't cost a KMS call each)."""
    from chalicelib.vault.keys import get_keyring

    with _health_lock:
        if time.monotonic() - float(_health.get("at", 0.0)) < _HEALTH_TTL:  # type: ignore[arg-type]
            return dict(_health["result"])  # type: ignore[call-overload]
        provider = get_settings().key_provider
        try:
            keyring = get_keyring()  # its first build is the start-up check
            keyring.check_health()
            result = {"status": "ok", "provider": keyring.name}
        except VSecureError as error:
            result = {"status": "failing", "provider": provider, "message": error.message}
        _health.update(at=time.monotonic(), result=result)
        return result


@system_api.route("/health", methods=["GET"])
@endpoint(public=True)
def health() -> Response:
    keys = check_key_provider()
    ok = keys["status"] == "ok"
    return Response(status_code=200 if ok else 503,
                    body={"status": "ok" if ok else "degraded", "checks": {"keyProvider": keys}})


@system_api.route("/openapi.json", methods=["GET"])
@endpoint(public=True)
def openapi() -> Response:
    return Response(status_code=200, body=openapi_document())
