"""Where the vault's envelopes are, for the key administration jobs (status, rewrap).

Every wrapped data key lives in one of these places of the secrets table:

* a version item (``SECRET#<id>`` / ``V#...``): attribute ``envelope``;
* the secret's META item: ``current`` and ``staged.<label>`` (copies served without a second read);
* a principal's MFA enrolment: ``mfa.envelope`` on ``PRINCIPAL#<id>`` / ``META`` and on its
  listing copy ``PRINCIPALS`` / ``<id>``.

The store walks them *owner by owner* (a secret with its versions, then principals) in id
order: a Query over the listing index, then each page's versions by key (BatchGetItem; versions
are numbered 1..latest with no gaps), never a table scan.
An update rewrites only ``edk`` and ``kid`` of one envelope copy, on the condition that its
``edk`` is still the one that was read, and bumps the META item's ``rev`` so a writer holding
an older copy of the record retries instead of writing the old envelope back.

Example::

    store = DynamoEnvelopeStore(client("dynamodb"), settings.secrets_table, get_audit_writer())
    owners, cursor = store.page(SECRETS, None, limit=100)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import Conflict, DependencyUnavailable
from chalicelib.tables import SECRET_LIST_INDEX
from chalicelib.vault.encryption import Envelope
from chalicelib.vault.keys.models import RewrapJob

if TYPE_CHECKING:
    from chalicelib.audit.events import AuditDraft
    from chalicelib.audit.stream import AuditWriter

SECRETS = "secrets"
PRINCIPALS = "principals"
PHASES = (SECRETS, PRINCIPALS)

VERSION = "version"
CURRENT = "current"
STAGED = "staged"
MFA = "mfa"
MFA_LISTING = "mfa_listing"
"""A principal's listing copy: rewritten with the principal, not counted twice."""

ItemKey = tuple[str, str]


@dataclass(frozen=True)
class EnvelopeRef:
    """One stored copy of an envelope: the item, the path to it inside the item, what it is."""

    item: ItemKey
    path: tuple[str, ...]
    kind: str
    envelope: Envelope

    @property
    def counted(self) -> bool:
        return self.kind != MFA_LISTING

    @property
    def on_meta(self) -> bool:
        return self.kind in (CURRENT, STAGED)


@dataclass
class Owner:
    """A secret (with its versions) or a principal: every envelope copy it holds."""

    phase: str
    owner_id: str
    refs: list[EnvelopeRef] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.owner_id if self.phase == SECRETS else f"principal:{self.owner_id}"


@dataclass(frozen=True)
class EnvelopeChange:
    path: tuple[str, ...]
    old_edk: bytes
    new_edk: bytes
    new_kid: str
    counted: bool = True
    new_key: bool = True
    """False for a copy that takes the data key already re-wrapped for a sibling copy."""


@dataclass
class ItemUpdate:
    """The envelope copies of one item to rewrite in one conditional update."""

    item: ItemKey
    owner: str
    changes: list[EnvelopeChange]
    bump_rev: bool = False


class JobConflict(Conflict):
    """409: another run of the same rewrap job advanced its checkpoint first; this run stops."""

    code = "rewrap_job_conflict"


class EnvelopeStore(Protocol):
    """The envelopes, owner by owner, and the rewrap job's checkpoint."""

    def page(self, phase: str, cursor: str | None, limit: int) -> tuple[list[Owner], str | None]:
        """Up to ``limit`` owners of ``phase`` after ``cursor`` (an owner id), and the next cursor."""
        ...

    def reload(self, owner: Owner) -> Owner | None:
        """The owner as it is now (consistent reads), None if it is gone."""
        ...

    def load_job(self, job_id: str) -> RewrapJob | None: ...

    def save_job(self, job: RewrapJob, expected_step: int | None) -> None:
        """Save the checkpoint; JobConflict if the stored step is not ``expected_step`` (None: new job)."""
        ...

    def apply(self, updates: list[ItemUpdate]) -> list[bool]:
        """Each update as one conditional write; False where an ``edk`` was not the one read."""
        ...

    def record(self, draft: AuditDraft) -> None:
        """Write an audit event (AuditUnavailable if it cannot be)."""
        ...


class DynamoEnvelopeStore:
    """The envelopes of the DynamoDB secrets table."""

    def __init__(self, dynamodb: Any, table: str, audit: AuditWriter, *, workers: int = 8) -> None:
        self._db = dynamodb
        self._table = table
        self._audit = audit
        self._workers = workers

    # --- reading -------------------------------------------------------------------------------

    def page(self, phase: str, cursor: str | None, limit: int) -> tuple[list[Owner], str | None]:
        if phase == SECRETS:
            return self._secrets_page(cursor, limit)
        if phase == PRINCIPALS:
            return self._principals_page(cursor, limit)
        raise ValueError(f"unknown phase {phase}")

    def reload(self, owner: Owner) -> Owner | None:
        if owner.phase == SECRETS:
            meta = self._get(("SECRET#" + owner.owner_id, "META"))
            return self._secrets([meta])[0] if meta else None
        listing = self._get(("PRINCIPALS", owner.owner_id))
        return self._principal(owner.owner_id, listing) if listing else None

    def _secrets_page(self, cursor: str | None, limit: int) -> tuple[list[Owner], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self._table, "IndexName": SECRET_LIST_INDEX, "Limit": limit,
            "KeyConditionExpression": "kind = :k", "ExpressionAttributeValues": {":k": {"S": "SECRET"}}}
        if cursor:
            kwargs["ExclusiveStartKey"] = {"kind": {"S": "SECRET"}, "secret_id": {"S": cursor},
                                           "pk": {"S": f"SECRET#{cursor}"}, "sk": {"S": "META"}}
        answer = self._call("Query", self._db.query, **kwargs)
        last = answer.get("LastEvaluatedKey")
        return self._secrets(answer.get("Items", [])), (last["secret_id"]["S"] if last else None)

    def _secrets(self, metas: list[dict[str, Any]]) -> list[Owner]:
        """Owners of these META items with their versions' envelopes.

        Versions are numbered 1..latest_version with no gaps, so they are fetched by key with
        BatchGetItem (100 keys a call) rather than one Query per secret.
        """
        from chalicelib.vault.storage import from_attributes, secret_pk, version_sk

        owners: dict[str, Owner] = {}
        keys: list[dict[str, Any]] = []
        for meta in metas:
            data = from_attributes(meta)
            secret_id = data["secret_id"]
            owner = owners[secret_pk(secret_id)] = Owner(SECRETS, secret_id)
            meta_key = (secret_pk(secret_id), "META")
            if data.get("current"):
                owner.refs.append(EnvelopeRef(meta_key, ("current",), CURRENT, Envelope.from_item(data["current"])))
            for label, staged in sorted((data.get("staged") or {}).items()):
                owner.refs.append(EnvelopeRef(meta_key, ("staged", label), STAGED, Envelope.from_item(staged)))
            keys.extend({"pk": {"S": secret_pk(secret_id)}, "sk": {"S": version_sk(v)}}
                        for v in range(1, int(data.get("latest_version") or 0) + 1))
        chunks = [keys[i:i + 100] for i in range(0, len(keys), 100)]
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            items = [item for chunk in pool.map(self._batch_get, chunks) for item in chunk]
        for item in sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"])):
            version = from_attributes(item)
            if version.get("envelope"):
                owners[version["pk"]].refs.append(EnvelopeRef((version["pk"], version["sk"]), ("envelope",),
                                                              VERSION, Envelope.from_item(version["envelope"])))
        return list(owners.values())

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {self._table: {
            "Keys": keys, "ConsistentRead": True, "ProjectionExpression": "#pk, #sk, #envelope",
            "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk", "#envelope": "envelope"}}}
        while request:
            answer = self._call("BatchGetItem", self._db.batch_get_item, RequestItems=request)
            found.extend(answer.get("Responses", {}).get(self._table, []))
            request = answer.get("UnprocessedKeys") or {}
        return found

    def _principals_page(self, cursor: str | None, limit: int) -> tuple[list[Owner], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self._table, "Limit": limit, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": "PRINCIPALS"}}}
        if cursor:
            kwargs["ExclusiveStartKey"] = {"pk": {"S": "PRINCIPALS"}, "sk": {"S": cursor}}
        answer = self._call("Query", self._db.query, **kwargs)
        owners = [self._principal(item["sk"]["S"], item) for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return owners, (last["sk"]["S"] if last else None)

    def _principal(self, principal_id: str, listing: dict[str, Any]) -> Owner:
        owner = Owner(PRINCIPALS, principal_id)
        if not _mfa_envelope(listing):
            return owner
        main = self._get((f"PRINCIPAL#{principal_id}", "META"))
        for key, item, kind in (((f"PRINCIPAL#{principal_id}", "META"), main, MFA),
                                (("PRINCIPALS", principal_id), listing, MFA_LISTING)):
            envelope = _mfa_envelope(item) if item else None
            if envelope is not None:
                owner.refs.append(EnvelopeRef(key, ("mfa", "envelope"), kind, envelope))
        return owner

    # --- the job checkpoint ----------------------------------------------------------------------

    def load_job(self, job_id: str) -> RewrapJob | None:
        from chalicelib.vault.storage import from_attributes

        item = self._get(("SYSTEM", f"REWRAP#{job_id}"))
        return RewrapJob.model_validate(from_attributes(item)) if item else None

    def save_job(self, job: RewrapJob, expected_step: int | None) -> None:
        put = self._job_put(job, expected_step)["Put"]
        try:
            self._db.put_item(**put)
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                raise JobConflict(f"rewrap job {job.job_id} was advanced by another run") from None
            raise DependencyUnavailable("dynamodb", f"PutItem failed: {_code(error)}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("dynamodb", f"PutItem failed: {_code(error)}") from None

    def apply(self, updates: list[ItemUpdate]) -> list[bool]:
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            return list(pool.map(self._apply_one, updates))

    def record(self, draft: AuditDraft) -> None:
        self._audit.commit(draft)

    def _apply_one(self, update: ItemUpdate) -> bool:
        try:
            self._db.update_item(**self._update(update)["Update"])
            return True
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise DependencyUnavailable("dynamodb", f"UpdateItem failed: {_code(error)}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("dynamodb", f"UpdateItem failed: {_code(error)}") from None

    def _job_put(self, job: RewrapJob, expected_step: int | None) -> dict[str, Any]:
        from chalicelib.vault.storage import to_attributes

        item = {"pk": {"S": "SYSTEM"}, "sk": {"S": f"REWRAP#{job.job_id}"},
                **to_attributes(job.model_dump(mode="python"))}
        put: dict[str, Any] = {"TableName": self._table, "Item": item}
        if expected_step is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "step = :step"
            put["ExpressionAttributeValues"] = {":step": {"N": str(expected_step)}}
        return {"Put": put}

    def _update(self, update: ItemUpdate) -> dict[str, Any]:
        names = {"#edk": "edk", "#kid": "kid"}
        values: dict[str, Any] = {}
        sets: list[str] = []
        conditions: list[str] = []
        for i, change in enumerate(update.changes):
            parts = []
            for j, part in enumerate(change.path):
                names[f"#p{i}_{j}"] = part
                parts.append(f"#p{i}_{j}")
            path = ".".join(parts)
            sets += [f"{path}.#edk = :n{i}", f"{path}.#kid = :k{i}"]
            conditions.append(f"{path}.#edk = :o{i}")
            values.update({f":n{i}": {"B": change.new_edk}, f":k{i}": {"S": change.new_kid},
                           f":o{i}": {"B": change.old_edk}})
        if update.bump_rev:
            names["#rev"] = "rev"
            values[":one"] = {"N": "1"}
            sets.append("#rev = #rev + :one")
        return {"Update": {
            "TableName": self._table, "Key": {"pk": {"S": update.item[0]}, "sk": {"S": update.item[1]}},
            "UpdateExpression": "SET " + ", ".join(sets), "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}}

    # --- plumbing ----------------------------------------------------------------------------------

    def _get(self, key: ItemKey) -> dict[str, Any] | None:
        answer = self._call("GetItem", self._db.get_item, TableName=self._table, ConsistentRead=True,
                            Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}})
        item: dict[str, Any] | None = answer.get("Item")
        return item

    @staticmethod
    def _call(operation: str, method: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = method(**kwargs)
            return result
        except (ClientError, BotoCoreError) as error:
            raise DependencyUnavailable("dynamodb", f"{operation} failed: {_code(error)}") from None


def _mfa_envelope(item: dict[str, Any]) -> Envelope | None:
    from chalicelib.vault.storage import from_attributes

    mfa = item.get("mfa", {}).get("M")
    if not mfa or "envelope" not in mfa:
        return None
    envelope = from_attributes({"envelope": mfa["envelope"]})["envelope"]
    return Envelope.from_item(envelope) if isinstance(envelope, dict) else None


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__
