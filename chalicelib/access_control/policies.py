"""Constraints on top of RBAC: IP allow-lists, MFA and rate limits (per secret and global).

:func:`enforce` runs after RBAC allowed a request. It raises :class:`AccessDenied` (with
``ip_not_allowed``, ``mfa_required``, ``mfa_invalid``) or :class:`RateLimited`, and returns
the DynamoDB items (the rate counter) that must commit in the same transaction as the
request's audit event.

Example::

    items = enforce(caller, record.constraints, secret_id=record.secret_id)
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.access_control.context import Caller
from chalicelib.config import get_settings
from chalicelib.errors import AccessDenied, InvalidRequest

_RATE = re.compile(r"^\s*(\d+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour)|:\s*(\d+))\s*$")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window_seconds: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"100/min"``, ``"10/s"`` or ``"100:60"`` (requests : seconds)."""
        match = _RATE.match(text)
        if not match or int(match.group(1)) <= 0:
            raise InvalidRequest(f"rate limit {text!r} is not like '100/min' or '100:60'")
        window = _PER[match.group(2)] if match.group(2) else int(match.group(3))
        if window <= 0:
            raise InvalidRequest(f"rate limit {text!r} has an empty window")
        return cls(int(match.group(1)), window)


def validate_constraints(constraints: dict[str, Any] | None) -> None:
    """Reject malformed CIDRs or rate limits before they are stored."""
    if not constraints:
        return
    for cidr in constraints.get("ip_whitelist") or []:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidRequest(f"ip_whitelist entry {cidr!r} is not a CIDR") from None
    if constraints.get("rate_limit"):
        RateLimit.parse(constraints["rate_limit"])


def ip_allowed(source_ip: str | None, allow_list: Sequence[str]) -> bool:
    if not allow_list:
        return True
    if not source_ip:
        return False
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in allow_list)


def enforce(caller: Caller, constraints: dict[str, Any] | None, *, secret_id: str,
            table: str | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """Check IP, MFA and rate limit for ``caller`` on ``secret_id``; return the counter item(s)."""
    settings = get_settings()
    constraints = constraints or {}
    if not ip_allowed(caller.source_ip, settings.ip_whitelist) or not ip_allowed(
            caller.source_ip, constraints.get("ip_whitelist") or []):
        raise AccessDenied("request from an address outside the secret's IP allow-list",
                           reason="ip_not_allowed")
    if settings.require_mfa or constraints.get("require_mfa"):
        from chalicelib.access_control.mfa import verify_request_code

        verify_request_code(caller)
    rate = constraints.get("rate_limit") or settings.rate_limit
    if not rate:
        return []
    return [rate_counter_item(caller.principal_id, secret_id, RateLimit.parse(rate),
                              table or settings.secrets_table, now if now is not None else time.time())]


def rate_counter_item(principal_id: str, secret_id: str, rate: RateLimit, table: str,
                      now: float) -> dict[str, Any]:
    """A fixed-window counter that refuses to pass ``rate.limit`` (its condition cancels the transaction)."""
    window = int(now // rate.window_seconds)
    return {"Update": {
        "TableName": table,
        "Key": {"pk": {"S": f"RATE#{principal_id}#{secret_id}"}, "sk": {"S": f"W#{rate.window_seconds}#{window}"}},
        "UpdateExpression": "ADD hits :one SET #ttl = if_not_exists(#ttl, :ttl)",
        "ConditionExpression": "attribute_not_exists(hits) OR hits < :limit",
        "ExpressionAttributeNames": {"#ttl": "ttl"},
        "ExpressionAttributeValues": {":one": {"N": "1"}, ":limit": {"N": str(rate.limit)},
                                      ":ttl": {"N": str((window + 2) * rate.window_seconds)}},
    }}


def retry_after(rate_text: str, now: float | None = None) -> int:
    rate = RateLimit.parse(rate_text)
    now = time.time() if now is None else now
    return max(1, int(rate.window_seconds - now % rate.window_seconds) + 1)
