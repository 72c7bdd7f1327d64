"""Secret use cases against fakes of our own ports (no AWS)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from chalicelib.access_control.auth import PrincipalRecord
from chalicelib.access_control.context import Caller
from chalicelib.audit.events import Action, Status
from chalicelib.clock import FrozenClock
from chalicelib.config import Settings
from chalicelib.errors import (
    AccessDenied,
    AuditUnavailable,
    InvalidRequest,
    InvalidSecretValue,
    PayloadTooLarge,
    SecretDeleted,
    SecretNotFound,
    VersionConflict,
    VersionNotFound,
)
from chalicelib.models import RollbackRequest, StoreSecretRequest, VersionStatus
from chalicelib.vault.service import VaultService
from tests.fakes import FakeKeyProvider, FakeRepository

CANARY = "canary-1b2c3d-do-not-leak"


def caller(name: str, *, admin: bool = False, groups: tuple[str, ...] = ()) -> Caller:
    principal = PrincipalRecord(principal_id=name, admin=admin, groups=list(groups),
                                created_at=datetime(2026, 1, 1, tzinfo=UTC), created_by="root")
    return Caller(principal=principal, token_id="tok", source_ip="10.0.0.5", request_id="req-1")


ROOT = caller("root", admin=True)


@pytest.fixture
def repo() -> FakeRepository:
    return FakeRepository()


@pytest.fixture
def service(repo: FakeRepository) -> VaultService:
    return VaultService(repo, FakeKeyProvider(), settings=Settings(max_versions=3), clock=FrozenClock())


def store(service: VaultService, value: str = CANARY, who: Caller = ROOT, **fields: object) -> int:
    request = StoreSecretRequest.model_validate({"secretId": "db_password", "value": value, **fields})
    return service.store(who, request).version


def test_store_creates_gapless_versions_and_retrieve_returns_current(service: VaultService) -> None:
    assert store(service, type="database_credential") == 1
    assert store(service, value="second") == 2
    answer = service.retrieve(ROOT, "db_password")
    assert (answer.value, answer.version, answer.labels) == ("second", 2, ["CURRENT"])
    assert service.retrieve(ROOT, "db_password", version=1).value == CANARY
    assert service.retrieve(ROOT, "db_password", stage="PREVIOUS").version == 1


def test_type_is_required_on_create_and_cannot_change(service: VaultService) -> None:
    with pytest.raises(InvalidRequest, match="type is required"):
        store(service)
    store(service, type="api_key", value="sk_live_12345678")
    with pytest.raises(InvalidRequest, match="cannot change"):
        store(service, type="ssh_key", value="x")


def test_value_is_validated_by_type_without_echoing_it(service: VaultService) -> None:
    with pytest.raises(InvalidSecretValue) as failure:
        store(service, type="configuration", value=f"not json {CANARY}")
    assert CANARY not in str(failure.value)


def test_expected_version_is_check_and_set(service: VaultService) -> None:
    store(service, type="api_key", value="sk_live_12345678", expectedVersion=0)
    with pytest.raises(VersionConflict):
        store(service, value="sk_live_abcdefgh", expectedVersion=0)
    assert store(service, value="sk_live_abcdefgh", expectedVersion=1) == 2


def test_values_over_64_kib_are_refused(service: VaultService) -> None:
    with pytest.raises(PayloadTooLarge):
        store(service, type="api_key", value="a" * (64 * 1024 + 1))


def test_rollback_moves_current_and_is_recorded(service: VaultService, repo: FakeRepository) -> None:
    store(service, type="api_key", value="sk_live_version1")
    store(service, value="sk_live_version2")
    answer = service.rollback(ROOT, "db_password", RollbackRequest(version=1))
    assert (answer.version, answer.previous_version) == (1, 2)
    assert service.retrieve(ROOT, "db_password").value == "sk_live_version1"
    assert repo.events[-2].action is Action.SECRET_ROLLBACK
    statuses = {v.version: v.status for v in service.versions(ROOT, "db_password").versions}
    assert statuses == {1: VersionStatus.ACTIVE, 2: VersionStatus.PREVIOUS}


def test_max_versions_destroys_the_oldest_unlabelled(service: VaultService) -> None:
    store(service, type="api_key", value="sk_live_version1")
    for n in range(2, 6):
        store(service, value=f"sk_live_version{n}")
    statuses = {v.version: v.status for v in service.versions(ROOT, "db_password").versions}
    assert statuses[1] is VersionStatus.DESTROYED and statuses[2] is VersionStatus.DESTROYED
    assert statuses[3] is VersionStatus.RETIRED and statuses[5] is VersionStatus.ACTIVE
    with pytest.raises(VersionNotFound):
        service.retrieve(ROOT, "db_password", version=1)


def test_soft_delete_restore_and_force_destroy(service: VaultService) -> None:
    store(service, type="api_key", value="sk_live_version1")
    deleted = service.delete(ROOT, "db_password", recovery_window_days=7)
    assert deleted.destroy_after is not None
    with pytest.raises(SecretDeleted):
        service.retrieve(ROOT, "db_password")
    service.restore(ROOT, "db_password")
    assert service.retrieve(ROOT, "db_password").value == "sk_live_version1"
    with pytest.raises(InvalidRequest):
        service.delete(ROOT, "db_password", recovery_window_days=3)
    service.delete(ROOT, "db_password", force=True)
    with pytest.raises(SecretNotFound):
        service.retrieve(ROOT, "db_password")


def test_purge_destroys_after_the_recovery_window(service: VaultService, repo: FakeRepository) -> None:
    store(service, type="api_key", value="sk_live_version1")
    service.delete(ROOT, "db_password", recovery_window_days=7)
    assert service.purge_due() == []
    service.clock.advance(8 * 86400)  # type: ignore[attr-defined]
    assert service.purge_due() == ["db_password"]
    assert all(v.envelope is None for v in repo.list_versions("db_password"))


def test_creator_gets_admin_and_strangers_cannot_tell_if_a_secret_exists(service: VaultService,
                                                                          repo: FakeRepository) -> None:
    alice = caller("alice")
    repo_policy_owner = caller("alice-admin", admin=True)
    store(service, who=repo_policy_owner, type="api_key", value="sk_live_version1")
    assert repo.get("db_password").access == {"alice-admin": ["admin"]}  # type: ignore[union-attr]
    for secret_id in ("db_password", "does-not-exist"):
        with pytest.raises(AccessDenied) as denied:
            service.retrieve(alice, secret_id)
        assert denied.value.reason == "permission_denied"
    denials = [e for e in repo.events if e.status is Status.DENIED]
    assert [e.secret_id for e in denials] == ["db_password", "does-not-exist"]
    assert all(e.deny_reason == "permission_denied" and e.actor == "alice" for e in denials)


def test_group_grant_allows_read_but_not_write(service: VaultService) -> None:
    store(service, type="api_key", value="sk_live_version1", access={"backend-team": ["read"]})
    member = caller("svc", groups=("backend-team",))
    assert service.retrieve(member, "db_password").value == "sk_live_version1"
    with pytest.raises(AccessDenied):
        store(service, who=member, value="sk_live_version2")


def test_every_operation_is_audited_without_the_value(service: VaultService, repo: FakeRepository) -> None:
    store(service, type="api_key", value=CANARY, metadata={"database": "production_db"})
    service.retrieve(ROOT, "db_password", reason="database_connection")
    service.describe(ROOT, "db_password")
    service.versions(ROOT, "db_password")
    service.list_secrets(ROOT)
    actions = [e.action for e in repo.events]
    assert actions == [Action.SECRET_STORE, Action.SECRET_READ, Action.SECRET_DESCRIBE, Action.SECRET_VERSIONS,
                       Action.SECRET_LIST]
    assert repo.events[1].reason == "database_connection" and repo.events[1].source_ip == "10.0.0.5"
    assert all(CANARY not in e.canonical().decode() for e in repo.events)


def test_audit_failure_fails_closed(service: VaultService, repo: FakeRepository) -> None:
    store(service, type="api_key", value="sk_live_version1")
    repo.fail_audit = True
    with pytest.raises(AuditUnavailable):
        service.retrieve(ROOT, "db_password")
    with pytest.raises(AuditUnavailable):
        store(service, value="sk_live_version2")
    assert repo.get("db_password").latest_version == 1  # type: ignore[union-attr]


def test_rate_limit_counts_reads(service: VaultService) -> None:
    from chalicelib.errors import RateLimited

    store(service, type="api_key", value="sk_live_version1", constraints={"rate_limit": "2/min"})
    service.retrieve(ROOT, "db_password")
    service.retrieve(ROOT, "db_password")
    with pytest.raises(RateLimited) as limited:
        service.retrieve(ROOT, "db_password")
    assert int(limited.value.headers["Retry-After"]) >= 1


def test_ip_allow_list_is_enforced(service: VaultService) -> None:
    store(service, type="api_key", value="sk_live_version1", constraints={"ip_whitelist": ["192.168.0.0/16"]})
    with pytest.raises(AccessDenied) as denied:
        service.retrieve(ROOT, "db_password")
    assert denied.value.reason == "ip_not_allowed"


def test_list_shows_only_visible_secrets_with_filters(service: VaultService) -> None:
    for secret_id, secret_type, tags in (("prod/a", "api_key", ["production"]), ("prod/b", "api_key", []),
                                         ("dev/c", "configuration", [])):
        value = "{}" if secret_type == "configuration" else "sk_live_12345678"
        service.store(ROOT, StoreSecretRequest.model_validate(
            {"secretId": secret_id, "value": value, "type": secret_type, "tags": tags}))
    ids = lambda answer: [s.secret_id for s in answer.secrets]  # noqa: E731
    assert ids(service.list_secrets(ROOT, prefix="prod/")) == ["prod/a", "prod/b"]
    assert ids(service.list_secrets(ROOT, tag="production")) == ["prod/a"]
    assert ids(service.list_secrets(ROOT, secret_type="configuration")) == ["dev/c"]
    assert ids(service.list_secrets(caller("stranger"))) == []


def test_secret_ids_are_checked(service: VaultService) -> None:
    for bad in ("", "a" * 257, "has space", "../etc/passwd", "x/../y"):
        with pytest.raises(InvalidRequest):
            service.retrieve(ROOT, bad)


def test_a_grant_made_elsewhere_is_seen_by_a_warm_store(service: VaultService, repo: FakeRepository) -> None:
    store(service, type="api_key", value="sk_live_version1")
    writer = caller("late-writer")
    record = repo.get("db_password")
    assert record is not None
    # another process grants write: the record changes in storage, not in this process's cache
    repo.records["db_password"] = record.model_copy(update={"access": {**record.access, "late-writer": ["write"]},
                                                             "rev": record.rev + 1})
    assert store(service, who=writer, value="sk_live_version2") == 2


def test_metadata_values_are_hmaced_in_the_audit_event(repo: FakeRepository) -> None:
    import hashlib
    import hmac

    def hasher(fields: Mapping[str, str]) -> dict[str, str]:
        return {k: "hmac-sha256:" + hmac.new(b"k", v.encode(), hashlib.sha256).hexdigest() for k, v in fields.items()}

    service = VaultService(repo, FakeKeyProvider(), settings=Settings(), clock=FrozenClock(), field_hasher=hasher)
    store(service, type="api_key", value="sk_live_version1", metadata={"username": CANARY})
    details = repo.events[-1].details
    assert details["metadata"]["username"] == hasher({"u": CANARY})["u"]
    assert CANARY not in repo.events[-1].canonical().decode()
