"""TOTP MFA against in-memory fakes of the directory, the step ledger and the audit log."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest

from chalicelib.access_control.auth import PrincipalRecord
from chalicelib.access_control.context import Caller
from chalicelib.access_control.mfa import (
    MAX_FAILED_CODES,
    MfaLedger,
    MfaService,
    classify,
    matching_step,
    seed_context,
)
from chalicelib.audit.events import Action, AuditDraft, Status
from chalicelib.audit.stream import TransactionCancelled
from chalicelib.clock import FrozenClock
from chalicelib.errors import AccessDenied, Conflict, DecryptionFailed, InvalidRequest
from chalicelib.vault.encryption import Envelope, open_envelope
from tests.fakes import FakeKeyProvider

CCF = "ConditionalCheckFailed"


class FakeLedger(MfaLedger):
    """The real item builders; conditions evaluated in memory, all-or-nothing."""

    def __init__(self) -> None:
        super().__init__(None, "secrets")
        self.used: set[tuple[str, str]] = set()
        self.failures: dict[tuple[str, str], int] = {}

    def reasons(self, items: Sequence[dict[str, Any]]) -> list[str]:
        reasons = []
        for item in items:
            if "Put" in item:
                key = (item["Put"]["Item"]["pk"]["S"], item["Put"]["Item"]["sk"]["S"])
                reasons.append(CCF if key in self.used else "None")
            else:
                check = item["ConditionCheck"]
                key = (check["Key"]["pk"]["S"], check["Key"]["sk"]["S"])
                limit = int(check["ExpressionAttributeValues"][":max"]["N"])
                reasons.append(CCF if self.failures.get(key, 0) >= limit else "None")
        return reasons

    def apply(self, items: Sequence[dict[str, Any]]) -> None:
        for item in items:
            if "Put" in item:
                self.used.add((item["Put"]["Item"]["pk"]["S"], item["Put"]["Item"]["sk"]["S"]))

    def commit(self, items: list[dict[str, Any]]) -> None:
        reasons = self.reasons(items)
        if CCF in reasons:
            raise TransactionCancelled(reasons)
        self.apply(items)

    def record_failure(self, principal_id: str, now: float) -> int:
        key = (f"MFA#{principal_id}", f"FAILED#{int(now // 900)}")
        self.failures[key] = self.failures.get(key, 0) + 1
        return self.failures[key]


class FakeDirectory:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger
        self.principals: dict[str, PrincipalRecord] = {}
        self.events: list[AuditDraft] = []

    def require_principal(self, principal_id: str) -> PrincipalRecord:
        return copy.deepcopy(self.principals[principal_id])

    def save_principal(self, principal: PrincipalRecord, draft: AuditDraft, *,
                       extra_items: Sequence[dict[str, Any]] = (), guarded: bool = False) -> None:
        if guarded and self.principals[principal.principal_id].rev != principal.rev:
            raise Conflict("changed")
        reasons = self.ledger.reasons(extra_items)
        if CCF in reasons:
            raise TransactionCancelled(["None", "None", *reasons])
        self.ledger.apply(extra_items)
        self.principals[principal.principal_id] = principal.model_copy(update={"rev": principal.rev + 1})
        self.events.append(draft)


class FakeAudit:
    def __init__(self, directory: FakeDirectory) -> None:
        self.events = directory.events

    def commit(self, draft: AuditDraft, items: list[dict[str, Any]] | None = None) -> None:
        self.events.append(draft)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 1, 15, 10, 30, 5, tzinfo=UTC))


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def directory(ledger: FakeLedger) -> FakeDirectory:
    directory = FakeDirectory(ledger)
    for name in ("alice", "bob"):
        directory.principals[name] = PrincipalRecord(principal_id=name, created_at=datetime(2026, 1, 1, tzinfo=UTC),
                                                     created_by="root")
    directory.principals["root"] = PrincipalRecord(principal_id="root", admin=True, created_by="root",
                                                   created_at=datetime(2026, 1, 1, tzinfo=UTC))
    return directory


@pytest.fixture
def keys() -> FakeKeyProvider:
    return FakeKeyProvider()


@pytest.fixture
def mfa(directory: FakeDirectory, ledger: FakeLedger, keys: FakeKeyProvider, clock: FrozenClock) -> MfaService:
    return MfaService(directory, ledger, keys, FakeAudit(directory), clock=clock)  # type: ignore[arg-type]


def caller(directory: FakeDirectory, name: str, code: str | None = None) -> Caller:
    return Caller(principal=directory.require_principal(name), token_id="tok", source_ip="10.0.0.5",
                  request_id="req-1", mfa_code=code)


def code_at(seed: str, clock: FrozenClock, steps: int = 0) -> str:
    return pyotp.TOTP(seed).at(clock.now().timestamp() + 30 * steps)


def enrol(mfa: MfaService, directory: FakeDirectory, clock: FrozenClock, name: str = "alice") -> str:
    setup = mfa.setup(caller(directory, name))
    mfa.activate(caller(directory, name), code_at(setup.secret, clock, -1))
    return setup.secret


def test_setup_stores_the_seed_encrypted_and_bound_to_the_principal(
        mfa: MfaService, directory: FakeDirectory, keys: FakeKeyProvider, clock: FrozenClock) -> None:
    setup = mfa.setup(caller(directory, "alice"))
    assert setup.otpauth_uri.startswith("otpauth://totp/v-secure:alice?secret=")
    assert setup.secret in setup.otpauth_uri and setup.pending and not setup.active
    stored = directory.principals["alice"].mfa or {}
    assert setup.secret not in repr(stored) and setup.secret.encode() not in repr(stored).encode()
    envelope = Envelope.from_item(stored["envelope"])
    assert open_envelope(envelope, seed_context("alice", 1), keys).decode() == setup.secret
    with pytest.raises(DecryptionFailed):  # moved to another principal (or enrolment): refused
        open_envelope(envelope, seed_context("bob", 1), keys)
    # Not active until the first valid code: requests still need MFA.
    with pytest.raises(AccessDenied) as refused:
        mfa.check_request(caller(directory, "alice", code_at(setup.secret, clock)))
    assert refused.value.reason == "mfa_required"


def test_activation_needs_a_valid_code_and_counts_failures(
        mfa: MfaService, directory: FakeDirectory, ledger: FakeLedger, clock: FrozenClock) -> None:
    setup = mfa.setup(caller(directory, "alice"))
    wrong = "000000" if code_at(setup.secret, clock) != "000000" else "111111"
    with pytest.raises(AccessDenied) as refused:
        mfa.activate(caller(directory, "alice"), wrong)
    assert refused.value.reason == "mfa_invalid"
    assert not (directory.principals["alice"].mfa or {}).get("active")
    failed = [e for e in directory.events if e.action is Action.MFA_FAILED]
    assert len(failed) == 1 and failed[0].status is Status.DENIED and failed[0].details["failures_in_window"] == 1
    status = mfa.activate(caller(directory, "alice"), code_at(setup.secret, clock))
    assert status.active and not status.pending
    with pytest.raises(Conflict):
        mfa.setup(caller(directory, "alice"))  # an active enrolment is not silently replaced


def test_a_code_is_accepted_once_and_one_step_either_side(
        mfa: MfaService, directory: FakeDirectory, clock: FrozenClock) -> None:
    seed = enrol(mfa, directory, clock)
    for steps in (0, 1):
        assert mfa.check_request(caller(directory, "alice", code_at(seed, clock, steps))) == []
    for steps in (0, 1, -1, 2, -2):  # replays, the activation code, and codes outside the window
        with pytest.raises(AccessDenied) as refused:
            mfa.check_request(caller(directory, "alice", code_at(seed, clock, steps)))
        assert refused.value.reason == "mfa_invalid"
    with pytest.raises(AccessDenied, match="already used"):
        mfa.check_request(caller(directory, "alice", code_at(seed, clock, 0)))


def test_deferred_claims_are_items_for_the_reads_transaction(
        mfa: MfaService, directory: FakeDirectory, ledger: FakeLedger, clock: FrozenClock) -> None:
    seed = enrol(mfa, directory, clock)
    alice = caller(directory, "alice", code_at(seed, clock))
    items = mfa.check_request(alice, defer=True)
    assert [next(iter(i)) for i in items] == ["Put", "ConditionCheck"]
    assert mfa.check_request(alice, defer=True)  # nothing claimed yet
    ledger.commit(items)
    reasons = ledger.reasons(items)
    assert classify(items, reasons) == "replayed"
    refusal = mfa.refusal(alice, items, reasons)
    assert refusal is not None and refusal.reason == "mfa_invalid" and "already used" in refusal.message
    assert mfa.refusal(alice, [{"Update": {"Key": {"pk": {"S": "RATE#x"}}}}], [CCF]) is None


def test_lock_out_after_too_many_failures_refuses_even_a_valid_code(
        mfa: MfaService, directory: FakeDirectory, clock: FrozenClock) -> None:
    seed = enrol(mfa, directory, clock)
    valid = {code_at(seed, clock, s) for s in (-1, 0, 1)}
    wrong = next(c for c in (f"{n:06d}" for n in range(100)) if c not in valid)
    for _ in range(MAX_FAILED_CODES):
        with pytest.raises(AccessDenied, match="wrong or expired"):
            mfa.check_request(caller(directory, "alice", wrong))
    with pytest.raises(AccessDenied, match="too many failed"):
        mfa.check_request(caller(directory, "alice", code_at(seed, clock, 1)))
    with pytest.raises(AccessDenied, match="too many failed"):
        mfa.check_request(caller(directory, "alice", code_at(seed, clock, 0)))
    clock.advance(900)  # the next failure window
    assert mfa.check_request(caller(directory, "alice", code_at(seed, clock))) == []


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 456"])
def test_malformed_codes(mfa: MfaService, directory: FakeDirectory, clock: FrozenClock, code: str) -> None:
    enrol(mfa, directory, clock)
    with pytest.raises(AccessDenied) as refused:
        mfa.check_request(caller(directory, "alice", code))
    assert refused.value.reason == ("mfa_required" if not code else "mfa_invalid")


def test_disable_needs_a_valid_unused_code(mfa: MfaService, directory: FakeDirectory, clock: FrozenClock) -> None:
    seed = enrol(mfa, directory, clock)
    with pytest.raises(AccessDenied) as refused:
        mfa.disable(caller(directory, "alice"), None)
    assert refused.value.reason == "mfa_required"
    last = directory.events[-1]
    assert (last.action, last.status, last.deny_reason) == (Action.MFA_DISABLE, Status.DENIED, "mfa_required")
    with pytest.raises(AccessDenied):
        mfa.disable(caller(directory, "alice"), code_at(seed, clock, -1))  # used to activate
    assert mfa.disable(caller(directory, "alice"), code_at(seed, clock)).active is False
    assert (directory.principals["alice"].mfa or {}) == {"active": False, "enrolment": 1}
    assert [e.action for e in directory.events][-1] is Action.MFA_DISABLE
    again = mfa.setup(caller(directory, "alice"))
    assert again.enrolment == 2  # a new seed under a new context


def test_only_a_global_admin_resets_someone_elses_mfa(
        mfa: MfaService, directory: FakeDirectory, clock: FrozenClock) -> None:
    enrol(mfa, directory, clock)
    with pytest.raises(AccessDenied):
        mfa.disable(caller(directory, "bob"), None, principal_id="alice")
    assert (directory.principals["alice"].mfa or {})["active"]
    denied = directory.events[-1]
    assert (denied.action, denied.status, denied.deny_reason) == (Action.MFA_DISABLE, Status.DENIED,
                                                                  "permission_denied")
    assert mfa.disable(caller(directory, "root"), None, principal_id="alice").active is False


def test_activate_without_setup(mfa: MfaService, directory: FakeDirectory) -> None:
    with pytest.raises(InvalidRequest, match="setup"):
        mfa.activate(caller(directory, "alice"), "123456")


def test_matching_step_compares_every_candidate() -> None:
    seed = pyotp.random_base32()
    now = 1_700_000_015.0
    step = int(now // 30)
    assert matching_step(seed, pyotp.TOTP(seed).at(now), now) == step
    assert matching_step(seed, pyotp.TOTP(seed).at(now - 30), now) == step - 1
    assert matching_step(seed, pyotp.TOTP(seed).at(now + 60), now) is None


def test_the_cli_asks_for_the_first_code_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx
    from click.testing import CliRunner

    from chalicelib.cli import access as access_cli
    from chalicelib.cli.context import CliState
    from chalicelib.cli.main import cli

    seed = pyotp.random_base32()
    uri = pyotp.TOTP(seed).provisioning_uri(name="alice", issuer_name="v-secure")
    seen: list[tuple[str, str]] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.content.decode()))
        if request.url.path == "/auth/mfa/setup":
            return httpx.Response(201, json={"principalId": "alice", "pending": True, "enrolment": 1,
                                             "otpauthUri": uri, "secret": seed})
        code = json.loads(request.content)["code"]
        return httpx.Response(200, json={"principalId": "alice", "active": code == "424242", "enrolment": 1})

    monkeypatch.setattr(access_cli, "_interactive", lambda: True)
    result = CliRunner().invoke(cli, ["--endpoint-url", "http://vsecure.test", "auth", "mfa", "setup"],
                                obj=CliState(transport=httpx.MockTransport(server)), input="424242\n")
    assert result.exit_code == 0, result.output
    assert [path for path, _ in seen] == ["/auth/mfa/setup", "/auth/mfa/activate"]
    assert json.loads(result.stdout)["active"] is True
    assert uri in result.stderr and access_cli.qr_text(uri) in result.stderr
