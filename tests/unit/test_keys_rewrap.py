"""The rewrap engine over an in-memory envelope store with DynamoDB's transaction semantics."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib.audit.events import Action, AuditDraft
from chalicelib.errors import DecryptionFailed, InvalidRequest, KeyUnavailable
from chalicelib.ports import DataKey
from chalicelib.vault.encryption import Envelope, EnvelopeContext, open_envelope, seal
from chalicelib.vault.keys.envelopes import (
    CURRENT,
    MFA,
    MFA_LISTING,
    PRINCIPALS,
    SECRETS,
    STAGED,
    VERSION,
    EnvelopeRef,
    ItemUpdate,
    JobConflict,
    Owner,
)
from chalicelib.vault.keys.keyring import Keyring
from chalicelib.vault.keys.models import RewrapJob
from chalicelib.vault.keys.rewrap import (
    MAX_UPDATES_PER_BATCH,
    KeyMover,
    Rewrapper,
    new_rewrapper,
    resolve_target,
    source_matcher,
)


class Crash(Exception):
    """Stands for the process dying in the middle of a job."""


class VersionedFake:
    """A provider with named key versions (``<name>:<version>``), like the PKCS#11 and passphrase ones."""

    def __init__(self, name: str, versions: tuple[str, ...] = ("v1",)) -> None:
        self.name = name
        self.versions = list(versions)
        self.rewraps = 0
        self.crash_after: int | None = None
        self.plaintexts: list[bytes] = []

    def _master(self, kid: str) -> bytes:
        version = kid.split(":", 1)[1]
        if not kid.startswith(self.name + ":") or version not in self.versions:
            raise KeyUnavailable(f"{kid} is not here")
        return hashlib.sha256(kid.encode()).digest()

    def current_kid(self) -> str:
        return f"{self.name}:{self.versions[-1]}"

    def create_key_version(self) -> str:
        self.versions.append(f"v{len(self.versions) + 1}")
        return self.current_kid()

    def has_key(self, kid: str) -> bool:
        return kid.startswith(self.name + ":") and kid.split(":", 1)[1] in self.versions

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        plaintext = os.urandom(32)
        self.plaintexts.append(plaintext)
        wrapped, kid = self.wrap_data_key(plaintext, context)
        return DataKey(plaintext, wrapped, kid)

    def wrap_data_key(self, plaintext: bytes, context: Mapping[str, str], kid: str | None = None) -> tuple[bytes, str]:
        kid = kid or self.current_kid()
        nonce = os.urandom(12)
        return nonce + AESGCM(self._master(kid)).encrypt(nonce, plaintext, _aad(context)), kid

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        try:
            return AESGCM(self._master(kid)).decrypt(wrapped[:12], wrapped[12:], _aad(context))
        except InvalidTag:
            raise DecryptionFailed("wrapped data key failed authentication") from None

    def rewrap_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str],
                        target_kid: str | None = None) -> tuple[bytes, str]:
        if self.crash_after is not None and self.rewraps >= self.crash_after:
            raise Crash(f"crashed after {self.rewraps} rewraps")
        self.rewraps += 1
        return self.wrap_data_key(self.decrypt_data_key(wrapped, kid, context), context, target_kid)

    def check_health(self) -> None:
        return None


def _aad(context: Mapping[str, str]) -> bytes:
    return json.dumps(dict(context), sort_keys=True).encode()


class MemoryStore:
    """Owners in id order, conditional item updates, a conditional checkpoint, the audit events."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[str, RewrapJob] = {}
        self.events: list[AuditDraft] = []
        self.applied: list[int] = []
        self.writes = 0
        self.crash_after_writes: int | None = None
        self.before_apply: Callable[[], None] | None = None

    # building the vault
    def add_secret(self, secret_id: str, envelopes: list[Envelope], staged: dict[str, Envelope] | None = None) -> None:
        for envelope in envelopes:
            self.items[(f"SECRET#{secret_id}", f"V#{envelope.ctx.version:010d}")] = {"envelope": envelope}
        self.items[(f"SECRET#{secret_id}", "META")] = {"current": envelopes[-1], "staged": dict(staged or {}),
                                                       "rev": 1}

    def add_principal(self, principal_id: str, envelope: Envelope) -> None:
        self.items[(f"PRINCIPAL#{principal_id}", "META")] = {"mfa": {"envelope": envelope}}
        self.items[("PRINCIPALS", principal_id)] = {"mfa": {"envelope": envelope}}

    def envelopes(self) -> list[tuple[tuple[str, str], tuple[str, ...], Envelope]]:
        found: list[tuple[tuple[str, str], tuple[str, ...], Envelope]] = []
        for key, item in sorted(self.items.items()):
            if "envelope" in item:
                found.append((key, ("envelope",), item["envelope"]))
            if item.get("current"):
                found.append((key, ("current",), item["current"]))
            for label, envelope in sorted(item.get("staged", {}).items()):
                found.append((key, ("staged", label), envelope))
            if "mfa" in item:
                found.append((key, ("mfa", "envelope"), item["mfa"]["envelope"]))
        return found

    # EnvelopeStore
    def page(self, phase: str, cursor: str | None, limit: int) -> tuple[list[Owner], str | None]:
        ids = sorted({pk.split("#", 1)[1] for pk, sk in self.items if pk.startswith("SECRET#")}) if phase == SECRETS \
            else sorted(sk for pk, sk in self.items if pk == "PRINCIPALS")
        after = [i for i in ids if cursor is None or i > cursor]
        chosen = after[:limit]
        owners = [self._owner(phase, i) for i in chosen]
        return owners, (chosen[-1] if len(after) > limit else None)

    def _owner(self, phase: str, owner_id: str) -> Owner:
        owner = Owner(phase, owner_id)
        if phase == SECRETS:
            for key, path, envelope in self.envelopes():
                if key[0] == f"SECRET#{owner_id}":
                    kind = VERSION if path == ("envelope",) else CURRENT if path == ("current",) else STAGED
                    owner.refs.append(EnvelopeRef(key, path, kind, envelope))
        else:
            for key, kind in (((f"PRINCIPAL#{owner_id}", "META"), MFA), (("PRINCIPALS", owner_id), MFA_LISTING)):
                owner.refs.append(EnvelopeRef(key, ("mfa", "envelope"), kind, self.items[key]["mfa"]["envelope"]))
        return owner

    def reload(self, owner: Owner) -> Owner | None:
        return self._owner(owner.phase, owner.owner_id)

    def load_job(self, job_id: str) -> RewrapJob | None:
        return self.jobs.get(job_id)

    def save_job(self, job: RewrapJob, expected_step: int | None) -> None:
        stored = self.jobs.get(job.job_id)
        if (stored.step if stored else None) != expected_step:
            raise JobConflict("advanced elsewhere")
        self.jobs[job.job_id] = job

    def record(self, draft: AuditDraft) -> None:
        self.events.append(draft)

    def apply(self, updates: list[ItemUpdate]) -> list[bool]:
        assert len(updates) <= MAX_UPDATES_PER_BATCH
        self.applied.append(len(updates))
        results = []
        for update in updates:
            if self.crash_after_writes is not None and self.writes >= self.crash_after_writes:
                raise Crash(f"crashed after {self.writes} item writes")
            if self.before_apply is not None:
                hook, self.before_apply = self.before_apply, None
                hook()
            results.append(self._apply_one(update))
        return results

    def _apply_one(self, update: ItemUpdate) -> bool:
        item = self.items.get(update.item)
        for change in update.changes:
            try:
                if item is None or _get(item, change.path).edk != change.old_edk:
                    return False
            except KeyError:
                return False
        assert item is not None
        for change in update.changes:
            envelope = _get(item, change.path)
            _set(item, change.path, envelope.model_copy(update={"edk": change.new_edk, "kid": change.new_kid}))
        if update.bump_rev:
            item["rev"] += 1
        self.writes += 1
        return True


def _get(item: dict[str, Any], path: tuple[str, ...]) -> Envelope:
    value: Any = item
    for part in path:
        value = value[part]
    assert isinstance(value, Envelope)
    return value


def _set(item: dict[str, Any], path: tuple[str, ...], envelope: Envelope) -> None:
    for part in path[:-1]:
        item = item[part]
    item[path[-1]] = envelope


def draft(details: dict[str, Any]) -> AuditDraft:
    return AuditDraft(action=Action.KEY_REWRAP, actor="root", actor_type="user", details=details)


def vault(n_secrets: int = 12, versions: int = 2, provider: VersionedFake | None = None,
          principals: int = 2) -> tuple[MemoryStore, VersionedFake, dict[str, bytes]]:
    """A vault whose envelopes are under ``local:v1``; returns the plaintexts by (secret, version)."""
    provider = provider or VersionedFake("local")
    store = MemoryStore()
    values: dict[str, bytes] = {}
    for s in range(n_secrets):
        secret_id = f"s{s:04d}"
        envelopes = []
        for v in range(1, versions + 1):
            value = f"value {secret_id} v{v}".encode()
            envelopes.append(seal(value, EnvelopeContext(secret_id=secret_id, version=v, type="api_key"), provider))
            values[f"{secret_id}/{v}"] = value
        staged = {"PENDING": envelopes[0]} if s % 3 == 0 else None
        store.add_secret(secret_id, envelopes, staged)
    for p in range(principals):
        seed = f"seed {p}".encode()
        envelope = seal(seed, EnvelopeContext(secret_id=f"principal/p{p}", version=1, type="mfa_seed"), provider)
        store.add_principal(f"p{p}", envelope)
        values[f"principal/p{p}/1"] = seed
    return store, provider, values


def run_job(rewrapper: Rewrapper, store: MemoryStore, limit: int = 5, job: RewrapJob | None = None) -> RewrapJob:
    job = job or rewrapper.start(source=None, actor="root", draft=draft)
    for _ in range(1000):
        job = rewrapper.run_batch(job, limit=limit, draft=draft)
        if job.done:
            return job
    raise AssertionError("the job did not finish")


def assert_all_under(store: MemoryStore, provider: VersionedFake, kid: str, values: dict[str, bytes],
                     before: dict[tuple[tuple[str, str], tuple[str, ...]], Envelope]) -> None:
    """Every envelope copy: under ``kid`` once (it opens with that key alone), value intact, ciphertext unchanged."""
    for key, path, envelope in store.envelopes():
        assert envelope.kid == kid, (key, path)
        old = before[(key, path)]
        assert (envelope.ct, envelope.iv, envelope.tag, envelope.ctx) == (old.ct, old.iv, old.tag, old.ctx)
        assert open_envelope(envelope, envelope.ctx, provider) == values[value_key(envelope)]
    assert_one_wrap_per_data_key(store)


def assert_one_wrap_per_data_key(store: MemoryStore) -> None:
    """Copies of one envelope (same context, nonce and tag) all carry the same wrapped key."""
    wraps: dict[tuple[bytes, bytes, bytes], set[bytes]] = {}
    for _key, _path, envelope in store.envelopes():
        wraps.setdefault((envelope.ctx.aad(), envelope.iv, envelope.tag), set()).add(envelope.edk)
    assert all(len(edks) == 1 for edks in wraps.values())


def value_key(envelope: Envelope) -> str:
    return f"{envelope.ctx.secret_id}/{envelope.ctx.version}"


def snapshot(store: MemoryStore) -> dict[tuple[tuple[str, str], tuple[str, ...]], Envelope]:
    return {(key, path): envelope for key, path, envelope in store.envelopes()}


def test_moves_every_envelope_copy_without_touching_ciphertexts() -> None:
    store, provider, values = vault()
    before = snapshot(store)
    provider.versions.append("v2")

    job = run_job(new_rewrapper(store, Keyring(provider), source=None, target=None, include_target=False,
                                workers=4), store)

    provider.versions.remove("v1")
    assert_all_under(store, provider, "local:v2", values, before)
    copies = len(before)
    assert job.rewrapped == copies - 2  # the principals' listing copies are not counted twice
    assert job.data_keys == len({e.edk for e in before.values()}) == provider.rewraps
    assert (job.done, job.phase, job.conflicts, job.skipped) == (True, PRINCIPALS, 0, 0)
    assert store.items[("SECRET#s0000", "META")]["rev"] == 2


def test_one_audit_event_per_batch_without_key_material() -> None:
    store, provider, _values = vault()
    provider.versions.append("v2")
    before = snapshot(store)

    job = run_job(new_rewrapper(store, Keyring(provider), source=None, target=None, include_target=False,
                                workers=1), store)

    events = [e.details for e in store.events]
    assert [e["event"] for e in events] == ["started", *["batch"] * (len(events) - 2), "completed"]
    assert sum(1 for e in events if e.get("envelopes")) == job.batches > 1
    assert sum(e.get("envelopes", 0) for e in events) == job.rewrapped
    assert events[-1]["totals"]["rewrapped"] == job.rewrapped
    assert {e["to"] for e in events} == {"local:v2"}
    dumped = json.dumps([e.model_dump(mode="json") for e in store.events])
    for secret in [*provider.plaintexts, *(e.edk for e in before.values())]:
        for form in (base64.b64encode(secret).decode(), secret.hex(), base64.urlsafe_b64encode(secret).decode()):
            assert form not in dumped


def test_a_crash_in_the_middle_and_a_rerun_lose_nothing_and_wrap_nothing_twice() -> None:
    store, provider, values = vault(n_secrets=40, versions=3)
    before = snapshot(store)
    distinct = len({e.edk for e in before.values()})
    provider.versions.append("v2")
    rewrapper = new_rewrapper(store, Keyring(provider), source=None, target=None, include_target=False, workers=1)
    job = rewrapper.start(source=None, actor="root", draft=draft)
    provider.crash_after = 70

    with pytest.raises(Crash):
        run_job(rewrapper, store, limit=30, job=job)

    half = store.jobs[job.job_id]
    moved = [e for _k, _p, e in store.envelopes() if e.kid == "local:v2"]
    assert 0 < half.data_keys < distinct and not half.done
    assert len(moved) >= half.rewrapped > 0
    provider.crash_after = None
    calls_before_rerun = provider.rewraps

    rerun = new_rewrapper(store, Keyring(provider), source=None, target=None, include_target=False, workers=1)
    job = run_job(rerun, store, limit=30, job=rerun.load(job.job_id))

    provider.versions.remove("v1")
    assert_all_under(store, provider, "local:v2", values, before)
    assert job.data_keys == distinct
    assert provider.rewraps - calls_before_rerun == distinct - half.data_keys
    assert len(store.envelopes()) == len(before)


def test_an_owner_with_more_envelopes_than_a_batch_holds_is_split_and_resumable() -> None:
    provider = VersionedFake("local")
    store, _provider, values = vault(n_secrets=3, versions=100, provider=provider, principals=0)
    before = snapshot(store)
    provider.versions.append("v2")
    rewrapper = new_rewrapper(store, Keyring(provider), source=None, target=None, include_target=False, workers=1)
    job = rewrapper.start(source=None, actor="root", draft=draft)
    provider.crash_after = 150

    with pytest.raises(Crash):
        rewrapper.run_batch(job, limit=10, draft=draft)

    assert store.applied == [MAX_UPDATES_PER_BATCH]
    assert store.jobs[job.job_id].cursor is None  # s0000 is not complete yet
    provider.crash_after = None
    job = run_job(rewrapper, store, limit=10, job=rewrapper.load(job.job_id))

    assert max(store.applied) == MAX_UPDATES_PER_BATCH
    provider.versions.remove("v1")
    assert_all_under(store, provider, "local:v2", values, before)
    assert job.data_keys == len({e.edk for e in before.values()})


def test_an_envelope_changed_by_a_writer_meanwhile_is_read_again_not_overwritten() -> None:
    store, provider, values = vault(n_secrets=4, principals=0)
    provider.versions.append("v2")
    rewrapper = new_rewrapper(store, Keyring(provider), source=None, target=None, include_target=False, workers=1)
    job = rewrapper.start(source=None, actor="root", draft=draft)
    replacement = seal(b"value s0001 v2", EnvelopeContext(secret_id="s0001", version=2, type="api_key"),
                       VersionedFake("local"))

    def writer_wins() -> None:
        store.items[("SECRET#s0001", "META")]["current"] = replacement
        store.items[("SECRET#s0001", "META")]["rev"] += 1

    store.before_apply = writer_wins
    job = run_job(rewrapper, store, limit=10, job=job)

    current = store.items[("SECRET#s0001", "META")]["current"]
    assert current.kid == "local:v2" and current.ct == replacement.ct
    provider.versions.remove("v1")
    assert open_envelope(current, current.ctx, provider) == values["s0001/2"]
    assert job.conflicts == 0 and store.items[("SECRET#s0001", "META")]["rev"] == 3


def test_an_owner_that_keeps_changing_is_reported_as_a_conflict() -> None:
    store, provider, _values = vault(n_secrets=2, principals=0)
    provider.versions.append("v2")
    rewrapper = new_rewrapper(store, Keyring(provider), source=None, target=None, include_target=False, workers=1)
    original_apply = store.apply

    def busy_apply(updates: list[ItemUpdate]) -> list[bool]:
        if any(u.owner == "s0001" for u in updates):
            meta = store.items[("SECRET#s0001", "META")]
            meta["current"] = seal(b"value", EnvelopeContext(secret_id="s0001", version=2, type="api_key"),
                                   VersionedFake("local"))
        return original_apply(updates)

    store.apply = busy_apply  # type: ignore[method-assign]
    job = run_job(rewrapper, store, limit=10)

    assert job.conflicts == 1 and job.done
    assert store.items[("SECRET#s0000", "META")]["current"].kid == "local:v2"
    assert store.items[("SECRET#s0001", "META")]["current"].kid == "local:v1"


def test_two_runs_of_one_job_cannot_both_advance_it() -> None:
    store, provider, _values = vault(n_secrets=6, principals=0)
    provider.versions.append("v2")
    rewrapper = new_rewrapper(store, Keyring(provider), source=None, target=None, include_target=False, workers=1)
    job = rewrapper.start(source=None, actor="root", draft=draft)
    rewrapper.run_batch(job, limit=2, draft=draft)

    with pytest.raises(JobConflict):
        rewrapper.run_batch(job, limit=2, draft=draft)  # a stale copy of the checkpoint


def test_from_selects_envelopes_and_include_target_rewraps_those_already_there() -> None:
    store, provider, values = vault(n_secrets=4, principals=0)
    other = VersionedFake("other")
    store.add_secret("t0000", [seal(b"other value", EnvelopeContext(secret_id="t0000", version=1, type="api_key"),
                                    other)])
    values["t0000/1"] = b"other value"
    keyring = Keyring(provider, [other])

    job = run_job(new_rewrapper(store, keyring, source="other", target="local", include_target=False, workers=1), store)
    assert store.items[("SECRET#t0000", "META")]["current"].kid == "local:v1"
    assert job.rewrapped == 2 and job.skipped == len(snapshot(store)) - 2

    edks = {k: e.edk for k, e in snapshot(store).items()}
    job = run_job(new_rewrapper(store, keyring, source=None, target=None, include_target=True, workers=1), store)
    assert job.rewrapped == len(edks) and all(e.edk != edks[k] for k, e in snapshot(store).items())
    for _key, _path, envelope in store.envelopes():
        assert open_envelope(envelope, envelope.ctx, keyring) == values[value_key(envelope)]


def test_between_providers_the_data_key_is_unwrapped_and_wrapped_only() -> None:
    old = VersionedFake("old")
    store, _old, values = vault(n_secrets=3, provider=old, principals=1)
    before = snapshot(store)
    new = VersionedFake("new")

    run_job(new_rewrapper(store, Keyring(new, [old]), source=None, target=None, include_target=False, workers=1), store)

    assert_all_under(store, new, "new:v1", values, before)


def test_targets_and_sources_are_checked() -> None:
    provider = VersionedFake("local", ("v1", "v2"))
    keyring = Keyring(provider)

    assert resolve_target(keyring, None) == (provider, "local:v2")
    assert resolve_target(keyring, "local:v1") == (provider, "local:v1")
    with pytest.raises(InvalidRequest, match="no key provider 'kms' is configured"):
        resolve_target(keyring, "kms:alias/x")
    with pytest.raises(InvalidRequest, match="'local:v9' is not a key of the local provider"):
        resolve_target(keyring, "local:v9")
    matches = source_matcher(keyring, "local:v1")
    assert matches("local:v1") and not matches("local:v2")
    assert source_matcher(keyring, "local")("local:v7") and not source_matcher(keyring, "other")("local:v7")


def test_a_provider_that_wraps_under_another_key_than_asked_is_refused() -> None:
    provider = VersionedFake("local", ("v1", "v2"))
    mover = KeyMover(Keyring(provider), provider, "local:v2")
    data_key = provider.generate_data_key({"a": "b"})
    provider.rewrap_data_key = lambda *args: (b"x", "local:v1")  # type: ignore[method-assign]

    with pytest.raises(KeyUnavailable, match="wrapped under local:v1, expected local:v2"):
        mover.rewrap(data_key.wrapped, data_key.kid, {"a": "b"})


def test_a_finished_job_is_not_run_again_and_an_unknown_one_is_refused() -> None:
    store, provider, _values = vault(n_secrets=2, principals=0)
    rewrapper = new_rewrapper(store, Keyring(provider), source=None, target=None, include_target=False, workers=1)
    job = run_job(rewrapper, store)
    events = len(store.events)

    assert rewrapper.run_batch(job, limit=5, draft=draft) is job
    assert len(store.events) == events
    with pytest.raises(InvalidRequest, match="no rewrap job rw_missing"):
        rewrapper.load("rw_missing")
    assert isinstance(job.finished_at, datetime)


def test_a_crash_between_item_writes_and_a_rerun_leave_every_copy_under_the_target_once() -> None:
    store, provider, values = vault(n_secrets=30, versions=2)
    before = snapshot(store)
    provider.versions.append("v2")
    rewrapper = new_rewrapper(store, Keyring(provider), source=None, target=None, include_target=False, workers=1)
    job = rewrapper.start(source=None, actor="root", draft=draft)
    store.crash_after_writes = 50

    with pytest.raises(Crash):
        run_job(rewrapper, store, limit=40, job=job)

    assert store.jobs[job.job_id].rewrapped == 0  # the checkpoint did not see the half-written batch
    store.crash_after_writes = None
    calls = provider.rewraps
    job = run_job(rewrapper, store, limit=40, job=rewrapper.load(job.job_id))

    provider.versions.remove("v1")
    assert_all_under(store, provider, "local:v2", values, before)
    assert 0 < provider.rewraps - calls < len({e.edk for e in before.values()})


def test_a_wrap_into_another_provider_is_checked_before_it_is_written() -> None:
    old, new = VersionedFake("old"), VersionedFake("new")
    mover = KeyMover(Keyring(new, [old]), new, "new:v1")
    data_key = old.generate_data_key({"a": "b"})
    assert new.decrypt_data_key(*mover.rewrap(data_key.wrapped, data_key.kid, {"a": "b"}), {"a": "b"}) == \
        data_key.plaintext

    real_wrap = new.wrap_data_key
    new.wrap_data_key = lambda plaintext, context, kid=None: real_wrap(b"\0" * 32, context, kid)  # type: ignore
    with pytest.raises(KeyUnavailable, match="new:v1 did not give back the data key it wrapped"):
        mover.rewrap(data_key.wrapped, data_key.kid, {"a": "b"})
