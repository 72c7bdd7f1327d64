"""TOTP multi-factor authentication (RFC 6238, pyotp): enrolment and per-request codes.

The TOTP seed is stored like any secret value: sealed in an envelope (AES-256-GCM under a
fresh data key from the key provider) bound to ``("mfa/<principal>", <enrolment n>,
"mfa_totp")``, on the principal record's ``mfa`` field. Enrolment is two steps: ``setup``
creates a pending seed and hands out the ``otpauth://`` URI once; ``activate`` turns it on
after the first valid code.

A code is accepted for the current 30 s step or one step either side, and only once: the
step is claimed with a conditional put (``pk=MFA#<principal>``, ``sk=STEP#<step>``, with a
TTL), so a replay is refused even when it reaches another process. A read claims the step in
the same transaction as its audit event (:func:`verify_request_code` with ``defer=True``
returns the items). Failed codes are counted per principal (``sk=FAILED#<window>``) and
audited (``mfa_failed``); after :data:`MAX_FAILED_CODES` in one window every code is refused
until the window ends.

Example::

    service = get_mfa_service()
    setup = service.setup(caller)                   # setup.otpauth_uri -> authenticator app
    service.activate(caller, "123456")              # the first code from the app
    items = verify_request_code(caller, defer=True)  # add to the read's transaction
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from typing import Any

import pyotp
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.access_control.auth import Directory, PrincipalRecord
from chalicelib.access_control.context import Caller
from chalicelib.access_control.gate import require_global_admin, require_self
from chalicelib.access_control.wire import MfaSetup, MfaStatus
from chalicelib.audit.events import Action, AuditDraft, Status
from chalicelib.audit.stream import AuditWriter, TransactionCancelled
from chalicelib.clock import Clock, SystemClock
from chalicelib.errors import AccessDenied, Conflict, DependencyUnavailable, InvalidRequest
from chalicelib.ports import KeyProvider
from chalicelib.vault.encryption import Envelope, EnvelopeContext, open_envelope, seal

MFA_TYPE = "mfa_totp"
ISSUER = "v-secure"
STEP_SECONDS = 30
DIGITS = 6
VALID_WINDOW = 1
MAX_FAILED_CODES = 5
FAILURE_WINDOW_SECONDS = 900
MFA_REQUIRED = "mfa_required"
MFA_INVALID = "mfa_invalid"
_CODE = re.compile(r"^\d{6}$")
_STEP_SK = "STEP#"
_FAILED_SK = "FAILED#"


def mfa_pk(principal_id: str) -> str:
    return f"MFA#{principal_id}"


def seed_context(principal_id: str, enrolment: int) -> EnvelopeContext:
    """What a principal's TOTP seed is bound to (a seed moved to another principal fails)."""
    return EnvelopeContext(secret_id=f"mfa/{principal_id}", version=enrolment, type=MFA_TYPE)


def matching_step(seed: str, code: str, now: float, window: int = VALID_WINDOW) -> int | None:
    """The time step whose code is ``code`` (current step +/- ``window``), compared in constant time."""
    totp = pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS)
    current = int(now // STEP_SECONDS)
    found = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


class MfaLedger:
    """Used time steps and failure counters in the secrets table.

    Example::

        items = ledger.claim_items("alice", step, now)   # conditional: refuses a used step
        ledger.commit(items)                            # or add them to another transaction
    """

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def claim_items(self, principal_id: str, step: int, now: float) -> list[dict[str, Any]]:
        """Claim ``step`` (refused if used) and check the principal is not locked out."""
        window = int(now // FAILURE_WINDOW_SECONDS)
        return [
            {"Put": {
                "TableName": self._table,
                "Item": {"pk": {"S": mfa_pk(principal_id)}, "sk": {"S": f"{_STEP_SK}{step}"},
                         "ttl": {"N": str((step + VALID_WINDOW + 2) * STEP_SECONDS)}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }},
            {"ConditionCheck": {
                "TableName": self._table,
                "Key": {"pk": {"S": mfa_pk(principal_id)}, "sk": {"S": f"{_FAILED_SK}{window}"}},
                "ConditionExpression": "attribute_not_exists(failures) OR failures < :max",
                "ExpressionAttributeValues": {":max": {"N": str(MAX_FAILED_CODES)}},
            }},
        ]

    def commit(self, items: list[dict[str, Any]]) -> None:
        """Write ``items`` on their own; raises :class:`TransactionCancelled` if a condition failed."""
        try:
            self._db.transact_write_items(TransactItems=items)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            if code == "TransactionCanceledException":
                reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in reasons:
                    raise TransactionCancelled(reasons) from None
            raise DependencyUnavailable("dynamodb", f"TransactWriteItems failed: {code}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("dynamodb", f"TransactWriteItems failed: {type(error).__name__}") from None

    def record_failure(self, principal_id: str, now: float) -> int:
        """Count one failed code; returns the failures in the current window."""
        window = int(now // FAILURE_WINDOW_SECONDS)
        try:
            answer = self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": mfa_pk(principal_id)}, "sk": {"S": f"{_FAILED_SK}{window}"}},
                UpdateExpression="ADD failures :one SET #ttl = if_not_exists(#ttl, :ttl)",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":one": {"N": "1"},
                                           ":ttl": {"N": str((window + 2) * FAILURE_WINDOW_SECONDS)}},
                ReturnValues="UPDATED_NEW",
            )
        except (ClientError, BotoCoreError) as error:
            code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
            raise DependencyUnavailable("dynamodb", f"UpdateItem failed: {code or type(error).__name__}") from None
        return int(answer.get("Attributes", {}).get("failures", {}).get("N", "1"))


def classify(items: Sequence[dict[str, Any]], reasons: Sequence[str]) -> str | None:
    """Which MFA condition cancelled a transaction: ``replayed``, ``locked_out`` or None."""
    for item, reason in zip(items, reasons, strict=False):
        if reason != "ConditionalCheckFailed":
            continue
        operation = item.get("Put") or item.get("ConditionCheck") or {}
        key = operation.get("Item") or operation.get("Key") or {}
        if not key.get("pk", {}).get("S", "").startswith("MFA#"):
            continue
        return "replayed" if key.get("sk", {}).get("S", "").startswith(_STEP_SK) else "locked_out"
    return None


def _refusal(kind: str) -> AccessDenied:
    if kind == "replayed":
        return AccessDenied("this MFA code was already used; wait for the next one", reason=MFA_INVALID)
    return AccessDenied(f"too many failed MFA codes; try again in up to {FAILURE_WINDOW_SECONDS // 60} minutes",
                        reason=MFA_INVALID)


class MfaService:
    """Enrolment (setup, activate, disable) and verification of per-request codes."""

    def __init__(self, directory: Directory, ledger: MfaLedger, keys: KeyProvider, audit: AuditWriter,
                 clock: Clock | None = None) -> None:
        self.directory = directory
        self.ledger = ledger
        self.keys = keys
        self.audit = audit
        self.clock = clock or SystemClock()

    # --- enrolment -------------------------------------------------------------------------

    def status(self, caller: Caller) -> MfaStatus:
        self._require_self(caller, Action.PRINCIPAL_READ, {"view": "mfa"})
        return _status(self.directory.require_principal(caller.principal_id))

    def setup(self, caller: Caller) -> MfaSetup:
        """Create a pending TOTP seed for the caller; the URI (with the seed) is shown once."""
        self._require_self(caller, Action.MFA_ENROLL, {"step": "setup"})
        principal = self.directory.require_principal(caller.principal_id)
        current = principal.mfa or {}
        if current.get("active"):
            raise Conflict("MFA is already active; disable it first (v-secure auth mfa disable --code ...)")
        enrolment = int(current.get("enrolment") or 0) + 1
        seed = pyotp.random_base32()
        envelope = seal(seed.encode(), seed_context(principal.principal_id, enrolment), self.keys)
        mfa = {"active": False, "enrolment": enrolment, "envelope": envelope.model_dump(),
               "created_at": self.clock.now().isoformat()}
        self.directory.save_principal(
            principal.model_copy(update={"mfa": mfa}),
            caller.draft(Action.MFA_ENROLL, details={"principal": principal.principal_id, "step": "setup",
                                                      "enrolment": enrolment}), guarded=True)
        uri = pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
            name=principal.principal_id, issuer_name=ISSUER)
        return MfaSetup(principal_id=principal.principal_id, pending=True, enrolment=enrolment,
                        otpauth_uri=uri, secret=seed)

    def activate(self, caller: Caller, code: str) -> MfaStatus:
        """Turn the pending enrolment on with its first valid code."""
        self._require_self(caller, Action.MFA_ENROLL, {"step": "activate"})
        principal = self.directory.require_principal(caller.principal_id)
        current = principal.mfa or {}
        if current.get("active"):
            raise Conflict("MFA is already active")
        if not current.get("envelope"):
            raise InvalidRequest("no MFA setup is pending: run `v-secure auth mfa setup` first")
        mfa = {**current, "active": True, "activated_at": self.clock.now().isoformat()}
        draft = caller.draft(Action.MFA_ENROLL, details={"principal": principal.principal_id, "step": "activate",
                                                          "enrolment": current.get("enrolment")})
        updated = self._commit_with_code(caller, principal, code, mfa, draft)
        return _status(updated)

    def disable(self, caller: Caller, code: str | None, principal_id: str | None = None) -> MfaStatus:
        """Turn MFA off: with a valid code for oneself, or by a global admin for someone else."""
        target = principal_id or caller.principal_id
        if target != caller.principal_id:
            return self._reset(caller, target)
        self._require_self(caller, Action.MFA_DISABLE, {})
        principal = self.directory.require_principal(target)
        current = principal.mfa or {}
        mfa = {"active": False, "enrolment": int(current.get("enrolment") or 0)}
        draft = caller.draft(Action.MFA_DISABLE, details={"principal": target, "enrolment": mfa["enrolment"]})
        if not current.get("active"):
            if not current.get("envelope"):
                raise InvalidRequest("MFA is not enrolled for this principal")
            self.directory.save_principal(principal.model_copy(update={"mfa": mfa}), draft, guarded=True)
            return _status(principal.model_copy(update={"mfa": mfa}))
        if not code:
            self.audit.commit(caller.draft(Action.MFA_DISABLE, status=Status.DENIED, deny_reason=MFA_REQUIRED,
                                           details={"principal": target}))
            raise AccessDenied("disabling MFA needs a valid code", reason=MFA_REQUIRED)
        return _status(self._commit_with_code(caller, principal, code, mfa, draft))

    def _require_self(self, caller: Caller, action: Action, details: dict[str, Any]) -> None:
        """One's own MFA: allowed without a code even under ``V_SECURE_REQUIRE_MFA`` (enrolment needs none yet)."""
        require_self(caller, action, caller.principal_id, "managing MFA", mfa_exempt=True,
                     audit=self.audit.commit, details={"principal": caller.principal_id, **details})

    def _reset(self, caller: Caller, target: str) -> MfaStatus:
        require_global_admin(caller, Action.MFA_DISABLE, "resetting another principal's MFA",
                             audit=self.audit.commit, details={"principal": target})
        principal = self.directory.require_principal(target)
        mfa = {"active": False, "enrolment": int((principal.mfa or {}).get("enrolment") or 0)}
        self.directory.save_principal(principal.model_copy(update={"mfa": mfa}), caller.draft(
            Action.MFA_DISABLE, details={"principal": target, "reset_by_admin": True}), guarded=True)
        return _status(principal.model_copy(update={"mfa": mfa}))

    def _commit_with_code(self, caller: Caller, principal: PrincipalRecord, code: str,
                          mfa: dict[str, Any], draft: AuditDraft) -> PrincipalRecord:
        """Check ``code`` against the stored seed and save ``mfa`` with the step claimed, atomically."""
        now = self.clock.now().timestamp()
        step = self._step_or_refuse(caller, principal, code.strip(), now, draft.action)
        claims = self.ledger.claim_items(principal.principal_id, step, now)
        updated = principal.model_copy(update={"mfa": mfa})
        try:
            self.directory.save_principal(updated, draft, extra_items=claims, guarded=True)
        except TransactionCancelled as cancelled:
            kind = classify(claims, cancelled.reasons[2:]) or "replayed"
            raise self._failed(caller, kind, draft.action, now) from None
        return updated

    # --- per-request codes -----------------------------------------------------------------

    def check_request(self, caller: Caller, *, defer: bool = False) -> list[dict[str, Any]]:
        """Refuse unless ``caller`` sent a valid, unused code; claim its step (now, or via the items)."""
        code = (caller.mfa_code or "").strip()
        if not code:
            raise AccessDenied("this request requires MFA: send a TOTP code in the X-VSecure-MFA header",
                               reason=MFA_REQUIRED)
        if not (caller.principal.mfa or {}).get("active"):
            raise AccessDenied("this request requires MFA, which is not active for this principal "
                               "(v-secure auth mfa setup)", reason=MFA_REQUIRED)
        now = self.clock.now().timestamp()
        step = self._step_or_refuse(caller, caller.principal, code, now, None)
        items = self.ledger.claim_items(caller.principal_id, step, now)
        if defer:
            return items
        try:
            self.ledger.commit(items)
        except TransactionCancelled as cancelled:
            raise self._failed(caller, classify(items, cancelled.reasons) or "replayed", None, now) from None
        return []

    def refusal(self, caller: Caller, items: Sequence[dict[str, Any]], reasons: Sequence[str]) -> AccessDenied | None:
        """The error for a read whose transaction an MFA condition cancelled (counted), else None."""
        kind = classify(items, reasons)
        if kind is None:
            return None
        return self._failed(caller, kind, None, self.clock.now().timestamp())

    def _step_or_refuse(self, caller: Caller, principal: PrincipalRecord, code: str, now: float,
                        action: Action | None) -> int:
        step = None
        if _CODE.match(code):
            step = matching_step(self._seed(principal), code, now)
        if step is None:
            raise self._failed(caller, "wrong", action, now)
        return step

    def _failed(self, caller: Caller, kind: str, action: Action | None, now: float) -> AccessDenied:
        """Count a failed code; audit it here when no secret use case will (enrolment routes)."""
        failures = self.ledger.record_failure(caller.principal_id, now)
        error = (AccessDenied("the MFA code is wrong or expired", reason=MFA_INVALID) if kind == "wrong"
                 else _refusal(kind))
        if action is not None:
            self.audit.commit(caller.draft(Action.MFA_FAILED, status=Status.DENIED, deny_reason=MFA_INVALID,
                                           details={"during": action.value, "failure": kind,
                                                    "failures_in_window": failures}))
        return error

    def _seed(self, principal: PrincipalRecord) -> str:
        mfa = principal.mfa or {}
        envelope = Envelope.from_item(mfa["envelope"])
        context = seed_context(principal.principal_id, int(mfa.get("enrolment") or 0))
        return open_envelope(envelope, context, self.keys).decode()


def _status(principal: PrincipalRecord) -> MfaStatus:
    mfa = principal.mfa or {}
    active = bool(mfa.get("active"))
    return MfaStatus(principal_id=principal.principal_id, active=active,
                     pending=bool(mfa.get("envelope")) and not active, enrolment=int(mfa.get("enrolment") or 0))


def get_mfa_service() -> MfaService:
    """Built from the process's shared clients (cheap; holds nothing of its own)."""
    from chalicelib.access_control.auth import get_directory
    from chalicelib.audit.stream import get_audit_writer
    from chalicelib.aws import client
    from chalicelib.config import get_settings
    from chalicelib.vault.keys import get_keyring

    ledger = MfaLedger(client("dynamodb"), get_settings().secrets_table)
    return MfaService(get_directory(), ledger, get_keyring(), get_audit_writer())


def verify_request_code(caller: Caller, *, defer: bool = False) -> list[dict[str, Any]]:
    """Require a valid, unused TOTP code in ``X-VSecure-MFA`` for ``caller``.

    With ``defer`` the step is not claimed yet: the returned items must be written in the
    request's own transaction (a read's audit event); otherwise it is claimed now.
    """
    return get_mfa_service().check_request(caller, defer=defer)
