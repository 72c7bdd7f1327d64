"""Small helpers shared by the integration tests."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx


def unique(prefix: str = "it") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def secret_url(secret_id: str, *rest: str) -> str:
    return "/".join(["/secrets", quote(secret_id, safe=""), *rest])


class Api:
    """A keep-alive HTTP client for one principal."""

    def __init__(self, base_url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=30)

    def store(self, secret_id: str, value: str, **fields: Any) -> httpx.Response:
        return self.http.post("/secrets", json={"secretId": secret_id, "value": value, **fields})

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post(path, json=body or {})

    def delete(self, path: str, **params: Any) -> httpx.Response:
        return self.http.delete(path, params=params)

    def new_principal(self, name: str | None = None, **fields: Any) -> tuple[str, str]:
        """Create a principal and a token for it; returns (principal id, token)."""
        principal_id = name or unique("p")
        created = self.post("/principals", {"principalId": principal_id, **fields})
        assert created.status_code == 201, created.text
        token = self.post(f"/principals/{principal_id}/tokens", {})
        assert token.status_code == 201, token.text
        return principal_id, token.json()["token"]
