"""TOTP multi-factor authentication (RFC 6238, pyotp)."""

from __future__ import annotations

from chalicelib.access_control.context import Caller
from chalicelib.errors import AccessDenied


def verify_request_code(caller: Caller) -> None:
    """Require a valid, unused TOTP code in ``X-VSecure-MFA`` for ``caller``."""
    if not caller.mfa_code:
        raise AccessDenied("this secret requires MFA: send a TOTP code in X-VSecure-MFA",
                           reason="mfa_required")
    mfa = caller.principal.mfa or {}
    if not mfa.get("active"):
        raise AccessDenied("MFA is required but not enrolled for this principal (v-secure auth mfa setup)",
                           reason="mfa_required")
    raise AccessDenied("MFA code verification is not available", reason="mfa_invalid")
