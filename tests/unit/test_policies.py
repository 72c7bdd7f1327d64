"""Constraints: IP allow-lists, rate limits, and MFA as the vault service applies them (fakes only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest

from chalicelib.access_control import mfa as mfa_module
from chalicelib.access_control import policies
from chalicelib.access_control.auth import PrincipalRecord
from chalicelib.access_control.context import Caller
from chalicelib.access_control.mfa import MfaService
from chalicelib.access_control.policies import RateLimit, enforce, ip_allowed, retry_after, validate_constraints
from chalicelib.audit.events import Action, Status
from chalicelib.audit.stream import TransactionCancelled
from chalicelib.clock import FrozenClock
from chalicelib.config import Settings
from chalicelib.errors import AccessDenied, InvalidRequest, RateLimited
from chalicelib.models import StoreSecretRequest
from chalicelib.vault.service import VaultService
from tests.fakes import FakeKeyProvider, FakeRepository
from tests.unit.test_policies_mfa import CCF, FakeAudit, FakeDirectory, FakeLedger

SECRET = "canary-value-9f8e7d"


# --- parsing and matching -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "limit", "window"), [
    ("100/min", 100, 60), ("100:60", 100, 60), ("10/s", 10, 1), (" 5 / hour ", 5, 3600), ("1:86400", 1, 86400),
])
def test_rate_limits_parse(text: str, limit: int, window: int) -> None:
    assert RateLimit.parse(text) == RateLimit(limit, window)


@pytest.mark.parametrize("text", ["0/min", "100", "100/fortnight", "abc", "-1:60", "10:0", ""])
def test_bad_rate_limits_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        RateLimit.parse(text)


@pytest.mark.parametrize(("source", "allow", "allowed"), [
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("11.1.2.3", ["10.0.0.0/8"], False),
    ("127.0.0.2", ["127.0.0.1/32"], False),
    ("2001:db8::5", ["2001:db8::/32"], True),
    ("2001:db9::5", ["2001:db8::/32"], False),
    ("::ffff:10.0.0.5", ["10.0.0.0/8"], True),  # IPv4-mapped IPv6 is the IPv4 address
    ("10.0.0.5", ["2001:db8::/32", "10.0.0.0/8"], True),
    ("::1", ["127.0.0.0/8"], False),
    (None, ["10.0.0.0/8"], False),
    ("not-an-ip", ["10.0.0.0/8"], False),
    ("203.0.113.9", [], True),
])
def test_ip_allow_lists(source: str | None, allow: list[str], allowed: bool) -> None:
    assert ip_allowed(source, allow) is allowed


def test_constraints_are_validated_before_they_are_stored() -> None:
    validate_constraints({"ip_whitelist": ["10.0.0.0/8", "2001:db8::/32"], "rate_limit": "100/min"})
    with pytest.raises(InvalidRequest, match="CIDR"):
        validate_constraints({"ip_whitelist": ["10.0.0.0/33"]})
    with pytest.raises(InvalidRequest, match="rate limit"):
        validate_constraints({"rate_limit": "fast"})


def test_retry_after_is_the_rest_of_the_window() -> None:
    assert retry_after("100/min", now=120.0) == 61
    assert retry_after("100/min", now=179.5) == 1


def test_the_rate_counter_refuses_at_the_limit_and_expires() -> None:
    item = policies.rate_counter_item("alice", "db", RateLimit(100, 60), "secrets", now=125.0)["Update"]
    assert item["Key"] == {"pk": {"S": "RATE#alice#db"}, "sk": {"S": "W#60#2"}}
    assert item["ConditionExpression"] == "attribute_not_exists(hits) OR hits < :limit"
    assert item["ExpressionAttributeValues"][":limit"] == {"N": "100"}
    assert int(item["ExpressionAttributeValues"][":ttl"]["N"]) > 180


# --- through the vault service --------------------------------------------------------------


class MfaAwareRepository(FakeRepository):
    """FakeRepository whose read transactions also carry MFA claims, all-or-nothing."""

    def __init__(self, ledger: FakeLedger) -> None:
        super().__init__()
        self.ledger = ledger

    def record_event(self, draft: Any, extra_items: tuple[dict[str, Any], ...] = ()) -> Any:
        reasons = []
        for item in extra_items:
            if "Update" in item:
                key = item["Update"]["Key"]["pk"]["S"] + item["Update"]["Key"]["sk"]["S"]
                limit = int(item["Update"]["ExpressionAttributeValues"][":limit"]["N"])
                reasons.append(CCF if self.counters.get(key, 0) >= limit else "None")
            else:
                reasons.extend(self.ledger.reasons([item]))
        if CCF in reasons:
            raise TransactionCancelled(reasons)
        self.ledger.apply([i for i in extra_items if "Update" not in i])
        return super().record_event(draft, tuple(i for i in extra_items if "Update" in i))


class Stack:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = FrozenClock(datetime(2026, 1, 15, 10, 30, 5, tzinfo=UTC))
        self.ledger = FakeLedger()
        self.directory = FakeDirectory(self.ledger)
        self.repo = MfaAwareRepository(self.ledger)
        self.mfa = MfaService(self.directory, self.ledger, FakeKeyProvider(), FakeAudit(self.directory),  # type: ignore[arg-type]
                              clock=self.clock)
        self.vault = VaultService(self.repo, FakeKeyProvider(),  # type: ignore[arg-type]
                                  settings=Settings(), clock=self.clock)
        self.settings = Settings()
        monkeypatch.setattr(mfa_module, "get_mfa_service", lambda: self.mfa)
        monkeypatch.setattr(policies, "get_settings", lambda: self.settings)
        for name, admin in (("root", True), ("alice", False)):
            self.directory.principals[name] = PrincipalRecord(
                principal_id=name, admin=admin, created_at=datetime(2026, 1, 1, tzinfo=UTC), created_by="root")
        setup = self.mfa.setup(self.caller("alice"))
        self.seed = setup.secret
        self.mfa.activate(self.caller("alice"), self.code(-1))

    def caller(self, name: str, code: str | None = None, ip: str = "10.0.0.5") -> Caller:
        return Caller(principal=self.directory.require_principal(name), token_id="tok", source_ip=ip,
                      request_id="req", mfa_code=code)

    def code(self, steps: int = 0) -> str:
        return pyotp.TOTP(self.seed).at(self.clock.now().timestamp() + 30 * steps)

    def store(self, secret_id: str = "db", **constraints: Any) -> None:
        self.vault.store(self.caller("root"), StoreSecretRequest.model_validate({
            "secretId": secret_id, "value": SECRET, "type": "api_key", "access": {"alice": ["read"]},
            "constraints": constraints or None}))


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    yield Stack(monkeypatch)


def denied(stack: Stack) -> list[tuple[Action, str | None]]:
    return [(e.action, e.deny_reason) for e in stack.repo.events if e.status is Status.DENIED]


def test_a_read_claims_its_code_in_the_same_transaction_and_a_replay_is_refused(stack: Stack) -> None:
    stack.store(require_mfa=True)
    code = stack.code()
    assert stack.vault.retrieve(stack.caller("alice", code), "db").value == SECRET
    with pytest.raises(AccessDenied) as refused:
        stack.vault.retrieve(stack.caller("alice", code), "db")
    assert refused.value.reason == "mfa_invalid" and "already used" in refused.value.message
    assert denied(stack)[-1] == (Action.MFA_FAILED, "mfa_invalid")


def test_checks_run_ip_first_so_a_refused_request_does_not_burn_the_code(stack: Stack) -> None:
    stack.store(require_mfa=True, ip_whitelist=["10.0.0.0/8"])
    code = stack.code()
    with pytest.raises(AccessDenied) as refused:
        stack.vault.retrieve(stack.caller("alice", code, ip="192.0.2.7"), "db")
    assert refused.value.reason == "ip_not_allowed"
    assert stack.vault.retrieve(stack.caller("alice", code), "db").value == SECRET
    assert denied(stack) == [(Action.SECRET_READ, "ip_not_allowed")]


def test_no_code_or_a_wrong_code(stack: Stack) -> None:
    stack.store(require_mfa=True)
    with pytest.raises(AccessDenied) as missing:
        stack.vault.retrieve(stack.caller("alice"), "db")
    valid = {stack.code(s) for s in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in valid)
    with pytest.raises(AccessDenied) as bad:
        stack.vault.retrieve(stack.caller("alice", wrong), "db")
    assert (missing.value.reason, bad.value.reason) == ("mfa_required", "mfa_invalid")
    assert denied(stack) == [(Action.SECRET_READ, "mfa_required"), (Action.MFA_FAILED, "mfa_invalid")]
    assert SECRET not in repr(stack.repo.events)


def test_other_requests_claim_the_code_at_once(stack: Stack) -> None:
    stack.store(require_mfa=True)
    code = stack.code()
    stack.vault.describe(stack.caller("alice", code), "db")
    with pytest.raises(AccessDenied, match="already used"):
        stack.vault.describe(stack.caller("alice", code), "db")


def test_a_rate_limited_read_does_not_burn_the_code(stack: Stack) -> None:
    stack.store(require_mfa=True, rate_limit="1/hour")
    stack.vault.retrieve(stack.caller("alice", stack.code(0)), "db")
    code = stack.code(1)
    with pytest.raises(RateLimited) as limited:
        stack.vault.retrieve(stack.caller("alice", code), "db")
    assert int(limited.value.headers["Retry-After"]) > 0
    assert stack.mfa.check_request(stack.caller("alice", code)) == []  # still unused


def test_global_settings_apply_to_every_secret(stack: Stack) -> None:
    stack.store()
    stack.settings = Settings(require_mfa=True)
    with pytest.raises(AccessDenied) as no_code:
        stack.vault.retrieve(stack.caller("alice"), "db")
    assert no_code.value.reason == "mfa_required"
    with pytest.raises(AccessDenied) as root_too:  # constraints bind global admins as well
        stack.vault.retrieve(stack.caller("root"), "db")
    assert root_too.value.reason == "mfa_required"
    stack.settings = Settings(ip_whitelist=["172.16.0.0/12"])
    with pytest.raises(AccessDenied) as outside:
        stack.vault.retrieve(stack.caller("alice"), "db")
    assert outside.value.reason == "ip_not_allowed"
    stack.settings = Settings(rate_limit="1:60")
    stack.vault.retrieve(stack.caller("alice"), "db")
    with pytest.raises(RateLimited):
        stack.vault.retrieve(stack.caller("alice"), "db")


def test_enforce_returns_nothing_to_commit_without_constraints(stack: Stack) -> None:
    assert enforce(stack.caller("alice"), None, secret_id="db") == []
    items = enforce(stack.caller("alice", stack.code()), {"require_mfa": True, "rate_limit": "5/min"},
                    secret_id="db", table="secrets", defer_mfa=True)
    assert [next(iter(i)) for i in items] == ["Put", "ConditionCheck", "Update"]
