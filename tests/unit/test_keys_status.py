"""``keys status`` counting and paging, and the key administration service's authorization and audit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.access_control.auth import PrincipalRecord
from chalicelib.access_control.context import Caller
from chalicelib.audit.events import Action, AuditDraft, AuditEvent, Status
from chalicelib.errors import AccessDenied, InvalidRequest, NotFound
from chalicelib.vault.keys.admin import KeyAdminService
from chalicelib.vault.keys.envelopes import PRINCIPALS, SECRETS
from chalicelib.vault.keys.keyring import Keyring
from chalicelib.vault.keys.models import KeyStatus, KeyUsage, RewrapRequest, RotateKeyRequest
from chalicelib.vault.keys.status import key_status, merge
from tests.unit.test_keys_rewrap import MemoryStore, VersionedFake, vault


class Events:
    def __init__(self) -> None:
        self.drafts: list[AuditDraft] = []

    def __call__(self, draft: AuditDraft) -> AuditEvent:
        self.drafts.append(draft)
        return AuditEvent(**draft.model_dump(), event_id="evt", timestamp="t", stream_id="s", seq=1, prev_hash="0")


def caller(admin: bool) -> Caller:
    principal = PrincipalRecord(principal_id="root" if admin else "dev", admin=admin,
                                created_at=datetime.now(UTC), created_by="root")
    return Caller(principal=principal, token_id="tok", source_ip="127.0.0.1", request_id="req")


def all_pages(store: MemoryStore, keyring: Keyring, limit: int) -> KeyStatus:
    pages = [key_status(store, keyring, limit=limit)]
    while pages[-1].next_token:
        pages.append(key_status(store, keyring, limit=limit, next_token=pages[-1].next_token))
    return merge(pages)


def test_counts_versions_meta_copies_and_mfa_seeds_by_kid() -> None:
    store, provider, _values = vault(n_secrets=7, versions=2, principals=2)
    other = VersionedFake("other")
    status = all_pages(store, Keyring(provider, [other]), limit=3)

    assert status.writer == "local:v1" and status.providers == ["local", "other"]
    assert (status.secrets, status.principals) == (7, 2)
    [usage] = status.keys
    assert (usage.kid, usage.versions, usage.copies, usage.mfa_seeds) == ("local:v1", 14, 7 + 3, 2)
    assert usage.envelopes == 14 + 10 + 2 and usage.writer and usage.state == "present"


def test_keys_of_other_versions_and_unconfigured_providers_are_listed() -> None:
    store, provider, _values = vault(n_secrets=3, versions=1, principals=0)
    provider.versions.append("v2")
    stray = VersionedFake("stray")
    from chalicelib.vault.encryption import EnvelopeContext, seal

    store.add_secret("z", [seal(b"x", EnvelopeContext(secret_id="z", version=1, type="api_key"), stray)])
    provider.versions.remove("v1")
    status = all_pages(store, Keyring(provider), limit=50)

    by_kid = {k.kid: k for k in status.keys}
    assert status.writer == "local:v2"
    assert by_kid["local:v1"].state == "missing" and not by_kid["local:v1"].writer
    assert by_kid["stray:v1"].state == "unconfigured" and by_kid["stray:v1"].envelopes == 2


def test_pages_walk_secrets_then_principals_and_bad_tokens_are_refused() -> None:
    store, provider, _values = vault(n_secrets=4, principals=1)
    first = key_status(store, Keyring(provider), limit=4)
    second = key_status(store, Keyring(provider), limit=4, next_token=first.next_token)

    assert (first.secrets, second.secrets, second.principals, second.next_token) == (4, 0, 1, None)
    for bad in ("not-base64!", "eyJ4IjogMX0=", "bnVsbA=="):
        with pytest.raises(InvalidRequest, match="nextToken is not valid"):
            key_status(store, Keyring(provider), next_token=bad)
    with pytest.raises(InvalidRequest):
        key_status(store, Keyring(provider), limit=0)


def test_merge_adds_pages_up() -> None:
    page = KeyStatus(writer="a:1", keys=[KeyUsage(kid="a:1", provider="a", envelopes=2, versions=1, copies=1)],
                     secrets=1)
    total = merge([page, page])
    assert total.keys[0].envelopes == 4 and total.secrets == 2 and total.next_token is None


def test_only_global_admins_and_every_call_is_audited() -> None:
    store, provider, _values = vault(n_secrets=2, principals=0)
    events = Events()
    service = KeyAdminService(store, lambda: Keyring(provider), events)

    for call in (lambda c: service.status(c), lambda c: service.rotate(c, RotateKeyRequest()),
                 lambda c: service.rewrap(c, RewrapRequest())):
        with pytest.raises(AccessDenied, match="needs global admin"):
            call(caller(admin=False))
    assert [(d.action, d.status, d.actor) for d in events.drafts] == [
        (Action.KEY_REWRAP, Status.DENIED, "dev"), (Action.KEY_ROTATE, Status.DENIED, "dev"),
        (Action.KEY_REWRAP, Status.DENIED, "dev")]
    assert store.events == []

    root = caller(admin=True)
    assert service.status(root).keys[0].kid == "local:v1"
    rotation = service.rotate(root, RotateKeyRequest())
    assert (rotation.previous_kid, rotation.kid, rotation.new_version) == ("local:v1", "local:v2", True)
    progress = service.rewrap(root, RewrapRequest(limit=1))
    while not progress.done:
        progress = service.rewrap(root, RewrapRequest(job_id=progress.job_id, limit=1))
    assert (progress.target, progress.rewrapped, progress.data_keys) == ("local:v2", 7, 4)
    assert [d.details.get("operation") for d in events.drafts[3:]] == ["status", None]
    assert {d.actor for d in store.events} == {"root"} and store.events[0].action == Action.KEY_REWRAP


def test_rewrap_requests_are_checked() -> None:
    store, provider, _values = vault(n_secrets=1, principals=0)
    service = KeyAdminService(store, lambda: Keyring(provider), Events())
    root = caller(admin=True)
    provider.versions.append("v2")
    job = service.rewrap(root, RewrapRequest(limit=1))

    with pytest.raises(InvalidRequest, match="give only its jobId"):
        service.rewrap(root, RewrapRequest.model_validate({"jobId": job.job_id, "to": "local:v1"}))
    with pytest.raises(NotFound, match="no rewrap job rw_0000000000000000"):
        service.rewrap(root, RewrapRequest(job_id="rw_0000000000000000"))
    with pytest.raises(InvalidRequest, match="KMS options"):
        service.rotate(root, RotateKeyRequest(on_demand=True))
    assert [o for o in (SECRETS, PRINCIPALS)] == ["secrets", "principals"]
