"""Re-wrap every data key under another master key, without decrypting any secret value.

Only the wrapped data keys (``edk``) change: the ciphertexts, nonces and tags of the secret
values are left as they are, so no secret value is ever decrypted. How a data key moves:

* KMS to KMS: ``ReEncrypt`` with the envelope context as source and destination encryption
  context (the data key never leaves KMS);
* PKCS#11 to PKCS#11: unwrap with the old key version and wrap with the new one, both inside
  the token;
* passphrase to passphrase, or between providers: unwrap the data key with the old provider and
  wrap it with the new one (only the data key, in memory).

A job walks the vault owner by owner (each secret with its versions and its META copies, then
the principals' MFA seeds) in batches of at most :data:`MAX_UPDATES_PER_BATCH` item updates.
For each batch, in this order:

1. its ``key_rewrap`` audit event (owners, envelope and data-key counts) is written; if that
   fails, nothing is changed (fail closed);
2. each envelope copy is rewritten by one conditional ``UpdateItem``: only ``edk`` and ``kid``
   change, and only if the ``edk`` is still the one read; an owner whose envelopes changed
   meanwhile is read again and planned again (then counted as a conflict);
3. the job's checkpoint (``SYSTEM`` / ``REWRAP#<job>``: cursor and counts) is saved, conditioned
   on the step it read, so two runs of one job cannot both advance it.

So nothing is lost in a crash: a rerun resumes after the last checkpoint, skips the envelopes
already under the target, and gives a copy left behind the data key its sibling copy already
got, so no data key is wrapped twice. (Per-item writes rather than one transaction per batch:
a transaction of 100 items costs twice the write capacity, and the local moto server copies a
whole table for every item of a transaction.)

Example::

    rewrapper = Rewrapper(store, KeyMover(keyring, *resolve_target(keyring, "kms:alias/new")))
    job = rewrapper.start(source=None, actor="root", draft=draft)
    while not job.done:
        job = rewrapper.run_batch(job, limit=100, draft=draft)
"""

from __future__ import annotations

import hmac
import secrets as random
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from chalicelib.audit.events import AuditDraft
from chalicelib.clock import Clock, SystemClock
from chalicelib.errors import InvalidRequest, KeyUnavailable
from chalicelib.ports import KeyProvider
from chalicelib.vault.encryption import Envelope
from chalicelib.vault.keys.envelopes import (
    PHASES,
    EnvelopeChange,
    EnvelopeStore,
    ItemUpdate,
    Owner,
)
from chalicelib.vault.keys.keyring import Keyring
from chalicelib.vault.keys.models import RewrapJob

MAX_UPDATES_PER_BATCH = 90
"""Item updates per batch, so one audit event names a bounded list of owners."""
MAX_RETRIES = 3

DraftFactory = Callable[[dict[str, Any]], AuditDraft]
"""Builds the ``key_rewrap`` audit draft of one batch from its details."""


def plain_keyring(keys: KeyProvider) -> Keyring:
    """The :class:`Keyring` behind a cache (rewrap must not fill the data-key cache)."""
    inner: Any = keys
    while not isinstance(inner, Keyring) and hasattr(inner, "inner"):
        inner = inner.inner
    return inner if isinstance(inner, Keyring) else Keyring(inner)


def provider_named(keyring: Keyring, name: str) -> KeyProvider:
    for provider in keyring.providers():
        if provider.name == name:
            return provider
    raise InvalidRequest(f"no key provider '{name}' is configured (V_SECURE_KEY_PROVIDER, "
                         "V_SECURE_KEY_PROVIDERS_READ)")


def resolve_target(keyring: Keyring, target: str | None) -> tuple[KeyProvider, str]:
    """The provider and exact kid to wrap under: ``None`` = the writer's current key.

    Example::

        resolve_target(keyring, "kms:alias/v-secure-data-2")  # (kms provider, "kms:arn:aws:kms:...")
    """
    if not target:
        writer = keyring.writer
        return writer, _call_kid(writer, "current_kid")
    name, _colon, rest = target.partition(":")
    provider = provider_named(keyring, name)
    if not rest:
        return provider, _call_kid(provider, "current_kid")
    if name == "kms":
        return provider, _call_kid(provider, "resolve_kid", rest)
    has_key = getattr(provider, "has_key", None)
    if has_key is None or not has_key(target):
        raise InvalidRequest(f"'{target}' is not a key of the {name} provider")
    return provider, target


def source_matcher(keyring: Keyring, source: str | None) -> Callable[[str], bool]:
    """Which kids ``--from`` selects: all, one provider's (``kms``), or one key."""
    if not source:
        return lambda kid: True
    name, _colon, rest = source.partition(":")
    if not rest:
        return lambda kid: kid.split(":", 1)[0] == name
    if name == "kms" and not rest.startswith("arn:"):
        source = _call_kid(provider_named(keyring, "kms"), "resolve_kid", rest)
    wanted = source
    return lambda kid: kid == wanted


def _call_kid(provider: KeyProvider, method: str, *args: str) -> str:
    function = getattr(provider, method, None)
    if function is None:
        raise InvalidRequest(f"the {provider.name} provider cannot be a rewrap target")
    kid: str = function(*args)
    return kid


class KeyMover:
    """Moves one wrapped data key to the target key; the secret value is never touched.

    Example::

        mover = KeyMover(keyring, kms_provider, "kms:arn:aws:kms:us-east-1:111122223333:key/...")
        new_edk, new_kid = mover.rewrap(envelope.edk, envelope.kid, envelope.ctx.as_map())
    """

    def __init__(self, keyring: Keyring, target: KeyProvider, target_kid: str) -> None:
        self._keyring = keyring
        self.target = target
        self.target_kid = target_kid

    def rewrap(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> tuple[bytes, str]:
        source = self._keyring.provider_for(kid)
        same_provider = getattr(source, "rewrap_data_key", None)
        if source.name == self.target.name and same_provider is not None:
            new_wrapped, new_kid = same_provider(wrapped, kid, context, self.target_kid)
        else:
            new_wrapped, new_kid = self._between_providers(source, wrapped, kid, context)
        if new_kid != self.target_kid:
            raise KeyUnavailable(f"the key provider wrapped under {new_kid}, expected {self.target_kid}")
        return bytes(new_wrapped), new_kid

    def _between_providers(self, source: KeyProvider, wrapped: bytes, kid: str,
                           context: Mapping[str, str]) -> tuple[bytes, str]:
        """Unwrap with the old provider, wrap with the new one, and check the new wrap opens."""
        wrap = getattr(self.target, "wrap_data_key", None)
        if wrap is None:
            raise InvalidRequest(f"the {self.target.name} provider cannot wrap an existing data key")
        data_key = source.decrypt_data_key(wrapped, kid, context)
        new_wrapped, new_kid = wrap(data_key, context, self.target_kid)
        if not hmac.compare_digest(self.target.decrypt_data_key(new_wrapped, new_kid, context), data_key):
            raise KeyUnavailable(f"{new_kid} did not give back the data key it wrapped")
        return new_wrapped, new_kid


@dataclass
class _Batch:
    """What one call has read and planned since its last checkpoint."""

    job: RewrapJob
    updates: list[ItemUpdate] = field(default_factory=list)
    owners: dict[str, Owner] = field(default_factory=dict)
    cursor: str | None = None
    done_owners: int = 0
    skipped: int = 0
    phase_finished: bool = False

    def __post_init__(self) -> None:
        self.cursor = self.job.cursor

    @property
    def dirty(self) -> bool:
        return bool(self.updates) or self.cursor != self.job.cursor or self.phase_finished \
            or self.done_owners > 0


class Rewrapper:
    """Runs rewrap jobs over an :class:`EnvelopeStore`.

    Example::

        job = Rewrapper(store, mover).run_batch(job, limit=100, draft=draft)
    """

    def __init__(self, store: EnvelopeStore, mover: KeyMover, *, source: Callable[[str], bool] | None = None,
                 include_target: bool = False, clock: Clock | None = None, workers: int = 8) -> None:
        self._store = store
        self._mover = mover
        self._source = source or (lambda kid: True)
        self._include_target = include_target
        self._clock = clock or SystemClock()
        self._workers = workers

    def start(self, *, source: str | None, actor: str, draft: DraftFactory) -> RewrapJob:
        """Record a new job (audit event first); no envelope is touched yet."""
        now = self._clock.now()
        job = RewrapJob(job_id=f"rw_{random.token_hex(8)}", source=source, target=self._mover.target_kid,
                        include_target=self._include_target, created_by=actor, created_at=now, updated_at=now)
        self._store.record(draft(self._details(job, "started")))
        self._store.save_job(job, None)
        return job

    def load(self, job_id: str) -> RewrapJob:
        job = self._store.load_job(job_id)
        if job is None:
            raise InvalidRequest(f"no rewrap job {job_id}")
        return job

    def run_batch(self, job: RewrapJob, *, limit: int, draft: DraftFactory) -> RewrapJob:
        """Re-wrap the envelopes of up to ``limit`` owners after the job's checkpoint."""
        if job.done:
            return job
        if job.target != self._mover.target_kid:
            raise InvalidRequest(f"job {job.job_id} wraps under {job.target}, not {self._mover.target_kid}")
        owners, next_cursor = self._store.page(job.phase, job.cursor, limit)
        batch = _Batch(job)
        # Owners are planned several at a time (a KMS ReEncrypt is a round trip) but added, and
        # written, in order: the checkpoint's cursor only ever passes owners that are done.
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            plans = pool.map(self._plan, owners) if self._workers > 1 else map(self._plan, owners)
            for owner, plan in zip(owners, plans, strict=True):
                self._add_owner(batch, owner, plan, draft)
        batch.phase_finished = next_cursor is None
        return self._flush(batch, draft, final=True)

    # --- planning ------------------------------------------------------------------------------

    def _add_owner(self, batch: _Batch, owner: Owner, plan: tuple[list[ItemUpdate], int],
                   draft: DraftFactory) -> None:
        updates, skipped = plan
        for start in range(0, len(updates), MAX_UPDATES_PER_BATCH):
            part = updates[start:start + MAX_UPDATES_PER_BATCH]
            if len(batch.updates) + len(part) > MAX_UPDATES_PER_BATCH:
                batch.job = self._flush(batch, draft, final=False)
            batch.updates.extend(part)
            batch.owners[owner.label] = owner
        batch.cursor = owner.owner_id
        batch.done_owners += 1
        batch.skipped += skipped

    def _plan(self, owner: Owner) -> tuple[list[ItemUpdate], int]:
        """The updates that move ``owner``'s wanted envelopes to the target, and how many it skips.

        Copies of one envelope (a version and its META copy share ciphertext, nonce and tag) get
        one re-wrapped data key; a copy left behind by an interrupted run takes the edk its
        sibling already has under the target, so no data key is re-wrapped twice.
        """
        moved: dict[tuple[bytes, bytes, bytes], tuple[bytes, str]] = {}
        for ref in owner.refs:
            if ref.envelope.kid == self._mover.target_kid and not self._include_target:
                moved.setdefault(_identity(ref.envelope), (ref.envelope.edk, ref.envelope.kid))
        changes: dict[tuple[str, str], ItemUpdate] = {}
        skipped = 0
        for ref in owner.refs:
            envelope = ref.envelope
            if not self._wanted(envelope.kid):
                skipped += ref.counted
                continue
            identity = _identity(envelope)
            fresh = identity not in moved
            if fresh:
                moved[identity] = self._mover.rewrap(envelope.edk, envelope.kid, envelope.ctx.as_map())
            new_edk, new_kid = moved[identity]
            update = changes.setdefault(ref.item, ItemUpdate(ref.item, owner.label, [], bump_rev=ref.on_meta))
            update.changes.append(EnvelopeChange(ref.path, envelope.edk, new_edk, new_kid, ref.counted, fresh))
        return list(changes.values()), skipped

    def _wanted(self, kid: str) -> bool:
        return self._source(kid) and (self._include_target or kid != self._mover.target_kid)

    # --- writing -------------------------------------------------------------------------------

    def _flush(self, batch: _Batch, draft: DraftFactory, *, final: bool) -> RewrapJob:
        """Audit the batch, write its updates, then checkpoint (see the module docstring)."""
        job = batch.job
        if not batch.dirty:
            return job
        applied: list[ItemUpdate] = []
        conflicts = 0
        if batch.updates:
            self._store.record(draft(self._details(job, "batch", batch.updates)))
            applied, conflicts = self._apply(batch)
        checkpoint = self._checkpoint(batch, applied, conflicts, final=final)
        if checkpoint.done:
            self._store.record(draft(self._details(checkpoint, "completed")))
        self._store.save_job(checkpoint, job.step)
        batch.job, batch.updates, batch.owners = checkpoint, [], {}
        batch.done_owners = batch.skipped = 0
        batch.cursor = checkpoint.cursor
        return checkpoint

    def _apply(self, batch: _Batch) -> tuple[list[ItemUpdate], int]:
        """Write the updates; an owner whose envelopes changed meanwhile is read and planned again."""
        applied: list[ItemUpdate] = []
        pending = batch.updates
        for attempt in range(MAX_RETRIES + 1):
            results = self._store.apply(pending)
            applied.extend(u for u, ok in zip(pending, results, strict=True) if ok)
            failed = sorted({u.owner for u, ok in zip(pending, results, strict=True) if not ok})
            if not failed or attempt == MAX_RETRIES:
                return applied, len(failed)
            pending = []
            for label in failed:
                fresh = self._store.reload(batch.owners[label])
                if fresh is not None:
                    batch.owners[label] = fresh
                    pending.extend(self._plan(fresh)[0])
        return applied, 0  # pragma: no cover - the loop returns on its last attempt

    def _checkpoint(self, batch: _Batch, applied: list[ItemUpdate], conflicts: int, *, final: bool) -> RewrapJob:
        job = batch.job
        changes = [c for u in applied for c in u.changes]
        phase, cursor, done = job.phase, batch.cursor, False
        if final and batch.phase_finished:
            following = PHASES.index(job.phase) + 1
            if following < len(PHASES):
                phase, cursor = PHASES[following], None
            else:
                done = True
        now = self._clock.now()
        return job.model_copy(update={
            "phase": phase, "cursor": cursor, "done": done, "step": job.step + 1,
            "owners": job.owners + batch.done_owners, "skipped": job.skipped + batch.skipped,
            "conflicts": job.conflicts + conflicts,
            "rewrapped": job.rewrapped + sum(c.counted for c in changes),
            "data_keys": job.data_keys + sum(c.new_key for c in changes),
            "batches": job.batches + (1 if batch.updates else 0),
            "updated_at": now, "finished_at": now if done else None})

    def _details(self, job: RewrapJob, event: str, updates: list[ItemUpdate] | None = None) -> dict[str, Any]:
        details: dict[str, Any] = {"job": job.job_id, "event": event, "from": job.source or "*", "to": job.target,
                                   "include_target": job.include_target}
        if updates is not None:
            changes = [c for u in updates for c in u.changes]
            details.update(batch=job.batches + 1, envelopes=sum(c.counted for c in changes),
                           data_keys=sum(c.new_key for c in changes),
                           owners=sorted({u.owner for u in updates}))
        if event == "completed":
            details.update(totals={"owners": job.owners, "rewrapped": job.rewrapped, "data_keys": job.data_keys,
                                   "skipped": job.skipped, "conflicts": job.conflicts, "batches": job.batches})
        return details


def _identity(envelope: Envelope) -> tuple[bytes, bytes, bytes]:
    return envelope.ctx.aad(), envelope.iv, envelope.tag


def new_rewrapper(store: EnvelopeStore, keyring: Keyring, *, source: str | None, target: str | None,
                  include_target: bool, clock: Clock | None = None, workers: int = 8) -> Rewrapper:
    """A :class:`Rewrapper` for ``--from source --to target`` over ``keyring``'s providers."""
    provider, target_kid = resolve_target(keyring, target)
    return Rewrapper(store, KeyMover(keyring, provider, target_kid), source=source_matcher(keyring, source),
                     include_target=include_target, clock=clock, workers=workers)
