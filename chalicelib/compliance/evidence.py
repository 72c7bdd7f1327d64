"""The facts a compliance report is built from, gathered once per report from what is stored.

Nothing here trusts a setting where a stored fact exists: envelopes are read from the items,
retention from the bucket's Object Lock configuration and the newest sealed digest, use of
principals from their audit events. Every read is a Query, a BatchGetItem or a GetItem on a
key, never a Scan:

================================  ==========================================================
fact                              how it is read
================================  ==========================================================
secrets (META items)              Query on the listing index ``by_kind`` (``kind = SECRET``)
versions of each secret           BatchGetItem of ``V#1`` .. ``V#<latest>`` (100 keys a call)
principals                        Query ``pk = PRINCIPALS``
prefix policies                   Query ``pk = POLICY``
audit events of the period        Query on ``by_day``, one partition per day, ``ts`` in range
last use of a principal           Query on ``by_actor``, newest first, ``Limit 1``
audit bucket Object Lock          S3 GetObjectLockConfiguration
newest sealed digest's retention  GetItem of the digest-chain head, then S3 HeadObject
``audit verify`` over the period  :mod:`chalicelib.audit.verify` (when installed)
================================  ==========================================================

Version and day reads run a few at a time on a small thread pool (boto3 clients are
thread-safe). Items that do not parse are kept, flagged, and fail the encryption check rather
than the report. A backend failure raises :class:`~chalicelib.errors.DependencyUnavailable`
(the report fails closed with a 503 naming the dependency).

Example::

    source = EvidenceSource.from_settings()
    evidence = gather(source, period, inactive_days=90)
    print(len(evidence.secrets), len(evidence.events), evidence.operations)
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from chalicelib.access_control.rbac import PrefixPolicy
from chalicelib.clock import isoformat
from chalicelib.compliance.model import Period
from chalicelib.config import Settings, get_settings
from chalicelib.errors import DependencyUnavailable
from chalicelib.tables import AUDIT_BY_ACTOR, AUDIT_BY_DAY, SECRET_LIST_INDEX

SYSTEM_ACTOR = "v-secure"
"""The actor of work v-secure does on its own (scheduler, purge, sealer)."""
BATCH_GET_KEYS = 100
MAX_BATCH_ATTEMPTS = 8
_TS_MAX = "~"  # sorts after every "<iso time>#<event id>"
_ENVELOPE_ATTRIBUTES = ("current", "staged")

Masker = Callable[[str], str]


def _same(secret_id: str) -> str:
    return secret_id


# --- facts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionFacts:
    """One ``V#`` item as stored (``present`` False: the item is missing)."""

    version: int
    present: bool = True
    created_at: datetime | None = None
    destroyed_at: datetime | None = None
    envelope: Any = None
    """The stored ``envelope`` attribute, as read (a map of bytes when sound; anything else is a finding)."""
    attributes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SecretFacts:
    """A secret's META item as stored, with its versions; envelopes are kept raw for inspection."""

    secret_id: str
    type: str = ""
    compliance: tuple[str, ...] = ()
    access: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    deny: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    constraints: Mapping[str, Any] = field(default_factory=dict)
    rotation: Mapping[str, Any] | None = None
    labels: Mapping[str, int] = field(default_factory=dict)
    current_version: int = 0
    latest_version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    rotated_at: datetime | None = None
    deletion: Mapping[str, Any] | None = None
    destroyed_at: datetime | None = None
    current_envelope: Any = None
    staged: Mapping[str, Any] = field(default_factory=dict)
    attributes: frozenset[str] = frozenset()
    versions: tuple[VersionFacts, ...] = ()
    unreadable: str | None = None
    """Why the META item did not parse (field names only), None when it did."""

    @property
    def destroyed(self) -> bool:
        return self.destroyed_at is not None

    @property
    def deleted(self) -> bool:
        return self.deletion is not None

    @property
    def live(self) -> bool:
        """Holds data: not destroyed (a secret scheduled for deletion still holds its envelopes)."""
        return not self.destroyed

    @property
    def active(self) -> bool:
        """In use: neither scheduled for deletion nor destroyed."""
        return not self.destroyed and not self.deleted

    def version(self, number: int) -> VersionFacts | None:
        return next((v for v in self.versions if v.version == number), None)

    def last_rotated_at(self) -> datetime | None:
        """When the value in use was set: the last rotation, else when the CURRENT version was stored
        (the base the rotation scheduler counts its interval from)."""
        if self.rotated_at is not None:
            return self.rotated_at
        current = self.version(self.current_version)
        if current is not None and current.created_at is not None:
            return current.created_at
        return self.created_at

    def tagged_for(self, standard: str) -> bool:
        return any(normalize_standard(tag) == standard for tag in self.compliance)

    def requires_mfa(self) -> bool:
        return bool(self.constraints.get("require_mfa"))


@dataclass(frozen=True)
class PrincipalFacts:
    principal_id: str
    type: str = "user"
    admin: bool = False
    disabled: bool = False
    created_at: datetime | None = None
    groups: tuple[str, ...] = ()
    mfa_active: bool = False


@dataclass(frozen=True, slots=True)
class EventFact:
    """One audit event of the period, as the ``by_day`` index returns it (no body)."""

    ts: str
    actor: str
    action: str
    status: str
    secret_id: str | None = None

    @property
    def timestamp(self) -> str:
        return self.ts.split("#", 1)[0]

    @property
    def day(self) -> str:
        return self.ts[:10]


@dataclass(frozen=True)
class ObjectLockFacts:
    """The audit bucket's Object Lock configuration (GetObjectLockConfiguration)."""

    bucket: str
    enabled: bool = False
    mode: str | None = None
    retention_days: int | None = None
    problem: str | None = None
    """``bucket not found``, ``Object Lock not configured``... (None when read)."""


@dataclass(frozen=True)
class DigestFacts:
    """The newest sealed digest (the chain head) and the Object Lock retention it was written with."""

    key: str
    sealed_at: datetime | None
    found: bool
    lock_mode: str | None = None
    retain_until: datetime | None = None

    @property
    def retention_days(self) -> int | None:
        if self.sealed_at is None or self.retain_until is None:
            return None
        return (self.retain_until - self.sealed_at).days


@dataclass(frozen=True)
class VerifyFacts:
    """``audit verify`` over the period: ``ok`` and the problems it named."""

    ok: bool
    problems: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Evidence:
    """Everything the controls check, gathered once per report.

    ``show`` turns a secret id into what the report prints (the id, or a mask with ``maskIds``).

    Example::

        evidence = Evidence(period=period, secrets=[SecretFacts("db", type="api_key")])
    """

    period: Period
    secrets: list[SecretFacts] = field(default_factory=list)
    principals: list[PrincipalFacts] = field(default_factory=list)
    policies: list[PrefixPolicy] = field(default_factory=list)
    events: list[EventFact] = field(default_factory=list)
    last_use: dict[str, str] = field(default_factory=dict)
    """principal id -> newest event time in its inactivity window (for the principals looked up)."""
    object_lock: ObjectLockFacts | None = None
    newest_digest: DigestFacts | None = None
    verify: VerifyFacts | None = None
    """None: audit verification is not installed."""
    require_mfa: bool = False
    """``V_SECURE_REQUIRE_MFA``: every read needs an MFA code."""
    key_providers: frozenset[str] = frozenset({"kms"})
    """Providers this deployment reads envelopes with (``kid`` prefixes)."""
    rotation_grace_seconds: int = 3600
    prefix: str | None = None
    operations: Counter[str] = field(default_factory=Counter)
    """How the evidence was read: ``dynamodb:Query`` -> count, ..."""
    show: Masker = _same

    def principal(self, principal_id: str) -> PrincipalFacts | None:
        return self.principal_index.get(principal_id)

    @cached_property
    def principal_index(self) -> dict[str, PrincipalFacts]:
        return {p.principal_id: p for p in self.principals}


def normalize_standard(name: str) -> str:
    """``pci``, ``PCI_DSS``, ``pci-dss`` -> ``PCI-DSS``; the others upper-cased."""
    key = name.strip().upper().replace("_", "-").replace(" ", "-")
    return {"PCI": "PCI-DSS", "PCIDSS": "PCI-DSS"}.get(key, key)


# --- parsing stored items ---------------------------------------------------------------------


def secret_facts(raw: dict[str, Any], versions: tuple[VersionFacts, ...] = ()) -> SecretFacts:
    """A META item (plain values, as ``from_attributes`` gives them) as :class:`SecretFacts`."""
    from chalicelib.vault.records import SecretRecord

    attributes = frozenset(raw)
    current, staged = raw.get("current"), raw.get("staged")
    plain = {k: v for k, v in raw.items() if k not in _ENVELOPE_ATTRIBUTES}
    secret_id = str(raw.get("secret_id") or str(raw.get("pk", "")).removeprefix("SECRET#"))
    try:
        record = SecretRecord.model_validate(plain)
    except ValidationError as error:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in error.errors(include_input=False)})
        return SecretFacts(secret_id=secret_id, type=str(raw.get("type", "")), attributes=attributes,
                           current_envelope=current, staged=staged if isinstance(staged, dict) else {},
                           versions=versions, unreadable=f"META item fields do not parse: {', '.join(fields)}")
    return SecretFacts(
        secret_id=record.secret_id, type=record.type, compliance=tuple(record.compliance),
        access={k: tuple(v) for k, v in record.access.items()}, deny={k: tuple(v) for k, v in record.deny.items()},
        constraints=dict(record.constraints or {}), rotation=record.rotation, labels=dict(record.labels),
        current_version=record.current_version, latest_version=record.latest_version,
        created_at=record.created_at, updated_at=record.updated_at, rotated_at=record.rotated_at,
        deletion=record.deletion, destroyed_at=record.destroyed_at, current_envelope=current,
        staged=staged if isinstance(staged, dict) else ({} if staged is None else {"?": staged}),
        attributes=attributes, versions=versions)


def version_facts(number: int, raw: dict[str, Any] | None) -> VersionFacts:
    if raw is None:
        return VersionFacts(version=number, present=False)
    return VersionFacts(version=number, created_at=as_time(raw.get("created_at")),
                        destroyed_at=as_time(raw.get("destroyed_at")), envelope=raw.get("envelope"),
                        attributes=frozenset(raw))


def principal_facts(raw: dict[str, Any]) -> PrincipalFacts:
    mfa = raw.get("mfa") if isinstance(raw.get("mfa"), dict) else {}
    return PrincipalFacts(principal_id=str(raw.get("principal_id", "")), type=str(raw.get("type", "user")),
                          admin=bool(raw.get("admin")), disabled=bool(raw.get("disabled")),
                          created_at=as_time(raw.get("created_at")), groups=tuple(raw.get("groups") or ()),
                          mfa_active=bool((mfa or {}).get("active")))


def as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


# --- where the evidence is --------------------------------------------------------------------


Verification = Callable[[datetime, "datetime | None"], VerifyFacts]
"""``verify(start, end)``: ``audit verify`` over the period."""


@dataclass(frozen=True)
class EvidenceSource:
    """The tables, bucket and clients evidence is read from (tests point it at their own).

    Example::

        source = EvidenceSource.from_settings()
    """

    dynamodb: Any
    s3: Any
    secrets_table: str
    audit_table: str
    audit_bucket: str
    require_mfa: bool = False
    key_providers: frozenset[str] = frozenset({"kms"})
    rotation_grace_seconds: int = 3600
    verify: Verification | None = None
    threads: int = 8

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> EvidenceSource:
        from chalicelib.aws import client

        settings = settings or get_settings()
        providers = {settings.key_provider, *(n.strip() for n in settings.key_providers_read.split(",") if n.strip())}
        return cls(dynamodb=client("dynamodb"), s3=client("s3"), secrets_table=settings.secrets_table,
                   audit_table=settings.audit_table, audit_bucket=settings.audit_bucket,
                   require_mfa=settings.require_mfa, key_providers=frozenset(providers),
                   rotation_grace_seconds=settings.rotation_check_seconds, verify=_settings_verifier(settings))


def _settings_verifier(settings: Settings) -> Verification | None:
    try:
        from chalicelib.audit.sealer import AuditLocation
        from chalicelib.audit.verify import build_verifier
    except ImportError:
        return None

    def verify(start: datetime, end: datetime | None) -> VerifyFacts:
        report = build_verifier(location=AuditLocation.from_settings(settings)).verify(start=start, end=end)
        return verify_facts(report)

    return verify


def verify_facts(report: Any) -> VerifyFacts:
    """A :class:`chalicelib.audit.verify.VerifyReport` as facts."""
    data = report.as_dict()
    return VerifyFacts(ok=bool(data["ok"]), problems=tuple(data["problems"]), counts=dict(data["counts"]))


# --- gathering --------------------------------------------------------------------------------


class _Reader:
    """Counts every backend call and maps failures to DependencyUnavailable."""

    def __init__(self, source: EvidenceSource) -> None:
        self.source = source
        self.operations: Counter[str] = Counter()
        self._lock = threading.Lock()

    def call(self, service: str, operation: str, method: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.operations[f"{service}:{operation}"] += 1
        try:
            answer: dict[str, Any] = method(**kwargs)
            return answer
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            raise DependencyUnavailable(service, f"{operation} failed: {code}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable(service, f"{operation} failed: {type(error).__name__}") from None

    def query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            answer = self.call("dynamodb", "Query", self.source.dynamodb.query, **kwargs)
            yield from answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return
            kwargs = {**kwargs, "ExclusiveStartKey": answer["LastEvaluatedKey"]}


def gather(source: EvidenceSource, period: Period, *, inactive_days: int = 90, prefix: str | None = None,
           show: Masker = _same) -> Evidence:
    """Read every fact a report needs, once (see the module doc for how each is read).

    The reads do not depend on each other, so they run side by side: a report takes as long as its
    slowest read (usually the period's events), not the sum of them.
    """
    from chalicelib.vault.storage import from_attributes

    reader = _Reader(source)
    with ThreadPoolExecutor(max_workers=6) as phases:
        secrets = phases.submit(_secrets, reader, prefix)
        principals = phases.submit(lambda: [principal_facts(from_attributes(item)) for item in reader.query(
            TableName=source.secrets_table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "PRINCIPALS"}})])
        policies = phases.submit(_policies, reader)
        events = phases.submit(_events, reader, period)
        lock = phases.submit(_object_lock, reader)
        digest = phases.submit(_newest_digest, reader)
        # Bounded at as_of: with an open end, verify also compares the chain head with the newest digest in
        # the range, and reports the head "missing" when no digest was written since the period started.
        verified = phases.submit(source.verify, period.start, period.as_of) if source.verify is not None else None
        evidence = Evidence(
            period=period, secrets=secrets.result(), principals=principals.result(), policies=policies.result(),
            events=events.result(), require_mfa=source.require_mfa, key_providers=source.key_providers,
            rotation_grace_seconds=source.rotation_grace_seconds, prefix=prefix, show=show,
            object_lock=lock.result(), newest_digest=digest.result(),
            verify=verified.result() if verified is not None else None)
    evidence.last_use = _last_use(reader, evidence.principals, evidence.events, period.as_of, inactive_days)
    evidence.operations = reader.operations
    return evidence


def _secrets(reader: _Reader, prefix: str | None) -> list[SecretFacts]:
    """The listing, page by page; each page's versions are fetched while the next page is read."""
    from chalicelib.vault.storage import from_attributes

    kwargs = _listing_query(reader.source, prefix)
    pages: list[tuple[list[dict[str, Any]], list[Future[list[dict[str, Any]]]]]] = []
    with ThreadPoolExecutor(max_workers=reader.source.threads) as pool:
        while True:
            answer = reader.call("dynamodb", "Query", reader.source.dynamodb.query, **kwargs)
            metas = [from_attributes(item) for item in answer.get("Items", [])]
            pages.append((metas, [pool.submit(_batch_get, reader, chunk) for chunk in _version_key_chunks(metas)]))
            if "LastEvaluatedKey" not in answer:
                break
            kwargs = {**kwargs, "ExclusiveStartKey": answer["LastEvaluatedKey"]}
        return [facts for metas, fetches in pages
                for facts in _assemble(metas, [item for fetch in fetches for item in fetch.result()])]


def _listing_query(source: EvidenceSource, prefix: str | None) -> dict[str, Any]:
    condition, values = "kind = :k", {":k": {"S": "SECRET"}}
    if prefix:
        condition += " AND begins_with(secret_id, :p)"
        values[":p"] = {"S": prefix}
    return {"TableName": source.secrets_table, "IndexName": SECRET_LIST_INDEX,
            "KeyConditionExpression": condition, "ExpressionAttributeValues": values}


def _wanted(metas: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """``(secret id, version)`` of every version item (versions are numbered 1..latest with no gaps)."""
    wanted: list[tuple[str, int]] = []
    for meta in metas:
        secret_id, latest = str(meta.get("secret_id", "")), meta.get("latest_version")
        if secret_id and isinstance(latest, int) and latest > 0:
            wanted.extend((secret_id, n) for n in range(1, latest + 1))
    return wanted


def _version_key_chunks(metas: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    from chalicelib.vault.storage import secret_pk, version_sk

    keys = [{"pk": {"S": secret_pk(s)}, "sk": {"S": version_sk(n)}} for s, n in _wanted(metas)]
    return [keys[i:i + BATCH_GET_KEYS] for i in range(0, len(keys), BATCH_GET_KEYS)]


def _assemble(metas: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[SecretFacts]:
    from chalicelib.vault.storage import from_attributes, secret_pk, version_sk

    found = {(item["pk"]["S"], item["sk"]["S"]): item for item in items}
    by_secret: dict[str, list[VersionFacts]] = {}
    for secret_id, number in _wanted(metas):
        stored = found.get((secret_pk(secret_id), version_sk(number)))
        by_secret.setdefault(secret_id, []).append(version_facts(number, from_attributes(stored) if stored else None))
    return [secret_facts(meta, tuple(by_secret.get(str(meta.get("secret_id", "")), ()))) for meta in metas]


def _batch_get(reader: _Reader, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = reader.source.secrets_table
    request: dict[str, Any] = {table: {"Keys": keys}}
    items: list[dict[str, Any]] = []
    for attempt in range(MAX_BATCH_ATTEMPTS):
        answer = reader.call("dynamodb", "BatchGetItem", reader.source.dynamodb.batch_get_item, RequestItems=request)
        items.extend(answer.get("Responses", {}).get(table, []))
        request = answer.get("UnprocessedKeys") or {}
        if not request:
            return items
        time.sleep(min(0.05 * 2 ** attempt, 1.0))
    raise DependencyUnavailable("dynamodb", "BatchGetItem left keys unprocessed (throttled)")


def _policies(reader: _Reader) -> list[PrefixPolicy]:
    from chalicelib.access_control.policy_store import POLICY_PK, StoredPolicy
    from chalicelib.vault.storage import from_attributes

    policies = []
    for item in reader.query(TableName=reader.source.secrets_table, KeyConditionExpression="pk = :pk",
                             ExpressionAttributeValues={":pk": {"S": POLICY_PK}}):
        try:
            policies.append(StoredPolicy.model_validate(from_attributes(item)).rule())
        except ValidationError:
            continue
    return policies


def _events(reader: _Reader, period: Period) -> list[EventFact]:
    """The period's events, one ``by_day`` partition per day (a few days at a time), oldest first."""
    low, high = isoformat(period.start), isoformat(period.as_of) + _TS_MAX

    def day_events(day: str) -> list[EventFact]:
        return [_event_fact(item) for item in reader.query(
            TableName=reader.source.audit_table, IndexName=AUDIT_BY_DAY,
            KeyConditionExpression="#d = :d AND #ts BETWEEN :low AND :high",
            ProjectionExpression="#ts, #actor, #action, #status, #secret",
            ExpressionAttributeNames={"#d": "day", "#ts": "ts", "#actor": "actor", "#action": "action",
                                      "#status": "status", "#secret": "secret_id"},
            ExpressionAttributeValues={":d": {"S": day}, ":low": {"S": low}, ":high": {"S": high}})]

    days = [day.isoformat() for day in period.days()]
    with ThreadPoolExecutor(max_workers=reader.source.threads) as pool:
        per_day = list(pool.map(day_events, days))
    return [event for events in per_day for event in sorted(events, key=lambda e: e.ts)]


def _event_fact(item: dict[str, Any]) -> EventFact:
    secret = item.get("secret_id", {}).get("S")
    return EventFact(ts=item.get("ts", {}).get("S", ""), actor=item.get("actor", {}).get("S", ""),
                     action=item.get("action", {}).get("S", ""), status=item.get("status", {}).get("S", ""),
                     secret_id=secret)


def _last_use(reader: _Reader, principals: list[PrincipalFacts], events: list[EventFact], as_of: datetime,
              inactive_days: int) -> dict[str, str]:
    """Newest event of each enabled principal old enough to be inactive, within the inactivity window.

    The period's events answer for most; the others take one ``by_actor`` Query each (newest first, one item).
    """
    since = as_of - timedelta(days=inactive_days)
    low = isoformat(since)
    used: dict[str, str] = {}
    for event in events:
        if event.timestamp >= low and event.ts > used.get(event.actor, ""):
            used[event.actor] = event.ts
    candidates = [p for p in principals if not p.disabled and p.created_at is not None and p.created_at <= since]
    for principal in candidates:
        if principal.principal_id in used:
            continue
        answer = reader.call(
            "dynamodb", "Query", reader.source.dynamodb.query, TableName=reader.source.audit_table,
            IndexName=AUDIT_BY_ACTOR, KeyConditionExpression="#a = :a AND #ts BETWEEN :low AND :high",
            ExpressionAttributeNames={"#a": "actor", "#ts": "ts"}, ProjectionExpression="#ts",
            ExpressionAttributeValues={":a": {"S": principal.principal_id}, ":low": {"S": low},
                                       ":high": {"S": isoformat(as_of) + _TS_MAX}},
            ScanIndexForward=False, Limit=1)
        items = answer.get("Items", [])
        if items:
            used[principal.principal_id] = items[0]["ts"]["S"]
    return {p.principal_id: used[p.principal_id] for p in candidates if p.principal_id in used}


def _object_lock(reader: _Reader) -> ObjectLockFacts:
    bucket = reader.source.audit_bucket
    with reader._lock:
        reader.operations["s3:GetObjectLockConfiguration"] += 1
    try:
        answer = reader.source.s3.get_object_lock_configuration(Bucket=bucket)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        if code == "ObjectLockConfigurationNotFoundError":
            return ObjectLockFacts(bucket, problem="Object Lock is not configured on the bucket")
        if code in ("NoSuchBucket", "404"):
            return ObjectLockFacts(bucket, problem="the audit bucket does not exist")
        raise DependencyUnavailable("s3", f"GetObjectLockConfiguration failed: {code}") from None
    except BotoCoreError as error:
        raise DependencyUnavailable("s3", f"GetObjectLockConfiguration failed: {type(error).__name__}") from None
    config = answer.get("ObjectLockConfiguration", {})
    retention = config.get("Rule", {}).get("DefaultRetention", {})
    days = retention.get("Days") or (365 * retention["Years"] if retention.get("Years") else None)
    return ObjectLockFacts(bucket, enabled=config.get("ObjectLockEnabled") == "Enabled",
                           mode=retention.get("Mode"), retention_days=days)


def _newest_digest(reader: _Reader) -> DigestFacts | None:
    try:
        from chalicelib.audit.sealer import HEAD_SK, STATE_PK, digest_time
    except ImportError:
        return None
    item = reader.call("dynamodb", "GetItem", reader.source.dynamodb.get_item, TableName=reader.source.secrets_table,
                       Key={"pk": {"S": STATE_PK}, "sk": {"S": HEAD_SK}}, ConsistentRead=True).get("Item")
    if not item:
        return None
    key = item["digest_key"]["S"]
    with reader._lock:
        reader.operations["s3:HeadObject"] += 1
    try:
        head = reader.source.s3.head_object(Bucket=reader.source.audit_bucket, Key=key)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        if code in ("404", "NoSuchKey", "NotFound"):
            return DigestFacts(key=key, sealed_at=digest_time(key), found=False)
        raise DependencyUnavailable("s3", f"HeadObject {key} failed: {code}") from None
    except BotoCoreError as error:
        raise DependencyUnavailable("s3", f"HeadObject {key} failed: {type(error).__name__}") from None
    return DigestFacts(key=key, sealed_at=digest_time(key), found=True, lock_mode=head.get("ObjectLockMode"),
                       retain_until=as_time(head.get("ObjectLockRetainUntilDate")))
