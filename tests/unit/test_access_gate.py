"""The access gate of every non-secret request, against in-memory fakes (no AWS).

Covered:

- ``access_control/gate.py``: ``require_global_admin``, ``require_self``, ``require_authenticated``,
  ``require_audit_read`` (whole log and one secret's trail) and ``admit``: RBAC first, then the
  service-wide IP allow-list and MFA (global admins included, ``mfa_exempt``), every refusal
  audited once through the given ``audit=`` callable, every allow noted on the request audit;
- ``audit/request_audit.py``: ``request_audit()``, ``note_authorized``, ``note_event``,
  ``RequestAudit.unrecorded``, and that both notes are no-ops outside a request;
- ``access_control/context.py``: ``Caller.draft`` carries ``authorized_by`` from the request
  audit, except on DENIED drafts;
- ``audit/events.py``: ``AuditEvent.canonical()`` leaves ``authorized_by`` out while unset, so
  events written before the field existed hash the same; a set value is hashed.

The fakes and the ``Stack`` (fake directory, MFA ledger and audit; patched ``get_settings`` and
``get_mfa_service``) come from ``test_policies.py`` and ``test_policies_mfa.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime

import pyotp
import pytest

from chalicelib.access_control import gate
from chalicelib.access_control.auth import PrincipalRecord
from chalicelib.access_control.gate import (
    SecretGrants,
    require_audit_read,
    require_authenticated,
    require_global_admin,
    require_self,
)
from chalicelib.access_control.rbac import Decision, PrefixPolicy
from chalicelib.audit.events import GENESIS_HASH, Action, AuditDraft, AuditEvent, Status
from chalicelib.audit.request_audit import current_request_audit, note_authorized, note_event, request_audit
from chalicelib.config import Settings
from chalicelib.errors import AccessDenied
from tests.unit.test_policies import Stack
from tests.unit.test_policies_mfa import FakeAudit, FakeDirectory, FakeLedger

OUTSIDE = ["172.16.0.0/12"]  # the Stack's callers come from 10.0.0.5


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Stack:
    """root (global admin), alice (MFA active), bob (no grants), carol (group ``auditors``)."""
    built = Stack(monkeypatch)
    for name, groups in (("bob", []), ("carol", ["auditors"])):
        built.directory.principals[name] = PrincipalRecord(
            principal_id=name, groups=groups, created_at=datetime(2026, 1, 1, tzinfo=UTC), created_by="root")
    monkeypatch.setattr(gate, "_writer_commit", _no_default_writer)
    return built


@pytest.fixture
def audit() -> FakeAudit:
    """Collects what the gate commits through ``audit=`` (starts empty)."""
    return FakeAudit(FakeDirectory(FakeLedger()))


def _no_default_writer() -> None:
    raise AssertionError("the gate reached for the real audit writer instead of the given audit=")


def only_denial(audit: FakeAudit) -> AuditDraft:
    assert len(audit.events) == 1, audit.events
    draft = audit.events[0]
    assert draft.status is Status.DENIED
    return draft


def refused(call: Callable[[], object]) -> AccessDenied:
    """The AccessDenied that ``call()`` raises."""
    with pytest.raises(AccessDenied) as error:
        call()
    return error.value


def totp(seed: str, stack: Stack, steps: int = 0) -> str:
    return pyotp.TOTP(seed).at(stack.clock.now().timestamp() + 30 * steps)


def enrol(stack: Stack, name: str) -> str:
    """Turn MFA on for ``name`` (with the step before now); return the seed."""
    setup = stack.mfa.setup(stack.caller(name))
    stack.mfa.activate(stack.caller(name), totp(setup.secret, stack, -1))
    return setup.secret


def wrong_code(seed: str, stack: Stack) -> str:
    valid = {totp(seed, stack, s) for s in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222") if c not in valid)


# --- 1, 2: require_global_admin -------------------------------------------------------------


def test_a_non_admin_is_refused_audited_once_and_not_noted(stack: Stack, audit: FakeAudit) -> None:
    with request_audit() as trail:
        error = refused(lambda: require_global_admin(stack.caller("alice"), Action.GROUP_CHANGE, "managing groups",
                                                     details={"group": "ops"}, audit=audit.commit))
        assert (trail.action, trail.authorized_by) == (None, None)
    assert error.reason == "permission_denied"
    assert error.message == "managing groups needs global admin"
    draft = only_denial(audit)
    assert (draft.action, draft.deny_reason, draft.details) == (Action.GROUP_CHANGE, "permission_denied",
                                                                {"group": "ops"})
    assert (draft.actor, draft.source_ip, draft.authorized_by) == ("alice", "10.0.0.5", None)


def test_a_global_admin_is_allowed_noted_and_not_audited_by_the_gate(stack: Stack, audit: FakeAudit) -> None:
    root = stack.caller("root")
    with request_audit() as trail:
        decision = require_global_admin(root, Action.GROUP_CHANGE, "managing groups", secret_id="prod/db",
                                        details={"group": "ops"}, audit=audit.commit)
        assert decision == Decision(True, "global_admin")
        assert audit.events == []
        assert (trail.action, trail.authorized_by, trail.secret_id, trail.details) == (
            Action.GROUP_CHANGE, "global_admin", "prod/db", {"group": "ops"})
        assert root.draft(Action.GROUP_CHANGE).authorized_by == "global_admin"
        assert root.draft(Action.GROUP_CHANGE, status=Status.FAILURE).authorized_by == "global_admin"
        assert root.draft(Action.GROUP_CHANGE, status=Status.DENIED).authorized_by is None


# --- 3: require_self ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "reason"), [("alice", "self"), ("root", "global_admin")])
def test_require_self_allows_the_principal_or_a_global_admin(
        stack: Stack, audit: FakeAudit, name: str, reason: str) -> None:
    with request_audit() as trail:
        decision = require_self(stack.caller(name), Action.TOKEN_CREATE, "alice", "creating tokens",
                                audit=audit.commit)
    assert (decision.allowed, decision.reason) == (True, reason)
    assert (trail.action, trail.authorized_by) == (Action.TOKEN_CREATE, reason)
    assert audit.events == []


def test_require_self_refuses_anyone_else(stack: Stack, audit: FakeAudit) -> None:
    with request_audit() as trail:
        error = refused(lambda: require_self(stack.caller("bob"), Action.TOKEN_CREATE, "alice", "creating tokens",
                                             details={"principal": "alice"}, audit=audit.commit))
    assert error.reason == "permission_denied" and "creating tokens" in error.message
    draft = only_denial(audit)
    assert (draft.action, draft.actor, draft.deny_reason, draft.details) == (
        Action.TOKEN_CREATE, "bob", "permission_denied", {"principal": "alice"})
    assert trail.action is None


def test_require_authenticated_allows_anyone_and_notes_it(stack: Stack, audit: FakeAudit) -> None:
    with request_audit() as trail:
        decision = require_authenticated(stack.caller("bob"), Action.SECRET_LIST, audit=audit.commit)
    assert decision.reason == "authenticated"
    assert (trail.action, trail.authorized_by) == (Action.SECRET_LIST, "authenticated")
    assert audit.events == []


# --- 4: require_audit_read ------------------------------------------------------------------


def test_the_whole_log_by_a_policy_on_every_secret(stack: Stack, audit: FakeAudit) -> None:
    everything = PrefixPolicy("auditors-all", "*", allow={"auditors": ["audit:read"]})
    with request_audit() as trail:
        decision = require_audit_read(stack.caller("carol"), Action.AUDIT_READ, policies=[everything],
                                      audit=audit.commit)
    assert (decision.allowed, decision.reason) == (True, "policy:auditors-all")
    assert (trail.action, trail.authorized_by, trail.secret_id) == (Action.AUDIT_READ, "policy:auditors-all", None)
    assert audit.events == []


def test_a_policy_on_a_prefix_does_not_grant_the_whole_log(stack: Stack, audit: FakeAudit) -> None:
    prod = PrefixPolicy("auditors-prod", "prod/*", allow={"auditors": ["audit:read"]})
    error = refused(lambda: require_audit_read(stack.caller("carol"), Action.AUDIT_READ, policies=[prod],
                                               audit=audit.commit))
    assert error.reason == "permission_denied" and "whole audit log" in error.message
    draft = only_denial(audit)
    assert (draft.action, draft.deny_reason, draft.secret_id) == (Action.AUDIT_READ, "permission_denied", None)


def test_one_secrets_trail_by_its_own_grant(stack: Stack, audit: FakeAudit) -> None:
    secret = SecretGrants("prod/db", access={"alice": ["audit:read"]})
    with request_audit() as trail:
        decision = require_audit_read(stack.caller("alice"), Action.AUDIT_READ, secret=secret, policies=[],
                                      audit=audit.commit)
    assert (decision.allowed, decision.reason) == (True, "secret_grant:alice")
    assert (trail.authorized_by, trail.secret_id) == ("secret_grant:alice", "prod/db")
    assert audit.events == []


def test_a_secrets_explicit_deny_wins_over_a_policy_on_every_secret(stack: Stack, audit: FakeAudit) -> None:
    everything = PrefixPolicy("all-readers", "*", allow={"alice": ["audit:read"]})
    secret = SecretGrants("prod/db", deny={"alice": ["audit:read"]})
    with request_audit() as trail:
        error = refused(lambda: require_audit_read(stack.caller("alice"), Action.AUDIT_READ, secret=secret,
                                                   policies=[everything], audit=audit.commit))
    assert error.reason == "explicit_deny" and "prod/db" in error.message
    draft = only_denial(audit)
    assert (draft.action, draft.deny_reason, draft.secret_id) == (Action.AUDIT_READ, "explicit_deny", "prod/db")
    assert trail.action is None


# --- 5: service-wide constraints after the decision -----------------------------------------


def test_the_service_ip_allow_list_binds_a_global_admin(stack: Stack, audit: FakeAudit) -> None:
    stack.settings = Settings(ip_whitelist=OUTSIDE)
    with request_audit() as trail:
        error = refused(lambda: require_global_admin(stack.caller("root"), Action.PRINCIPAL_CREATE,
                                                     "managing principals", audit=audit.commit))
    assert error.reason == "ip_not_allowed"
    draft = only_denial(audit)
    assert (draft.action, draft.deny_reason, draft.actor) == (Action.PRINCIPAL_CREATE, "ip_not_allowed", "root")
    assert trail.action is None
    inside = stack.caller("root", ip="172.16.4.4")
    assert require_global_admin(inside, Action.PRINCIPAL_CREATE, "managing principals",
                                audit=audit.commit).reason == "global_admin"


def test_service_mfa_binds_a_global_admin_without_a_code(stack: Stack, audit: FakeAudit) -> None:
    stack.settings = Settings(require_mfa=True)
    error = refused(lambda: require_global_admin(stack.caller("root"), Action.KEY_ROTATE, "keys rotate",
                                                 audit=audit.commit))
    assert error.reason == "mfa_required"
    draft = only_denial(audit)
    assert (draft.action, draft.deny_reason) == (Action.KEY_ROTATE, "mfa_required")


def test_a_wrong_code_is_audited_as_mfa_failed(stack: Stack, audit: FakeAudit) -> None:
    stack.settings = Settings(require_mfa=True)
    alice = stack.caller("alice", wrong_code(stack.seed, stack))
    with request_audit() as trail:
        error = refused(lambda: require_self(alice, Action.TOKEN_CREATE, "alice", "creating tokens",
                                             audit=audit.commit))
    assert error.reason == "mfa_invalid"
    draft = only_denial(audit)
    assert (draft.action, draft.deny_reason, draft.actor) == (Action.MFA_FAILED, "mfa_invalid", "alice")
    assert trail.action is None


def test_a_valid_code_admits_a_global_admin_once(stack: Stack, audit: FakeAudit) -> None:
    seed = enrol(stack, "root")
    stack.settings = Settings(require_mfa=True)
    root = stack.caller("root", totp(seed, stack))
    with request_audit() as trail:
        decision = require_global_admin(root, Action.KEY_ROTATE, "keys rotate", audit=audit.commit)
    assert decision.reason == "global_admin" and trail.authorized_by == "global_admin"
    assert audit.events == []
    error = refused(lambda: require_global_admin(root, Action.KEY_ROTATE, "keys rotate", audit=audit.commit))
    assert error.reason == "mfa_invalid" and "already used" in error.message
    assert (only_denial(audit).action, only_denial(audit).deny_reason) == (Action.MFA_FAILED, "mfa_invalid")


def test_mfa_exempt_routes_need_no_code_but_keep_the_ip_allow_list(stack: Stack, audit: FakeAudit) -> None:
    stack.settings = Settings(require_mfa=True)
    with request_audit() as trail:
        decision = require_self(stack.caller("bob"), Action.MFA_ENROLL, "bob", "managing MFA", mfa_exempt=True,
                                audit=audit.commit)
    assert decision.reason == "self" and trail.action is Action.MFA_ENROLL
    assert audit.events == []
    stack.settings = Settings(require_mfa=True, ip_whitelist=OUTSIDE)
    error = refused(lambda: require_self(stack.caller("bob"), Action.MFA_ENROLL, "bob", "managing MFA",
                                         mfa_exempt=True, audit=audit.commit))
    assert error.reason == "ip_not_allowed"


@pytest.mark.parametrize("settings", [Settings(ip_whitelist=OUTSIDE), Settings(require_mfa=True)],
                         ids=["ip", "mfa"])
def test_rbac_is_decided_before_the_constraints(stack: Stack, audit: FakeAudit, settings: Settings) -> None:
    stack.settings = settings
    error = refused(lambda: require_global_admin(stack.caller("bob"), Action.GROUP_CHANGE, "managing groups",
                                                 audit=audit.commit))
    assert error.reason == "permission_denied"
    assert only_denial(audit).deny_reason == "permission_denied"


# --- 6, 7: the request audit ----------------------------------------------------------------


def test_outside_a_request_the_notes_are_no_ops(stack: Stack) -> None:
    alice = stack.caller("alice")
    note_authorized(Action.GROUP_READ, "global_admin", secret_id="prod/db")
    note_event()
    assert current_request_audit() is None
    assert alice.draft(Action.GROUP_READ).authorized_by is None
    assert require_self(alice, Action.PRINCIPAL_READ, "alice", "whoami").reason == "self"
    assert alice.draft(Action.PRINCIPAL_READ).authorized_by is None


def test_a_request_audit_ends_with_its_context(stack: Stack) -> None:
    alice = stack.caller("alice")
    with request_audit() as trail:
        assert current_request_audit() is trail
        note_authorized(Action.GROUP_READ, "self")
    assert current_request_audit() is None
    assert alice.draft(Action.GROUP_READ).authorized_by is None


def test_unrecorded_means_authorized_without_an_event() -> None:
    with request_audit() as trail:
        assert trail.unrecorded is False
        note_authorized(Action.GROUP_READ, "global_admin", details={"group": "ops"})
        assert trail.unrecorded is True
        note_event()
        assert (trail.events, trail.unrecorded) == (1, False)


def test_an_event_before_authorization_is_counted(stack: Stack) -> None:
    with request_audit() as trail:
        note_event()
        note_authorized(Action.GROUP_READ, "global_admin")
        assert trail.unrecorded is False


# --- 8: canonical form and hash -------------------------------------------------------------


def event(**fields: object) -> AuditEvent:
    return AuditEvent.model_validate({
        "action": "group_change", "actor": "root", "actor_type": "user", "status": "success",
        "details": {"group": "ops"}, "event_id": "evt-1", "timestamp": "2026-01-15T10:30:05Z",
        "stream_id": "s-0", "seq": 7, "prev_hash": GENESIS_HASH, **fields})


def legacy_hash(item: AuditEvent) -> str:
    """The hash of ``item`` as it was computed before ``authorized_by`` existed."""
    body = item.model_dump(mode="json", exclude={"hash", "authorized_by"})
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(item.prev_hash.encode() + canonical).hexdigest()


def test_an_unset_authorized_by_is_left_out_so_old_events_still_verify() -> None:
    old = event()
    assert "authorized_by" not in json.loads(old.canonical())
    assert old.computed_hash() == legacy_hash(old)


def test_a_set_authorized_by_is_hashed() -> None:
    old, new = event(), event(authorized_by="global_admin")
    assert json.loads(new.canonical())["authorized_by"] == "global_admin"
    assert new.computed_hash() != old.computed_hash()
    assert new.computed_hash() != event(authorized_by="self").computed_hash()
    assert new.computed_hash() == hashlib.sha256(new.prev_hash.encode() + new.canonical()).hexdigest()
