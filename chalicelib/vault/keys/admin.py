"""Key administration use cases behind ``/keys/...``: status, rotate, rewrap.

Global admins only. Every call is audited (denials too): ``key_rotate`` for a rotation,
``key_rewrap`` for each rewrap batch (written in the batch's own transaction) and for a status
read (``details.operation = "status"``).

Example::

    service = get_key_admin_service()
    progress = service.rewrap(caller, RewrapRequest(target="kms:alias/v-secure-data-2"))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.access_control.context import Caller
from chalicelib.access_control.gate import require_global_admin
from chalicelib.audit.events import Action, AuditDraft, AuditEvent, Status
from chalicelib.errors import InvalidRequest, NotFound, VSecureError
from chalicelib.ports import KeyProvider
from chalicelib.vault.keys.envelopes import EnvelopeStore
from chalicelib.vault.keys.keyring import Keyring
from chalicelib.vault.keys.models import (
    KeyRotation,
    KeyStatus,
    RewrapProgress,
    RewrapRequest,
    RotateKeyRequest,
)
from chalicelib.vault.keys.rewrap import new_rewrapper, plain_keyring
from chalicelib.vault.keys.rotation import rotate_master_key
from chalicelib.vault.keys.status import key_status

AuditCommit = Callable[[AuditDraft], AuditEvent]


class KeyAdminService:
    """Example::

        KeyAdminService(store, get_admin_keyring, get_audit_writer().commit).status(caller)
    """

    def __init__(self, store: EnvelopeStore, keyring: Callable[[], KeyProvider], audit: AuditCommit) -> None:
        self._store = store
        self._keyring = keyring
        self._audit = audit

    def status(self, caller: Caller, *, limit: int = 200, next_token: str | None = None) -> KeyStatus:
        self._require_admin(caller, Action.KEY_REWRAP, "status")
        page = key_status(self._store, self._plain(), limit=limit, next_token=next_token)
        self._audit(caller.draft(Action.KEY_REWRAP, details={
            "operation": "status", "secrets": page.secrets, "principals": page.principals,
            "kids": [k.kid for k in page.keys]}))
        return page

    def rotate(self, caller: Caller, request: RotateKeyRequest) -> KeyRotation:
        self._require_admin(caller, Action.KEY_ROTATE, "rotate")
        keyring = self._plain()
        try:
            rotation = rotate_master_key(keyring, request)
        except VSecureError as error:
            self._audit(caller.draft(Action.KEY_ROTATE, status=Status.FAILURE, details={
                "provider": keyring.writer.name, "error": error.code}))
            raise
        self._audit(caller.draft(Action.KEY_ROTATE, details={
            "provider": rotation.provider, "kid": rotation.kid, "previous_kid": rotation.previous_kid,
            "new_version": rotation.new_version, "on_demand": request.on_demand,
            "rotation_period_days": rotation.rotation_period_days}))
        return rotation

    def rewrap(self, caller: Caller, request: RewrapRequest) -> RewrapProgress:
        """Start a job (no ``job_id``) and run one batch, or run the next batch of a job."""
        self._require_admin(caller, Action.KEY_REWRAP, "rewrap")
        keyring = self._plain()

        def draft(details: dict[str, Any]) -> AuditDraft:
            return caller.draft(Action.KEY_REWRAP, details=details)

        if request.job_id is None:
            rewrapper = new_rewrapper(self._store, keyring, source=request.source, target=request.target,
                                      include_target=request.include_target)
            job = rewrapper.start(source=request.source, actor=caller.principal_id, draft=draft)
        else:
            found = self._store.load_job(request.job_id)
            if found is None:
                raise NotFound(f"no rewrap job {request.job_id}")
            job = found
            if request.source not in (None, job.source) or request.target not in (None, job.target):
                raise InvalidRequest(f"job {job.job_id} moves envelopes from {job.source or '*'} to {job.target}; "
                                     "give only its jobId to go on")
            rewrapper = new_rewrapper(self._store, keyring, source=job.source, target=job.target,
                                      include_target=job.include_target)
        return RewrapProgress.of(rewrapper.run_batch(job, limit=request.limit, draft=draft))

    def _plain(self) -> Keyring:
        return plain_keyring(self._keyring())

    def _require_admin(self, caller: Caller, action: Action, operation: str) -> None:
        require_global_admin(caller, action, f"keys {operation}", audit=self._audit,
                             details={"operation": operation})


def get_key_admin_service() -> KeyAdminService:
    from chalicelib.audit.stream import get_audit_writer
    from chalicelib.aws import client
    from chalicelib.config import get_settings
    from chalicelib.vault.keys.envelopes import DynamoEnvelopeStore
    from chalicelib.vault.keys.keyring import get_admin_keyring

    writer = get_audit_writer()
    store = DynamoEnvelopeStore(client("dynamodb"), get_settings().secrets_table, writer)
    return KeyAdminService(store, get_admin_keyring, writer.commit)
