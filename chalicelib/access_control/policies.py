"""Constraints on top of RBAC: IP allow-lists, MFA and rate limits (per secret and global).

:func:`enforce` runs after RBAC allowed a request. It raises :class:`AccessDenied` (with
``ip_not_allowed``, ``mfa_required``, ``mfa_invalid``), and returns the DynamoDB items (the
rate counter, and with ``defer_mfa`` the MFA code's time-step claim) that must commit in the
same transaction as the request's audit event. When that transaction is cancelled,
:func:`constraint_refusal` tells an MFA replay (403) from a rate limit (429).

Checks run cheapest first and in a fixed order: global then per-secret IP allow-list, then
MFA, then the rate limit. The request's address is the TCP peer API Gateway saw
(``X-Forwarded-For`` only counts behind ``V_SECURE_TRUSTED_PROXIES``; see ``api/http.py``).

Example::

    items = enforce(caller, record.constraints, secret_id=record.secret_id, defer_mfa=True)
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
            table: str | None = None, now: float | None = None,
            defer_mfa: bool = False) -> list[dict[str, Any]]:
    """Check IP, MFA and rate limit for ``caller`` on ``secret_id``; return the items to commit.

    Without ``defer_mfa`` a valid MFA code is claimed right away (for requests that do not
    hand the items to their own transaction).
    """
    settings = get_settings()
    constraints = constraints or {}
    items = check_address_and_mfa(caller, constraints, defer_mfa=defer_mfa)
    rate = constraints.get("rate_limit") or settings.rate_limit
    if rate:
        items.append(rate_counter_item(caller.principal_id, secret_id, RateLimit.parse(rate),
                                       table or settings.secrets_table, now if now is not None else time.time()))
    return items


def check_address_and_mfa(caller: Caller, constraints: dict[str, Any] | None = None, *,
                          mfa_exempt: bool = False, defer_mfa: bool = False) -> list[dict[str, Any]]:
    """The global then the per-secret IP allow-list, then MFA (global or per-secret).

    ``mfa_exempt`` is for the routes that manage one's own MFA (enrolling needs no code yet).
    Returns the MFA claim items when ``defer_mfa``, else ``[]`` (the code was claimed).
    """
    settings = get_settings()
    constraints = constraints or {}
    if not ip_allowed(caller.source_ip, settings.ip_whitelist):
        raise AccessDenied("request from an address outside the service's IP allow-list",
                           reason="ip_not_allowed")
    if not ip_allowed(caller.source_ip, constraints.get("ip_whitelist") or []):
        raise AccessDenied("request from an address outside the secret's IP allow-list",
                           reason="ip_not_allowed")
    if mfa_exempt or not (settings.require_mfa or constraints.get("require_mfa")):
        return []
    from chalicelib.access_control.mfa import verify_request_code

    return verify_request_code(caller, defer=defer_mfa)


def constraint_refusal(caller: Caller, items: Sequence[dict[str, Any]],
                       reasons: Sequence[str]) -> AccessDenied | None:
    """The 403 for a transaction cancelled by an MFA claim (replayed code, lock-out), else None.

    ``reasons`` are the cancellation codes of ``items``, in order. None means the rate
    counter refused: the caller answers 429.
    """
    from chalicelib.access_control.mfa import classify, get_mfa_service

    if classify(items, reasons) is None:
        return None
    return get_mfa_service().refusal(caller, items, reasons)


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
