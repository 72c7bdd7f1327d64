"""Record every AWS action the application code performs during the tests; check the IAM policy.

A pytest plugin (``pytest_plugins`` in ``tests/conftest.py``). It adds a botocore
``before-parameter-build`` handler to every botocore session (``botocore.handlers.BUILTIN_HANDLERS``),
so it sees the clients of ``chalicelib.aws.session()`` *and* any client a fixture builds. Each
call is attributed to the code that made it (the first caller frame outside botocore/boto3/
``chalicelib/aws.py``): only calls made by application code count. Calls made from ``tests/``
(fixtures reading tables, tampering with items) and from ``chalicelib/local/`` (the dev-stack
bootstrap creating tables and keys) are not recorded.

Each call becomes the IAM authorization request(s) AWS would evaluate (``TransactWriteItems``
is one ``PutItem``/``UpdateItem``/``DeleteItem``/``ConditionCheckItem`` per item; a KMS call
carries ``kms:EncryptionContextKeys`` and ``kms:ResourceAliases``...). Resources are named as
the production stack names them (``infra/stateful.yaml`` with its default prefix), whatever
names the test run used, so the policy's resource patterns are what is checked.

Each process writes its records to ``<pytest cache>/v-secure-aws-actions/<run id>/`` (one
directory per session, so concurrent pytest runs in one tree never mix). At the end of the
session (on the xdist controller, after merging the workers' files; the merged list is kept as
``last-run.json``) the plugin checks, against ``infra/iam-policy.json``:

1. every recorded request is allowed (always);
2. every put into the audit table carried ``attribute_not_exists`` (IAM has no condition key
   for a ``ConditionExpression``, so this is where "may only add" is enforced for the code);
3. when the whole integration suite ran and passed: every action the policy allows was used
   by the code, except the entries of :data:`REVIEWED` (each with its reason).

A problem is reported as a failed test ``tests/aws_actions.py::iam_policy_matches_recorded_actions``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import sysconfig
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.handlers
import pytest

from tests.iam_policy import AccessRequest, decide, granted_actions

REPO = Path(__file__).resolve().parent.parent
POLICY_PATH = REPO / "infra" / "iam-policy.json"
INTEGRATION_DIR = REPO / "tests" / "integration"
CACHE_DIR_NAME = "v-secure-aws-actions"
RECORDS_DIR_ENV = "V_SECURE_AWS_ACTIONS_DIR"
_RUN_KEY = "v_secure_aws_actions_run"  # where the per-process record files go (default: pytest cache)
CHECK_NODEID = "tests/aws_actions.py::iam_policy_matches_recorded_actions"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

# The production names (infra/stateful.yaml, NamePrefix=v-secure; a unit test keeps them equal).
CANONICAL = {
    "secrets_table": "v-secure-secrets",
    "audit_table": "v-secure-audit",
    "audit_bucket": f"v-secure-audit-{ACCOUNT_ID}-{REGION}",
    "event_bus": "v-secure",
    "kms_key_id": "alias/v-secure-data",
    "audit_signing_key_id": "alias/v-secure-audit-signing",
}


@dataclass(frozen=True)
class Reviewed:
    """A granted action the suite need not exercise, and why.

    ``until_module`` / ``until_source``: the excuse holds only while that module does not exist,
    or while no file of ``chalicelib/`` contains that text (the code that will use the grant has
    not landed); after that, the action must be recorded like any other.
    """

    reason: str
    until_module: str | None = None
    until_source: str | None = None

    def excuses(self) -> bool:
        if self.until_module is not None and importlib.util.find_spec(self.until_module) is not None:
            return False
        return self.until_source is None or not any(
            self.until_source in path.read_text(errors="replace") for path in (REPO / "chalicelib").rglob("*.py"))

    @property
    def lapsed_because(self) -> str:
        return f"{self.until_module} exists now" if self.until_module else f"chalicelib uses {self.until_source} now"


_VIA_SERVICE = ("S3 (SSE-KMS on the audit bucket) and DynamoDB (tables encrypted with the data key) call "
                "KMS on the role's behalf; botocore never sees these calls")
_LOGS = "the Lambda runtime writes the function's logs; no application code calls CloudWatch Logs"

# (statement Sid, action or "<condition key>=<value>") -> why it may stay unexercised.
REVIEWED: dict[tuple[str, str], Reviewed] = {
    ("DataKeyThroughDynamoDBAndS3", "kms:Decrypt"): Reviewed(_VIA_SERVICE),
    ("DataKeyThroughDynamoDBAndS3", "kms:GenerateDataKey"): Reviewed(_VIA_SERVICE),
    ("DataKeyThroughDynamoDBAndS3", "kms:DescribeKey"): Reviewed(_VIA_SERVICE),
    ("LambdaLogs", "logs:CreateLogGroup"): Reviewed(_LOGS),
    ("LambdaLogs", "logs:CreateLogStream"): Reviewed(_LOGS),
    ("LambdaLogs", "logs:PutLogEvents"): Reviewed(_LOGS),
}


# --- turning a botocore call into IAM requests ----------------------------------------------

@dataclass(frozen=True)
class Recorded:
    """One IAM authorization request the application caused (JSON-serializable)."""

    action: str
    resource: str
    operation: str
    caller: str
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()
    condition: str | None = None

    def request(self) -> AccessRequest:
        return AccessRequest(self.action, self.resource, dict(self.context))

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "resource": self.resource, "operation": self.operation,
                "caller": self.caller, "context": {k: list(v) for k, v in self.context},
                "condition": self.condition}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recorded:
        context = tuple(sorted((k, tuple(v)) for k, v in data.get("context", {}).items()))
        return cls(data["action"], data["resource"], data["operation"], data["caller"], context,
                   data.get("condition"))


class Names:
    """Maps the names this test run uses to the production names (``CANONICAL``)."""

    def __init__(self, settings: Any) -> None:
        self.table = {settings.secrets_table: CANONICAL["secrets_table"],
                      settings.audit_table: CANONICAL["audit_table"]}
        self.bucket = {settings.audit_bucket: CANONICAL["audit_bucket"]}
        self.bus = {settings.event_bus: CANONICAL["event_bus"], "default": "default"}
        self.alias = {settings.kms_key_id: CANONICAL["kms_key_id"],
                      settings.audit_signing_key_id: CANONICAL["audit_signing_key_id"]}

    def table_arn(self, name: str, index: str | None = None) -> str:
        arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{self.table.get(name, name)}"
        return f"{arn}/index/{index}" if index else arn

    def bucket_arn(self, bucket: str, key: str | None = None) -> str:
        arn = f"arn:aws:s3:::{self.bucket.get(bucket, bucket)}"
        return f"{arn}/{key}" if key is not None else arn

    def bus_arn(self, bus: str) -> str:
        name = bus.rsplit("/", 1)[-1] if bus.startswith("arn:") else bus
        return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/{self.bus.get(name, name)}"


IamRequest = tuple[str, str, dict[str, tuple[str, ...]], "str | None"]
"""``(IAM action, resource ARN, condition context, ConditionExpression)``."""
KeyResolver = Callable[[str], "str | None"]
"""Given a KMS KeyId as the code passed it, the alias it is known by in this run (or None)."""

_TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


def iam_requests(service: str, operation: str, params: Mapping[str, Any], names: Names,
                 key_alias: KeyResolver) -> list[IamRequest]:
    """The ``(action, resource ARN, condition context, ConditionExpression)`` AWS authorizes.

    Example::

        iam_requests("dynamodb", "TransactWriteItems", {"TransactItems": [{"Put": {...}}]}, names, resolve)
        # [("dynamodb:PutItem", "arn:aws:dynamodb:...:table/v-secure-audit", {...}, "attribute_not_exists(pk)")]
    """
    handler = _SERVICES.get(service)
    if handler is None:
        return [(f"{service}:{operation}", "*", {}, None)]
    return handler(operation, params, names, key_alias)


def _dynamodb(operation: str, params: Mapping[str, Any], names: Names,
              key_alias: KeyResolver) -> list[IamRequest]:
    if operation in ("TransactWriteItems", "TransactGetItems"):
        found: list[IamRequest] = []
        for item in params.get("TransactItems", []):
            (kind, body), = item.items()
            found.append((f"dynamodb:{_TRANSACT_ACTIONS[kind]}", names.table_arn(body["TableName"]),
                          {"dynamodb:EnclosingOperation": (operation,)}, body.get("ConditionExpression")))
        return found
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return [(f"dynamodb:{operation}", names.table_arn(table), {}, None) for table in params.get("RequestItems", {})]
    table = params.get("TableName")
    if table is None:
        return [(f"dynamodb:{operation}", "*", {}, None)]
    return [(f"dynamodb:{operation}", names.table_arn(table, params.get("IndexName")), {},
             params.get("ConditionExpression"))]


def _kms(operation: str, params: Mapping[str, Any], names: Names,
         key_alias: KeyResolver) -> list[IamRequest]:
    encryption_context: dict[str, Any] = {}
    for name in ("EncryptionContext", "SourceEncryptionContext", "DestinationEncryptionContext"):
        encryption_context.update(params.get(name) or {})
    common: dict[str, tuple[str, ...]] = {}
    if encryption_context:  # for ReEncrypt, AWS checks the source and destination contexts
        common["kms:EncryptionContextKeys"] = tuple(sorted(encryption_context))
        if "purpose" in encryption_context:
            common["kms:EncryptionContext:purpose"] = (str(encryption_context["purpose"]),)
    if operation in ("Sign", "Verify"):
        common["kms:SigningAlgorithm"] = (str(params.get("SigningAlgorithm", "")),)
        common["kms:MessageType"] = (str(params.get("MessageType", "RAW")),)
    if operation == "ReEncrypt":
        targets = [("kms:ReEncryptFrom", str(params.get("SourceKeyId") or "")),
                   ("kms:ReEncryptTo", str(params.get("DestinationKeyId") or ""))]
    else:
        targets = [(f"kms:{operation}", str(params.get("KeyId") or ""))]
    found: list[IamRequest] = []
    for action, key_id in targets:
        alias = key_alias(key_id) if key_id else None
        canonical_alias = names.alias.get(alias or "", alias)
        resource = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{(canonical_alias or key_id or '*').replace('alias/', '')}"
        context = dict(common)
        if canonical_alias:
            context["kms:ResourceAliases"] = (canonical_alias,)
        found.append((action, resource, context, None))
    return found


def _s3(operation: str, params: Mapping[str, Any], names: Names,
        key_alias: KeyResolver) -> list[IamRequest]:
    bucket = str(params.get("Bucket", ""))
    key = params.get("Key")
    obj = names.bucket_arn(bucket, str(key)) if key is not None else names.bucket_arn(bucket)
    versioned = "Version" if params.get("VersionId") else ""
    simple = {
        "PutObject": [("s3:PutObject", obj)],
        "GetObject": [(f"s3:GetObject{versioned}", obj)],
        "HeadObject": [(f"s3:GetObject{versioned}", obj)],
        "GetObjectRetention": [(f"s3:GetObject{versioned}Retention" if versioned else "s3:GetObjectRetention", obj)],
        "PutObjectRetention": [("s3:PutObjectRetention", obj)],
        "GetObjectLegalHold": [("s3:GetObjectLegalHold", obj)],
        "DeleteObject": [(f"s3:DeleteObject{versioned}", obj)],
        "ListObjectsV2": [("s3:ListBucket", names.bucket_arn(bucket))],
        "ListObjects": [("s3:ListBucket", names.bucket_arn(bucket))],
        "ListObjectVersions": [("s3:ListBucketVersions", names.bucket_arn(bucket))],
        "HeadBucket": [("s3:ListBucket", names.bucket_arn(bucket))],
        "GetObjectLockConfiguration": [("s3:GetBucketObjectLockConfiguration", names.bucket_arn(bucket))],
    }
    found: list[tuple[str, str]] = simple.get(operation, [(f"s3:{operation}", obj)])
    if operation == "PutObject":
        if params.get("ObjectLockMode") or params.get("ObjectLockRetainUntilDate"):
            found.append(("s3:PutObjectRetention", obj))
        if params.get("ObjectLockLegalHoldStatus"):
            found.append(("s3:PutObjectLegalHold", obj))
    if operation == "PutObjectRetention" and params.get("BypassGovernanceRetention"):
        found.append(("s3:BypassGovernanceRetention", obj))
    if operation == "CopyObject":
        source = params.get("CopySource")
        found = [("s3:PutObject", obj)]
        if isinstance(source, dict):
            found.append(("s3:GetObject", names.bucket_arn(source["Bucket"], source["Key"])))
    return [(action, resource, {}, None) for action, resource in found]


def _events(operation: str, params: Mapping[str, Any], names: Names,
            key_alias: KeyResolver) -> list[IamRequest]:
    if operation == "PutEvents":
        buses = {str(entry.get("EventBusName") or "default") for entry in params.get("Entries", [])}
        return [("events:PutEvents", names.bus_arn(bus), {}, None) for bus in sorted(buses)]
    bus = params.get("EventBusName") or params.get("Name") or "default"
    return [(f"events:{operation}", names.bus_arn(str(bus)), {}, None)]


_SERVICES: dict[str, Callable[..., list[IamRequest]]] = {
    "dynamodb": _dynamodb, "kms": _kms, "s3": _s3, "events": _events,
}


# --- attribution: who made the call ---------------------------------------------------------

_LIBRARY_DIRS = (str(Path(botocore.__file__).resolve().parent) + os.sep,
                 str(Path(sysconfig.get_paths()["stdlib"]).resolve()) + os.sep)
# Run by an administrator with their own credentials, not by the Lambda role.
OPERATOR_TOOLS = {"chalicelib/access_control/bootstrap_cli.py"}
_SKIPPED_FILES = {str(Path(__file__).resolve()), str(REPO / "chalicelib" / "aws.py")}


def caller_of_call(start: Any) -> str:
    """``app:``, ``test:``, ``local:`` or ``operator:<path>``, or ``unattributed``, for the current call."""
    frame = start
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename in _SKIPPED_FILES or filename.startswith(_LIBRARY_DIRS) or "site-packages" in filename \
                or filename.startswith("<"):
            frame = frame.f_back
            continue
        try:
            relative = Path(filename).resolve().relative_to(REPO).as_posix()
        except ValueError:
            return f"other:{filename}"
        if relative.startswith("chalicelib/local/"):
            return f"local:{relative}"
        if relative in OPERATOR_TOOLS:
            return f"operator:{relative}"
        if relative.startswith("chalicelib/") or relative == "app.py":
            return f"app:{relative}"
        return f"test:{relative}"
    return "unattributed"


# --- the recorder ---------------------------------------------------------------------------

class Recorder:
    """Collects :class:`Recorded` requests from botocore events (thread-safe)."""

    def __init__(self) -> None:
        self.records: set[Recorded] = set()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._key_aliases: dict[str, str] = {}

    # botocore handlers ---------------------------------------------------------------------
    def before_parameter_build(self, params: Mapping[str, Any], model: Any, context: dict[str, Any] | None = None,
                               **_: Any) -> None:
        if getattr(self._local, "suppressed", False):
            return
        caller = caller_of_call(sys._getframe(1))
        if not (caller.startswith("app:") or caller == "unattributed"):
            return
        service = model.service_model.signing_name or model.service_model.endpoint_prefix
        if service == "kms" and context is not None:
            context["v_secure_key_id"] = params.get("KeyId") or params.get("DestinationKeyId")
        try:
            from chalicelib.config import get_settings

            names = Names(get_settings())
            requests = iam_requests(service, model.name, params, names, self.key_alias)
        except Exception as error:  # never break the code under test; report the gap instead
            requests = [(f"{service}:{model.name}", f"<unmapped: {type(error).__name__}: {error}>", {}, None)]
        with self._lock:
            for action, resource, condition_context, condition in requests:
                self.records.add(Recorded(action, resource, f"{service}:{model.name}", caller,
                                          tuple(sorted(condition_context.items())), condition))

    def after_kms_call(self, parsed: Mapping[str, Any] | None = None, context: dict[str, Any] | None = None,
                       **_: Any) -> None:
        """Learn which key ARN an alias named, so a later ``Decrypt(KeyId=<arn>)`` is attributed."""
        requested = (context or {}).get("v_secure_key_id")
        key_arn = (parsed or {}).get("KeyId")
        if requested and key_arn and str(requested).startswith("alias/"):
            with self._lock:
                self._key_aliases[_key_uuid(str(key_arn))] = str(requested)

    # KMS key ids -> aliases ----------------------------------------------------------------
    def key_alias(self, key_id: str) -> str | None:
        if key_id.startswith("alias/"):
            return key_id
        if ":alias/" in key_id:
            return key_id.split(":", 5)[-1]
        known = self._key_aliases.get(_key_uuid(key_id))
        return known if known is not None else self._lookup_alias(key_id)

    def _lookup_alias(self, key_id: str) -> str | None:
        """Ask KMS which alias points at ``key_id`` (a call the recorder itself does not record)."""
        from chalicelib.aws import session
        from chalicelib.config import get_settings

        settings = get_settings()
        self._local.suppressed = True
        try:
            kms = session().client("kms", region_name=settings.region, endpoint_url=settings.aws_endpoint)
            for alias in kms.list_aliases(KeyId=key_id).get("Aliases", []):
                name = str(alias["AliasName"])
                with self._lock:
                    self._key_aliases[_key_uuid(key_id)] = name
                return name
        except Exception:
            return None
        finally:
            self._local.suppressed = False
        return None

    def install(self, *, reset_clients: bool = True) -> None:
        """Hook every botocore session created from now on (idempotent)."""
        handlers = [("before-parameter-build", self.before_parameter_build),
                    ("after-call.kms", self.after_kms_call)]
        for handler in handlers:
            if handler not in botocore.handlers.BUILTIN_HANDLERS:
                botocore.handlers.BUILTIN_HANDLERS.append(handler)
        aws = sys.modules.get("chalicelib.aws")
        if aws is not None and reset_clients:
            aws.reset_clients()  # clients built before this point would not carry the handlers

    def snapshot(self) -> list[Recorded]:
        with self._lock:
            return sorted(self.records, key=lambda r: (r.action, r.resource, r.caller, r.context))


def _key_uuid(key_id: str) -> str:
    return key_id.rsplit("/", 1)[-1]


RECORDER = Recorder()


# --- the check ------------------------------------------------------------------------------

def load_policy(path: Path = POLICY_PATH) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(path.read_text())
    return policy


def _describe(record: Recorded) -> str:
    context = ", ".join(f"{k}={'|'.join(v)}" for k, v in record.context)
    return f"{record.action} on {record.resource} ({record.operation} from {record.caller}" + \
        (f"; {context})" if context else ")")


def check_records(records: Iterable[Recorded], policy: Mapping[str, Any], *, full: bool,
                  reviewed: Mapping[tuple[str, str], Reviewed] = REVIEWED) -> list[str]:
    """Every problem with ``policy`` given what the code did (empty list: all good).

    Example::

        check_records(RECORDER.snapshot(), load_policy(), full=False)
    """
    records = list(records)
    problems: list[str] = []
    exercised: set[tuple[str, str]] = set()
    for record in records:
        decision = decide(policy, record.request())
        if not decision.allowed:
            problems.append(f"not allowed by infra/iam-policy.json ({decision.explanation}): {_describe(record)}")
        for sid in decision.allowing:
            exercised.add((sid, record.action))
            for value in dict(record.context).get("kms:EncryptionContext:purpose", ()):
                exercised.add((sid, f"kms:EncryptionContext:purpose={value}"))
        if record.action == "dynamodb:PutItem" and record.resource.endswith(f"table/{CANONICAL['audit_table']}") \
                and "attribute_not_exists(" not in (record.condition or ""):
            problems.append(f"audit table put without attribute_not_exists: {_describe(record)}")
    if full:
        problems.extend(_unused_grants(policy, exercised, reviewed))
    return problems


def _granted(policy: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs = granted_actions(policy)
    for index, statement in enumerate(policy.get("Statement", [])):
        if statement.get("Effect") != "Allow":
            continue
        sid = str(statement.get("Sid") or f"#{index}")
        for keys in (statement.get("Condition") or {}).values():
            purposes = keys.get("kms:EncryptionContext:purpose")
            for value in purposes if isinstance(purposes, list) else [purposes] if purposes else []:
                pairs.append((sid, f"kms:EncryptionContext:purpose={value}"))
    return pairs


def _unused_grants(policy: Mapping[str, Any], exercised: set[tuple[str, str]],
                   reviewed: Mapping[tuple[str, str], Reviewed]) -> list[str]:
    problems = []
    for grant in _granted(policy):
        if grant in exercised:
            continue
        excuse = reviewed.get(grant)
        if excuse is not None and excuse.excuses():
            continue
        why = f" (the reviewed excuse lapsed: {excuse.lapsed_because})" if excuse else ""
        problems.append(f"{grant[0]} grants {grant[1]} but no application code used it{why}: remove it from "
                        "infra/iam-policy.json, or add it to REVIEWED in tests/aws_actions.py with a reason")
    return problems


# --- pytest plugin --------------------------------------------------------------------------

class _SessionState:
    def __init__(self) -> None:
        self.run_id = "main"
        self.expected_files: set[str] = set()
        self.files_run: set[str] = set()
        self.failed = 0
        self.unavailable = 0


_STATE = _SessionState()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _base_dir(config: pytest.Config) -> Path:
    override = os.environ.get(RECORDS_DIR_ENV)
    if override:
        return Path(override)
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(CACHE_DIR_NAME))
    return REPO / ".pytest_cache" / CACHE_DIR_NAME


def _records_dir(config: pytest.Config) -> Path:
    """This session's directory (one per run, so concurrent pytest sessions never mix records)."""
    run = config.workerinput[_RUN_KEY] if _is_worker(config) else _STATE.run_id  # type: ignore[attr-defined]
    directory = _base_dir(config) / run
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def pytest_configure(config: pytest.Config) -> None:
    RECORDER.install()
    _STATE.expected_files = {path.relative_to(REPO).as_posix() for path in INTEGRATION_DIR.glob("test_*.py")
                             if _defines_tests(path)}
    if not _is_worker(config):
        _STATE.run_id = uuid.uuid4().hex


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: tell each worker the run's directory."""
    node.workerinput[_RUN_KEY] = _STATE.run_id


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid == CHECK_NODEID:
        return
    _STATE.files_run.add(report.nodeid.split("::", 1)[0])
    if report.failed:
        _STATE.failed += 1
    if report.skipped and "service unavailable" in str(report.longrepr):
        _STATE.unavailable += 1


def _defines_tests(path: Path) -> bool:
    """Support modules named ``test_*.py`` hold fixtures and helpers only; they never "run"."""
    return re.search(r"^\s*(async\s+)?def test_", path.read_text(), flags=re.MULTILINE) is not None


def _partial_reason(config: pytest.Config) -> str | None:
    """Why this run cannot judge unused grants (None: the whole integration suite ran and passed)."""
    option = config.option
    if getattr(option, "keyword", "") or getattr(option, "markexpr", "") or getattr(option, "lf", False) \
            or getattr(option, "deselect", None) or any("::" in str(arg) for arg in config.args):
        return "tests were selected (-k/-m/--lf/--deselect/node ids)"
    missing = _STATE.expected_files - _STATE.files_run
    if missing:
        return f"integration test file(s) did not run: {', '.join(sorted(missing)[:3])}"
    if _STATE.failed:
        return "some tests failed"
    if _STATE.unavailable:
        return "some tests were skipped for a missing service"
    return None


def _merged_records(config: pytest.Config) -> list[Recorded]:
    merged: set[Recorded] = set()
    for path in _records_dir(config).glob("*.json"):
        merged.update(Recorded.from_json(item) for item in json.loads(path.read_text()))
    return sorted(merged, key=lambda r: (r.action, r.resource, r.caller, r.context))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    worker = config.workerinput["workerid"] if _is_worker(config) else "main"  # type: ignore[attr-defined]
    (_records_dir(config) / f"{worker}.json").write_text(
        json.dumps([record.to_json() for record in RECORDER.snapshot()], indent=1))
    if _is_worker(config):
        return
    records = _merged_records(config)
    (_base_dir(config) / "last-run.json").write_text(json.dumps([r.to_json() for r in records], indent=1))
    shutil.rmtree(_records_dir(config), ignore_errors=True)
    if not records:
        return
    partial = _partial_reason(config)
    problems = check_records(records, load_policy(), full=partial is None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        scope = "recorded actions allowed and every grant used or reviewed" if partial is None else \
            f"recorded actions allowed; unused grants not judged: {partial}"
        reporter.write_line(f"IAM policy vs {len(records)} AWS requests of the application: {scope}")
    if problems:
        report = pytest.TestReport(
            nodeid=CHECK_NODEID, location=("tests/aws_actions.py", 0, "iam_policy_matches_recorded_actions"),
            keywords={}, outcome="failed", longrepr="\n".join(problems), when="call")
        config.hook.pytest_runtest_logreport(report=report)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
