"""Building blocks for the compliance integration tests (no tests here).

:class:`IsolatedVault` is a vault of its own on the shared moto server: a secrets table, an audit
table and an Object Lock bucket (from ``IsolatedAudit``), filled directly with BatchWriteItem in
the stored format (META and version items with real AES-256-GCM envelopes, hash-chained audit
events), sealed with the real sealer, and read by the real evidence gatherer and ``audit verify``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.audit.events import GENESIS_HASH, AuditEvent
from chalicelib.audit.stream import event_item
from chalicelib.aws import client
from chalicelib.clock import FrozenClock
from chalicelib.compliance.evidence import EvidenceSource, verify_facts
from chalicelib.compliance.model import Period, PeriodKind
from chalicelib.compliance.report import ComplianceReport, build_report
from chalicelib.compliance.validators import get_standard
from chalicelib.ports import DataKey
from chalicelib.vault.encryption import EnvelopeContext, seal
from chalicelib.vault.records import SecretRecord, VersionRecord
from chalicelib.vault.storage import record_item, to_attributes, version_item
from tests.integration.test_audit_support import IsolatedAudit, batch_put, chained_events, registry_item

KMS_KID = "kms:arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
READER = "backend-service"
WRITER = "alice"


class KmsLikeKeys:
    """Data keys with a KMS-provider ``kid`` (nothing is ever decrypted by the compliance checks)."""

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        return DataKey(os.urandom(32), os.urandom(184), KMS_KID)

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        raise NotImplementedError


@dataclass
class IsolatedVault:
    log: IsolatedAudit
    now: datetime
    secret_ids: list[str] = field(default_factory=list)
    streams: dict[str, AuditEvent] = field(default_factory=dict)

    @classmethod
    def create(cls, *, retention_days: int = 2555) -> IsolatedVault:
        now = datetime.now(UTC)
        return cls(IsolatedAudit.create(retention_days=retention_days, clock=FrozenClock(now)), now)

    @property
    def secrets_table(self) -> str:
        return self.log.location.state_table

    @property
    def audit_table(self) -> str:
        return self.log.location.audit_table

    # --- loading ----------------------------------------------------------------------------------------

    def add_principals(self, *principal_ids: str) -> None:
        items = [{"pk": {"S": "PRINCIPALS"}, "sk": {"S": p}, **to_attributes({
            "principal_id": p, "type": "user", "created_at": self.now - timedelta(days=5), "created_by": "root"})}
            for p in principal_ids]
        batch_put(self.secrets_table, items)

    def add_secrets(self, count: int, standard: str, *, stored: timedelta = timedelta(days=10),
                    **fields: Any) -> list[str]:
        """``count`` sound, MFA-protected secrets tagged for ``standard``, stored ``stored`` ago by alice."""
        when = self.now - stored
        items: list[dict[str, Any]] = []
        ids = [f"vol/{uuid.uuid4().hex[:12]}" for _ in range(count)]
        for secret_id in ids:
            envelope = seal(b"value-" + os.urandom(8).hex().encode(),
                            EnvelopeContext(secret_id=secret_id, version=1, type="api_key"), KmsLikeKeys())
            record = SecretRecord.model_validate({
                "secret_id": secret_id, "type": "api_key", "current_version": 1, "latest_version": 1,
                "labels": {"CURRENT": 1}, "compliance": [standard], "access": {WRITER: ["admin"]},
                "constraints": {"require_mfa": True}, "created_at": when, "created_by": WRITER, "updated_at": when,
                "current": envelope, "rev": 1, **fields})
            items.append(record_item(record))
            items.append(version_item(VersionRecord(secret_id=secret_id, version=1, created_at=when,
                                                    created_by=WRITER, envelope=envelope)))
        batch_put(self.secrets_table, items, threads=4)
        self.secret_ids.extend(ids)
        return ids

    def add_reads(self, count: int, *, over: timedelta, streams: int = 2,
                  ended: timedelta = timedelta(hours=1)) -> None:
        """``count`` reads of the vault's secrets by ``backend-service``, spread over ``over`` up to ``ended`` ago."""
        per_stream = count // streams
        step = over / max(per_stream, 1)
        start = self.now - ended - over
        events: list[AuditEvent] = []
        for _n in range(streams):
            stream_id = f"{self.now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:16]}"
            batch_put(self.audit_table, [registry_item(stream_id, uuid.uuid4().int % 10**15)])
            events.extend(chained_events(stream_id, per_stream, start=start, secret_ids=self.secret_ids, step=step,
                                         prev_hash=GENESIS_HASH))
        batch_put(self.audit_table, [event_item(e) for e in events], threads=4)

    def seal(self) -> None:
        self.log.sealer().seal()

    # --- reporting --------------------------------------------------------------------------------------

    def source(self) -> EvidenceSource:
        verifier = self.log.verifier()

        def verify(start: datetime, end: datetime | None) -> Any:
            return verify_facts(verifier.verify(start=start, end=end))

        return EvidenceSource(dynamodb=client("dynamodb"), s3=client("s3"), secrets_table=self.secrets_table,
                              audit_table=self.audit_table, audit_bucket=self.log.location.bucket,
                              key_providers=frozenset({"kms"}), verify=verify)

    def period(self, days: int) -> Period:
        start = (self.now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
        return Period(PeriodKind.CUSTOM, start, self.now, self.now)

    def report(self, standard: str, *, days: int = 3) -> ComplianceReport:
        from chalicelib.compliance.evidence import gather

        evidence = gather(self.source(), self.period(days), inactive_days=get_standard(standard).inactive_days)
        return build_report(evidence, get_standard(standard), generated_at=self.now, generated_by="it")
