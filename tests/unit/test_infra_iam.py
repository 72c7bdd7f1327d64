"""infra/iam-policy.json: what the Lambda role may and may not do, and the recorder that checks it.

The policy is evaluated with tests/iam_policy.py (AWS's rules for the elements it uses); the
end-of-session check in tests/aws_actions.py compares it with what the code really called.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.config import Settings
from tests import aws_actions
from tests.aws_actions import (
    CANONICAL,
    Names,
    Recorded,
    Recorder,
    Reviewed,
    caller_of_call,
    check_records,
    iam_requests,
    load_policy,
)
from tests.cfn_template import REPO, Resolver, load_template
from tests.iam_policy import AccessRequest, UnsupportedPolicy, decide

ACCOUNT = "123456789012"
SECRETS = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{CANONICAL['secrets_table']}"
AUDIT = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{CANONICAL['audit_table']}"
BUCKET = f"arn:aws:s3:::{CANONICAL['audit_bucket']}"
DATA_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/v-secure-data"
SECRET_CONTEXT = {"kms:ResourceAliases": ("alias/v-secure-data",),
                  "kms:EncryptionContextKeys": ("secret_id", "type", "version")}


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    return load_policy()


def allowed(policy: dict[str, Any], action: str, resource: str, **context: tuple[str, ...]) -> bool:
    return decide(policy, AccessRequest(action, resource, {k.replace("__", ":"): v for k, v in context.items()})
                  ).allowed


# --- the policy file and chalice's copy of it ----------------------------------------------

def test_chalice_uses_this_policy_without_autogeneration() -> None:
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    assert config["autogen_policy"] is False
    chalice_copy = REPO / ".chalice" / config["iam_policy_file"]
    assert json.loads(chalice_copy.read_text()) == load_policy(), \
        "copy infra/iam-policy.json to .chalice/policy-v-secure.json (make package does not regenerate it)"
    assert all("iam_policy_file" not in stage and stage.get("autogen_policy", False) is False
               for stage in config["stages"].values())


def test_every_action_is_a_real_iam_action(policy: dict[str, Any]) -> None:
    from cfnlint.data import AdditionalSpecs

    known = json.loads((Path(AdditionalSpecs.__file__).parent / "Policies.json").read_text())
    for statement in policy["Statement"]:
        for action in statement["Action"]:
            service, name = action.split(":")
            names = {a.lower() for a in known[service]["Actions"]}
            assert name.lower() in names or ("*" in name and any(
                n.startswith(name.lower().rstrip("*")) for n in names)), action


def test_only_supported_elements(policy: dict[str, Any]) -> None:
    for statement in policy["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement["Sid"]
        assert "*" not in statement["Action"] and statement["Resource"] != "*", statement["Sid"]
    decide(policy, AccessRequest("dynamodb:GetItem", SECRETS))  # raises UnsupportedPolicy on unknown operators


# --- the audit table: append only ----------------------------------------------------------

def test_audit_table_allows_put_query_get_only(policy: dict[str, Any]) -> None:
    for action in ("dynamodb:PutItem", "dynamodb:Query", "dynamodb:GetItem"):
        assert allowed(policy, action, AUDIT), action
    assert allowed(policy, "dynamodb:Query", f"{AUDIT}/index/by_secret")
    for action in ("dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                   "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete", "dynamodb:DeleteTable"):
        decision = decide(policy, AccessRequest(action, AUDIT))
        assert not decision.allowed and decision.denying == ("AuditTableNeverRewritten",), action


def test_secrets_table_read_write_but_no_table_administration(policy: dict[str, Any]) -> None:
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"):
        assert allowed(policy, action, SECRETS), action
    assert allowed(policy, "dynamodb:Query", f"{SECRETS}/index/by_kind")
    for action in ("dynamodb:Scan", "dynamodb:DeleteTable", "dynamodb:UpdateTable", "dynamodb:CreateTable"):
        assert not allowed(policy, action, SECRETS), action
    assert not allowed(policy, "dynamodb:GetItem", f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/other-secrets")


# --- KMS: only with the encryption context -------------------------------------------------

def test_data_key_needs_the_secret_context(policy: dict[str, Any]) -> None:
    for action in ("kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo"):
        assert allowed(policy, action, DATA_KEY, **_ctx(SECRET_CONTEXT)), action
    no_context = {"kms__ResourceAliases": ("alias/v-secure-data",)}
    assert not allowed(policy, "kms:Decrypt", DATA_KEY, **no_context)
    extra = {**SECRET_CONTEXT, "kms:EncryptionContextKeys": ("secret_id", "type", "version", "other")}
    assert not allowed(policy, "kms:Decrypt", DATA_KEY, **_ctx(extra))
    no_secret = {**SECRET_CONTEXT, "kms:EncryptionContextKeys": ("type", "version")}
    assert not allowed(policy, "kms:Decrypt", DATA_KEY, **_ctx(no_secret))
    other_key = {**SECRET_CONTEXT, "kms:ResourceAliases": ("alias/someone-else",)}
    assert not allowed(policy, "kms:Decrypt", DATA_KEY, **_ctx(other_key))


def test_data_key_checks_by_purpose(policy: dict[str, Any]) -> None:
    def purpose(value: str) -> dict[str, tuple[str, ...]]:
        return {"kms:ResourceAliases": ("alias/v-secure-data",), "kms:EncryptionContextKeys": ("purpose",),
                "kms:EncryptionContext:purpose": (value,)}

    assert allowed(policy, "kms:GenerateDataKey", DATA_KEY, **_ctx(purpose("health-check")))
    assert allowed(policy, "kms:Decrypt", DATA_KEY, **_ctx(purpose("audit-hmac")))
    assert not allowed(policy, "kms:Decrypt", DATA_KEY, **_ctx(purpose("anything-else")))


def _ctx(context: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {k.replace(":", "__"): v for k, v in context.items()}


def _purpose_literals() -> set[str]:
    """``"purpose"`` values of dict literals bound to a name or keyword that says ``context``."""
    found: set[str] = set()
    for path in (REPO / "chalicelib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Assign | ast.AnnAssign):
                value = node.value
                names = node.targets if isinstance(node, ast.Assign) else [node.target]
                targets = [ast.unparse(target) for target in names]
            elif isinstance(node, ast.keyword) and node.arg:
                value, targets = node.value, [node.arg]
            else:
                continue
            if not isinstance(value, ast.Dict) or not any("context" in t.lower() for t in targets):
                continue
            for key, item in zip(value.keys, value.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "purpose" and isinstance(item, ast.Constant):
                    found.add(str(item.value))
    return found


def test_every_kms_purpose_in_the_code_is_allowed(policy: dict[str, Any]) -> None:
    purposes = _purpose_literals()
    assert "health-check" in purposes  # the scan finds what it is meant to find
    iam = next(s for s in policy["Statement"] if s["Sid"] == "DataKeyForKeyChecks")
    template = load_template(REPO / "infra" / "stateful.yaml")
    key_policy = Resolver(template).resolve(template["Resources"]["DataKey"]["Properties"]["KeyPolicy"])
    key_checks = next(s for s in key_policy["Statement"] if s["Sid"] == "AppKeyChecks")
    for allowed_purposes in (iam["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"],
                             key_checks["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"]):
        assert purposes <= set(allowed_purposes)


def test_signing_key_signs_digests_only(policy: dict[str, Any]) -> None:
    signing = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/signing"
    context = {"kms__ResourceAliases": ("alias/v-secure-audit-signing",), "kms__SigningAlgorithm": ("ECDSA_SHA_256",),
               "kms__MessageType": ("RAW",)}
    assert allowed(policy, "kms:Sign", signing, **context)
    assert not allowed(policy, "kms:Sign", signing, **{**context, "kms__SigningAlgorithm": ("RSASSA_PSS_SHA_256",)})
    assert not allowed(policy, "kms:Sign", DATA_KEY, **{**context, "kms__ResourceAliases": ("alias/v-secure-data",)})
    assert not allowed(policy, "kms:Decrypt", signing, kms__ResourceAliases=("alias/v-secure-audit-signing",))


# --- S3 and EventBridge ----------------------------------------------------------------------

def test_audit_bucket_write_once(policy: dict[str, Any]) -> None:
    assert allowed(policy, "s3:PutObject", f"{BUCKET}/segments/x.jsonl")
    assert allowed(policy, "s3:ListBucket", BUCKET)
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention",
                   "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration"):
        resource = BUCKET if "Bucket" in action or "Lifecycle" in action else f"{BUCKET}/segments/x.jsonl"
        assert not allowed(policy, action, resource), action
    assert not allowed(policy, "s3:PutObject", "arn:aws:s3:::someone-elses-bucket/x")


def test_events_only_on_the_v_secure_bus(policy: dict[str, Any]) -> None:
    assert allowed(policy, "events:PutEvents", f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/v-secure")
    assert allowed(policy, "events:PutEvents", f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/v-secure-prod")
    assert not allowed(policy, "events:PutEvents", f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default")


# --- the evaluator ---------------------------------------------------------------------------

def test_evaluator_set_operators_and_deny() -> None:
    policy = {"Statement": [
        {"Sid": "A", "Effect": "Allow", "Action": "x:Do", "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"k:Keys": ["a", "b"]}, "Null": {"k:Other": "true"}}},
        {"Sid": "D", "Effect": "Deny", "Action": "x:Do*", "Resource": "arn:denied"},
    ]}
    assert decide(policy, AccessRequest("x:Do", "arn:ok", {"k:Keys": ("a",)})).allowed
    assert not decide(policy, AccessRequest("x:Do", "arn:ok", {"k:Keys": ("a", "c")})).allowed
    assert not decide(policy, AccessRequest("x:Do", "arn:ok", {"k:Other": ("1",)})).allowed
    assert decide(policy, AccessRequest("x:Do", "arn:denied")).denying == ("D",)
    with pytest.raises(UnsupportedPolicy):
        decide({"Statement": [{"Effect": "Allow", "NotAction": "x:*", "Resource": "*"}]},
               AccessRequest("x:Do", "arn:ok"))
    with pytest.raises(UnsupportedPolicy):
        decide({"Statement": [{"Effect": "Allow", "Action": "x:Do", "Resource": "*",
                               "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020"}}}]},
               AccessRequest("x:Do", "arn:ok"))


# --- translating calls into IAM requests -----------------------------------------------------

NAMES = Names(Settings(secrets_table="t-secrets-1", audit_table="t-audit-1", audit_bucket="b-1",
                       event_bus="bus-1", kms_key_id="alias/k-1", audit_signing_key_id="alias/s-1"))


def test_transactions_are_authorized_per_item() -> None:
    requests = iam_requests("dynamodb", "TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": "t-secrets-1", "Item": {}, "ConditionExpression": "rev = :rev"}},
        {"Update": {"TableName": "t-secrets-1", "Key": {}}},
        {"ConditionCheck": {"TableName": "t-secrets-1", "Key": {}}},
        {"Put": {"TableName": "t-audit-1", "Item": {}, "ConditionExpression": "attribute_not_exists(pk)"}},
    ]}, NAMES, lambda key: None)
    assert [(action, resource, condition) for action, resource, _, condition in requests] == [
        ("dynamodb:PutItem", SECRETS, "rev = :rev"), ("dynamodb:UpdateItem", SECRETS, None),
        ("dynamodb:ConditionCheckItem", SECRETS, None), ("dynamodb:PutItem", AUDIT, "attribute_not_exists(pk)")]


def test_kms_requests_carry_context_keys_and_alias() -> None:
    (action, resource, context, _), = iam_requests(
        "kms", "Decrypt", {"KeyId": "arn:aws:kms:eu-west-1:1:key/abc", "EncryptionContext": {
            "secret_id": "db", "version": "1", "type": "api_key"}}, NAMES, lambda key: "alias/k-1")
    assert (action, resource) == ("kms:Decrypt", DATA_KEY)
    assert context == SECRET_CONTEXT
    from_to = iam_requests("kms", "ReEncrypt", {"SourceKeyId": "alias/k-1", "DestinationKeyId": "alias/k-1",
                                                "SourceEncryptionContext": {"secret_id": "x"}}, NAMES, lambda k: k)
    assert [r[0] for r in from_to] == ["kms:ReEncryptFrom", "kms:ReEncryptTo"]


def test_object_lock_headers_need_put_object_retention() -> None:
    requests = iam_requests("s3", "PutObject", {"Bucket": "b-1", "Key": "k", "ObjectLockMode": "COMPLIANCE"},
                            NAMES, lambda key: None)
    assert [r[0] for r in requests] == ["s3:PutObject", "s3:PutObjectRetention"]
    assert requests[0][1] == f"{BUCKET}/k"


# --- attribution and recording ----------------------------------------------------------------

def _run_as(path: Path, expression: str, **names: Any) -> Any:
    """Evaluate ``expression`` in a function whose code lives in ``path`` (as if that module ran it)."""
    namespace: dict[str, Any] = {"sys": sys, **names}
    exec(compile(f"def call():\n    return {expression}\n", str(path), "exec"), namespace)
    return namespace["call"]()


def test_attribution_by_calling_file() -> None:
    assert caller_of_call(sys._getframe(0)).startswith("test:tests/unit/")
    here = "caller_of_call(sys._getframe(0))"
    assert _run_as(REPO / "chalicelib" / "vault" / "x.py", here, caller_of_call=caller_of_call) == \
        "app:chalicelib/vault/x.py"
    assert _run_as(REPO / "chalicelib" / "local" / "bootstrap.py", here, caller_of_call=caller_of_call) == \
        "local:chalicelib/local/bootstrap.py"


def test_recorder_sees_app_calls_only(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    others = [h for h in aws_actions.botocore.handlers.BUILTIN_HANDLERS
              if getattr(h[1], "__self__", None) is not aws_actions.RECORDER]  # the session's recorder stays out
    monkeypatch.setattr("botocore.handlers.BUILTIN_HANDLERS", others)
    recorder.install(reset_clients=False)
    dynamodb = boto3.session.Session(region_name="us-east-1", aws_access_key_id="a",
                                     aws_secret_access_key="b").client("dynamodb")
    with Stubber(dynamodb) as stub:
        stub.add_response("get_item", {})
        stub.add_response("get_item", {})
        dynamodb.get_item(TableName="from-a-test", Key={"pk": {"S": "x"}})
        _run_as(REPO / "chalicelib" / "vault" / "storage.py",
                'client.get_item(TableName="from-the-app", Key={"pk": {"S": "x"}})', client=dynamodb)
    records = recorder.snapshot()
    assert [(r.action, r.resource.rsplit("/", 1)[-1], r.caller) for r in records] == [
        ("dynamodb:GetItem", "from-the-app", "app:chalicelib/vault/storage.py")]


# --- the end-of-session check -----------------------------------------------------------------

def _record(action: str, resource: str, condition: str | None = None, **context: tuple[str, ...]) -> Recorded:
    return Recorded(action, resource, action, "app:chalicelib/x.py",
                    tuple(sorted((k.replace("__", ":"), v) for k, v in context.items())), condition)


def test_check_flags_what_the_policy_does_not_allow(policy: dict[str, Any]) -> None:
    problems = check_records([_record("dynamodb:UpdateItem", AUDIT)], policy, full=False)
    assert len(problems) == 1 and "AuditTableNeverRewritten" in problems[0]
    assert check_records([_record("dynamodb:GetItem", SECRETS)], policy, full=False) == []


def test_check_requires_attribute_not_exists_on_audit_puts(policy: dict[str, Any]) -> None:
    assert check_records([_record("dynamodb:PutItem", AUDIT, "attribute_not_exists(pk)")], policy, full=False) == []
    problems = check_records([_record("dynamodb:PutItem", AUDIT, None)], policy, full=False)
    assert problems and "attribute_not_exists" in problems[0]


def test_full_check_flags_unused_grants_unless_reviewed(policy: dict[str, Any]) -> None:
    used = [_record("dynamodb:GetItem", SECRETS)]
    problems = check_records(used, policy, full=True, reviewed={})
    assert not any("SecretsTableItems grants dynamodb:GetItem" in p for p in problems)
    assert any("SecretsTableItems grants dynamodb:UpdateItem" in p for p in problems)
    everything = {(p.split(" grants ")[0], p.split(" grants ")[1].split(" but ")[0]): Reviewed("test")
                  for p in problems}
    assert check_records(used, policy, full=True, reviewed=everything) == []
    lapsed = {key: Reviewed("test", until_module="chalicelib.config") for key in everything}
    assert len(check_records(used, policy, full=True, reviewed=lapsed)) == len(problems)


def test_reviewed_entries_have_reasons_and_exist_in_the_policy(policy: dict[str, Any]) -> None:
    granted = set(aws_actions._granted(policy))
    for key, entry in aws_actions.REVIEWED.items():
        assert key in granted, f"REVIEWED lists {key}, which the policy no longer grants"
        assert len(entry.reason) >= 20, key


CHILD_TEST = '''
import boto3
from botocore.stub import Stubber

REPO = {repo!r}


def test_the_app_rewrites_an_audit_item():
    dynamodb = boto3.session.Session(region_name="us-east-1", aws_access_key_id="a",
                                     aws_secret_access_key="b").client("dynamodb")
    with Stubber(dynamodb) as stub:
        stub.add_response("update_item", {{}})
        code = compile("def call(client):\\n    client.update_item(TableName='v-secure-audit', Key={{}})\\n",
                       REPO + "/chalicelib/audit/stream.py", "exec")
        namespace = {{}}
        exec(code, namespace)
        namespace["call"](dynamodb)
'''


def test_a_disallowed_call_fails_the_whole_run(tmp_path: Path) -> None:
    """End to end: the plugin turns one audit-table UpdateItem by application code into a failed run."""
    import os
    import subprocess

    test_file = tmp_path / "test_child.py"
    test_file.write_text(CHILD_TEST.format(repo=str(REPO)))
    env = {name: value for name, value in os.environ.items() if not name.startswith("V_SECURE_")}
    env.update(PYTHONPATH=str(REPO), V_SECURE_AWS_ACTIONS_DIR=str(tmp_path / "records"))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.aws_actions", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), str(test_file)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed" in run.stdout
    assert "iam_policy_matches_recorded_actions" in run.stdout and "AuditTableNeverRewritten" in run.stdout
