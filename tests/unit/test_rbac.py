"""RBAC: one function decides every request, explicit deny wins, and it says why."""

from __future__ import annotations

import itertools

import pytest

from chalicelib.access_control.rbac import PrefixPolicy, Subject, decide, valid_grant_key
from chalicelib.models import Permission

ALICE = Subject("alice", ("backend-team",))
ROOT = Subject("root", (), admin=True)
READ, WRITE, ROTATE, ADMIN = Permission.READ, Permission.WRITE, Permission.ROTATE, Permission.ADMIN

# The spec's example policy.
SPEC_ACCESS = {
    "backend-team": ["read", "rotate"],
    "devops-team": ["read", "write", "rotate", "delete"],
    "app-instance": ["read"],
    "external-service": ["read", "rotate"],
}


@pytest.mark.parametrize(("subject", "permission", "allowed", "reason"), [
    (Subject("bob", ("backend-team",)), READ, True, "secret_grant:backend-team"),
    (Subject("bob", ("backend-team",)), ROTATE, True, "secret_grant:backend-team"),
    (Subject("bob", ("backend-team",)), WRITE, False, "permission_denied"),
    (Subject("carol", ("devops-team",)), Permission.DELETE, True, "secret_grant:devops-team"),
    (Subject("app-instance"), READ, True, "secret_grant:app-instance"),
    (Subject("app-instance"), ROTATE, False, "permission_denied"),
    (Subject("external-service"), ROTATE, True, "secret_grant:external-service"),
    (Subject("stranger", ("marketing",)), READ, False, "permission_denied"),
    (ROOT, Permission.DELETE, True, "global_admin"),
])
def test_the_spec_example_policy(subject: Subject, permission: Permission, allowed: bool, reason: str) -> None:
    decision = decide(subject, permission, "db_password", SPEC_ACCESS)
    assert (decision.allowed, decision.reason) == (allowed, reason)


def test_a_denial_names_the_missing_permission() -> None:
    decision = decide(ALICE, WRITE, "db_password", {"alice": ["read"]})
    assert not decision.allowed
    assert "'write'" in decision.message


def test_admin_on_a_secret_implies_every_permission() -> None:
    for permission in Permission:
        assert decide(ALICE, permission, "s", {"alice": ["admin"]}).allowed


def test_qualified_and_wildcard_grant_keys() -> None:
    assert decide(ALICE, READ, "s", {"group:backend-team": ["read"]}).reason == "secret_grant:group:backend-team"
    assert decide(ALICE, READ, "s", {"principal:alice": ["read"]}).allowed
    assert decide(ALICE, READ, "s", {"*": ["read"]}).allowed
    # A group grant is not a grant to a principal of that name, and vice versa.
    assert not decide(Subject("backend-team"), READ, "s", {"group:backend-team": ["read"]}).allowed
    assert not decide(ALICE, READ, "s", {"principal:backend-team": ["read"]}).allowed


def test_explicit_deny_wins_over_a_group_grant() -> None:
    decision = decide(ALICE, READ, "s", {"backend-team": ["admin"]}, deny={"alice": ["read"]})
    assert (decision.allowed, decision.reason) == (False, "explicit_deny")
    # It takes away exactly what it lists: rotating is still granted through admin.
    assert decide(ALICE, ROTATE, "s", {"backend-team": ["admin"]}, deny={"alice": ["read"]}).allowed


def test_a_policy_deny_wins_over_a_secret_grant() -> None:
    policy = PrefixPolicy("no-contractors", "prod/*", deny={"backend-team": ["read"]})
    decision = decide(ALICE, READ, "prod/db", {"alice": ["read"]}, policies=[policy])
    assert (decision.allowed, decision.reason) == (False, "explicit_deny")
    assert decide(ALICE, READ, "staging/db", {"alice": ["read"]}, policies=[policy]).allowed


def test_deny_binds_global_admins_except_for_managing_access() -> None:
    deny = {"root": ["read"], "*": ["admin"]}
    assert decide(ROOT, READ, "s", deny=deny).reason == "explicit_deny"
    assert decide(ROOT, WRITE, "s", deny=deny).allowed
    # No deny can lock a secret away for good: a global admin can always repair its access.
    assert decide(ROOT, ADMIN, "s", deny=deny).allowed
    assert decide(ALICE, ADMIN, "s", {"alice": ["admin"]}, deny=deny).reason == "explicit_deny"


def test_prefix_policies_grant_only_what_they_cover() -> None:
    policies = [PrefixPolicy("prod-readers", "prod/*", allow={"backend-team": ["read"]}),
                PrefixPolicy("all-audit", "*", allow={"auditors": ["audit:read"]})]
    assert decide(ALICE, READ, "prod/payments/db", policies=policies).reason == "policy:prod-readers"
    assert not decide(ALICE, READ, "production-db", policies=policies).allowed
    assert not decide(ALICE, WRITE, "prod/db", policies=policies).allowed
    auditor = Subject("eve", ("auditors",))
    assert decide(auditor, Permission.AUDIT_READ, "anything", policies=policies).allowed
    assert not decide(auditor, READ, "anything", policies=policies).allowed


def test_deny_always_wins_over_every_kind_of_allow() -> None:
    """Exhaustive over grant sources x subject names x permissions: an applicable deny always denies."""
    names = ["alice", "principal:alice", "backend-team", "group:backend-team", "*"]
    for permission, allow_name, deny_name, source in itertools.product(
            Permission, names, names, ("secret", "policy", "admin")):
        access = {allow_name: ["admin" if source == "admin" else permission.value]} if source != "policy" else {}
        policies = [PrefixPolicy("p", "*", allow={allow_name: [permission.value]})] if source == "policy" else []
        assert decide(ALICE, permission, "s", access, policies=policies).allowed
        assert decide(ALICE, permission, "s", access, deny={deny_name: [permission.value]},
                      policies=policies).reason == "explicit_deny"
        via_policy = [*policies, PrefixPolicy("d", "s", deny={deny_name: [permission.value]})]
        assert decide(ALICE, permission, "s", access, policies=via_policy).reason == "explicit_deny"


def test_nothing_granted_means_denied() -> None:
    for permission in Permission:
        assert decide(ALICE, permission, "s").reason == "permission_denied"


@pytest.mark.parametrize(("key", "valid"), [
    ("backend-team", True), ("group:backend-team", True), ("principal:app-instance", True), ("*", True),
    ("Backend", False), ("team:x", False), ("", False), ("a" * 65, False), ("group:", False),
])
def test_grant_keys(key: str, valid: bool) -> None:
    assert valid_grant_key(key) is valid
