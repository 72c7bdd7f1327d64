"""OpenAPI 3.1 document generated from the pydantic wire models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chalicelib import models as m

# (method, path, summary, request model, response model, success status)
OPERATIONS: list[tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, int]] = [
    ("get", "/health", "Service and key-provider health", None, None, 200),
    ("post", "/secrets", "Store a secret (new secret or new version)", m.StoreSecretRequest,
     m.StoreSecretResponse, 201),
    ("get", "/secrets", "List secrets (metadata only)", None, m.ListSecretsResponse, 200),
    ("get", "/secrets/{secretId}", "Retrieve a secret value", None, m.RetrieveSecretResponse, 200),
    ("get", "/secrets/{secretId}/metadata", "Describe a secret", None, m.SecretMetadata, 200),
    ("get", "/secrets/{secretId}/versions", "List versions", None, m.VersionsResponse, 200),
    ("post", "/secrets/{secretId}/rollback", "Move CURRENT to an earlier version", m.RollbackRequest,
     m.RollbackResponse, 200),
    ("delete", "/secrets/{secretId}", "Schedule deletion, or destroy with force=true", None,
     m.DeleteSecretResponse, 200),
    ("post", "/secrets/{secretId}/restore", "Cancel a scheduled deletion", None, m.RestoreSecretResponse, 200),
    ("post", "/principals", "Create a principal", m.CreatePrincipalRequest, m.PrincipalInfo, 201),
    ("get", "/principals", "List principals", None, m.PrincipalList, 200),
    ("get", "/principals/{principalId}", "Describe a principal", None, m.PrincipalInfo, 200),
    ("post", "/principals/{principalId}/disable", "Disable a principal", None, m.PrincipalInfo, 200),
    ("post", "/principals/{principalId}/enable", "Enable a principal", None, m.PrincipalInfo, 200),
    ("post", "/principals/{principalId}/tokens", "Create a token (shown once)", m.CreateTokenRequest,
     m.TokenCreated, 201),
    ("get", "/principals/{principalId}/tokens", "List tokens", None, m.TokenList, 200),
    ("delete", "/principals/{principalId}/tokens/{tokenId}", "Revoke a token", None, m.TokenInfo, 200),
    ("get", "/auth/whoami", "The calling principal", None, m.PrincipalInfo, 200),
]

_ERRORS = {"400": "Invalid request", "401": "Missing, invalid or expired token",
           "403": "Access denied (reason says which permission or constraint)", "404": "Not found",
           "409": "Conflict", "413": "Payload too large", "429": "Rate limited", "503": "Dependency unavailable"}


def register_operations(extra: list[tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, int]]
                        ) -> None:
    """Let other API areas add their operations to the document."""
    OPERATIONS.extend(extra)
    openapi_document.cache_clear()


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    models = {model for op in OPERATIONS for model in op[3:5] if model is not None} | {m.ErrorBody}
    _keys, schemas = models_json_schema([(model, "serialization") for model in models],
                                        ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, request, response, status in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(path, summary, request, response, status)
    return {
        "openapi": "3.1.0",
        "info": {"title": "v-secure", "version": "1"},
        "components": {"schemas": schemas.get("$defs", {}),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _operation(path: str, summary: str, request: type[BaseModel] | None, response: type[BaseModel] | None,
               status: int) -> dict[str, Any]:
    params = [{"name": part.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
              for part in path.split("/") if part.startswith("{")]
    operation: dict[str, Any] = {"summary": summary, "parameters": params, "responses": {
        str(status): {"description": "OK", **({"content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{response.__name__}"}}}} if response else {})},
        **{code: {"description": text, "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/ErrorBody"}}}} for code, text in _ERRORS.items()},
    }}
    if request is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{request.__name__}"}}}}
    return operation
