"""Domain errors, one per failure a caller can act on, and their single mapping to HTTP.

Every error carries a stable ``code`` (machine-readable), an HTTP ``status`` and a message
that never contains a secret value.

Example::

    raise VersionConflict("expected version 3 but the current version is 4")
"""

from __future__ import annotations

from typing import Any, ClassVar


class VSecureError(Exception):
    """Base of every error v-secure reports to a caller."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidRequest(VSecureError):
    status, code = 400, "invalid_request"


class InvalidSecretValue(InvalidRequest):
    code = "invalid_secret_value"


class Unauthenticated(VSecureError):
    status, code = 401, "unauthenticated"


class AccessDenied(VSecureError):
    """403. ``reason`` is the machine-readable deny reason (also audited)."""

    status, code = 403, "access_denied"

    def __init__(self, message: str, *, reason: str = "permission_denied", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        body["reason"] = self.reason
        return body


class NotFound(VSecureError):
    status, code = 404, "not_found"


class SecretNotFound(NotFound):
    code = "secret_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class Conflict(VSecureError):
    status, code = 409, "conflict"


class VersionConflict(Conflict):
    code = "version_conflict"


class SecretExists(Conflict):
    code = "secret_exists"


class SecretDeleted(Conflict):
    code = "secret_deleted"


class RotationInProgress(Conflict):
    code = "rotation_in_progress"


class PayloadTooLarge(VSecureError):
    status, code = 413, "payload_too_large"


class RateLimited(VSecureError):
    status, code = 429, "rate_limited"


class DependencyUnavailable(VSecureError):
    """503: a backend (KMS, DynamoDB, S3, the audit log, a key provider) failed."""

    status, code = 503, "dependency_unavailable"

    def __init__(self, dependency: str, message: str, **kwargs: Any) -> None:
        super().__init__(f"{dependency}: {message}", details={"dependency": dependency}, **kwargs)
        self.dependency = dependency


class AuditUnavailable(DependencyUnavailable):
    code = "audit_unavailable"

    def __init__(self, message: str = "the audit log could not be written; request refused") -> None:
        super().__init__("audit", message)


class DecryptionFailed(VSecureError):
    """An envelope failed authentication: tampered, moved to another secret, or wrong key."""

    status, code = 500, "decryption_failed"


class KeyUnavailable(DependencyUnavailable):
    code = "key_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__("key_provider", message)
