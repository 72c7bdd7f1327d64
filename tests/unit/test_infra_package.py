"""The packaged app stack (``infra/package.py`` = ``make package``), cfn-lint and checkov.

The template is built exactly as ``make package STAGE=prod`` builds it, only without
downloading the dependencies (``--no-deps``): the template does not depend on them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chalice.app import ScheduledEventConfig
from chalice.config import Config

from tests.cfn_template import REPO, Resolver, load_template
from tests.conftest import service_unavailable
from tests.unit.test_infra_stateful import function_names

PACKAGE_SCRIPT = REPO / "infra" / "package.py"
STATEFUL = REPO / "infra" / "stateful.yaml"
APP_MERGE = REPO / "infra" / "app.yaml"
CHECKOV = Path(os.environ.get("V_SECURE_CHECKOV") or REPO / ".venv-checkov" / "bin" / "checkov")


def build(stage: str, out: Path) -> dict[str, Any]:
    subprocess.run([sys.executable, str(PACKAGE_SCRIPT), "--stage", stage, "--out", str(out), "--no-deps"],
                   check=True, capture_output=True, timeout=300)
    template: dict[str, Any] = json.loads((out / "sam.json").read_text())
    return template


@pytest.fixture(scope="module")
def packaged_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package") / "prod"
    build("prod", out)
    return out


@pytest.fixture(scope="module")
def packaged(packaged_dir: Path) -> dict[str, Any]:
    template: dict[str, Any] = json.loads((packaged_dir / "sam.json").read_text())
    return template


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function"}


def chalice_config(stage: str, function: str) -> Config:
    disk = json.loads((REPO / ".chalice" / "config.json").read_text())
    return Config(chalice_stage=stage, function_name=function, config_from_disk=disk)


def test_every_route_is_in_the_api(packaged: dict[str, Any]) -> None:
    from app import app

    paths = packaged["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    expected = {(path, method.lower()) for path, methods in app.routes.items() for method in methods}
    found = {(path, method) for path, operations in paths.items() for method in operations if method != "options"}
    assert found == expected


def test_every_scheduled_function_is_packaged(packaged: dict[str, Any]) -> None:
    from app import app

    scheduled = {}
    for resource in functions(packaged).values():
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "Schedule":
                scheduled[resource["Properties"]["Handler"]] = event["Properties"]["Schedule"]
    assert scheduled == {source.handler_string: _expression(source)
                         for source in app.event_sources if isinstance(source, ScheduledEventConfig)}
    assert all(isinstance(source, ScheduledEventConfig) for source in app.event_sources)
    assert len(functions(packaged)) == len(function_names())


def _expression(source: ScheduledEventConfig) -> str:
    expression = source.schedule_expression
    return expression if isinstance(expression, str) else expression.to_string()


def _function_name(resource: dict[str, Any]) -> str:
    from app import app

    handler = resource["Properties"]["Handler"]
    if handler == "app.app":
        return "api_handler"
    return next(source.name for source in app.event_sources if source.handler_string == handler)


def test_runtime_memory_timeout_and_reserved_concurrency(packaged: dict[str, Any]) -> None:
    for logical_id, resource in functions(packaged).items():
        properties = resource["Properties"]
        config = chalice_config("prod", _function_name(resource))
        assert properties["Runtime"] == "python3.11", logical_id
        assert properties["Architectures"] == ["x86_64"], logical_id
        assert properties["MemorySize"] == config.lambda_memory_size, logical_id
        assert properties["Timeout"] == config.lambda_timeout, logical_id
        assert properties["ReservedConcurrentExecutions"] == config.reserved_concurrency, logical_id
        assert isinstance(config.reserved_concurrency, int) and config.reserved_concurrency > 0, logical_id
    assert chalice_config("prod", "audit-sealer").reserved_concurrency == 1  # one sealer at a time


def test_environment_comes_from_the_stateful_stack(packaged: dict[str, Any]) -> None:
    mapping = load_template(STATEFUL)["Metadata"]["VSecure"]["EnvironmentOutputs"]
    variables = packaged["Globals"]["Function"]["Environment"]["Variables"]
    for output, name in mapping.items():
        assert variables[name] == {"Fn::ImportValue": {"Fn::Sub": f"${{StatefulStackName}}-{output}"}}
    for logical_id, resource in functions(packaged).items():
        own = resource["Properties"].get("Environment", {}).get("Variables", {})
        assert not set(own) & set(mapping.values()), f"{logical_id} would override the imported names"
        assert own["V_SECURE_STAGE"] == "prod"


def test_roles_are_the_ones_the_key_policies_name(packaged: dict[str, Any]) -> None:
    policy = json.loads((REPO / "infra" / "iam-policy.json").read_text())
    resolver = Resolver(packaged)
    roles = [r for r in packaged["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    names = {resolver.resolve(role["Properties"]["RoleName"]) for role in roles}
    assert names == {f"v-secure-{function}" for function in function_names()}
    for role in roles:
        assert [p["PolicyDocument"] for p in role["Properties"]["Policies"]] == [policy]


def test_arm64_stage(tmp_path: Path) -> None:
    template = build("prod-arm64", tmp_path / "arm64")
    assert {tuple(r["Properties"]["Architectures"]) for r in functions(template).values()} == {("arm64",)}


def test_cfn_lint_passes_on_the_packaged_template(packaged_dir: Path) -> None:
    from cfnlint.api import lint_file

    assert [str(match) for match in lint_file(packaged_dir / "sam.json")] == []


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n"
                      "      BillingMode: PAY_PER_REQUEST\n      KeySchema: [{AttributeName: pk, KeyType: HASH}]\n")
    from cfnlint.api import lint_file

    assert lint_file(broken)


# --- checkov -------------------------------------------------------------------------------

def _skips(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [skip for resource in template.get("Resources", {}).values()
            for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", [])]


@pytest.mark.parametrize("path", [STATEFUL, APP_MERGE], ids=["stateful", "app"])
def test_every_scanner_suppression_has_a_reason(path: Path) -> None:
    skips = _skips(load_template(path))
    assert skips
    for skip in skips:
        assert skip["id"].startswith("CKV_") and len(skip.get("comment", "").strip()) >= 40, skip


WEAK_TEMPLATE = "Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n"


@pytest.fixture(scope="module")
def checkov_results(packaged_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list]]:
    """One checkov run over stateful.yaml, the packaged template and a deliberately weak one."""
    if not CHECKOV.exists():
        service_unavailable("checkov", f"{CHECKOV} not found (make .venv-checkov installs it)")
    weak = tmp_path_factory.mktemp("checkov") / "weak.yaml"
    weak.write_text(WEAK_TEMPLATE)
    files = {"stateful": STATEFUL, "packaged": packaged_dir / "sam.json", "weak": weak}
    answer = subprocess.run(
        [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--output", "json", "--compact",
         *(arg for file in files.values() for arg in ("-f", str(file)))],
        capture_output=True, text=True, timeout=300, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    data = json.loads(answer.stdout)
    by_file: dict[str, dict[str, list]] = {name: {"passed": [], "failed": [], "skipped": []} for name in files}
    names = {str(path.resolve()): name for name, path in files.items()}
    for report in data if isinstance(data, list) else [data]:
        for outcome in ("passed", "failed", "skipped"):
            for check in report["results"][f"{outcome}_checks"]:
                by_file[names[str(Path(check["file_abs_path"]).resolve())]][outcome].append(check)
    return by_file


@pytest.mark.parametrize("name", ["stateful", "packaged"])
def test_checkov_passes_with_reviewed_suppressions_only(checkov_results: dict[str, dict[str, list]],
                                                        name: str) -> None:
    results = checkov_results[name]
    assert [(c["check_id"], c["resource"]) for c in results["failed"]] == []
    assert results["skipped"]
    assert all(len((c.get("check_result") or {}).get("suppress_comment", "")) >= 40 for c in results["skipped"])
    assert len(results["passed"]) >= 10


def test_checkov_catches_an_unprotected_bucket(checkov_results: dict[str, dict[str, list]]) -> None:
    failed = {c["check_id"] for c in checkov_results["weak"]["failed"]}
    assert {"CKV_AWS_21", "CKV_AWS_18"} <= failed  # versioning, access logging


# --- the Makefile targets -----------------------------------------------------------------------

def _make_dry_run(*args: str) -> list[str]:
    answer = subprocess.run(["make", "-n", "--always-make", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert answer.returncode == 0, answer.stderr
    return [line for line in answer.stdout.replace("\\\n", " ").splitlines() if line.strip()]


def test_make_package_builds_the_stage() -> None:
    assert any("infra/package.py --stage prod --out build/package/prod" in line
               for line in _make_dry_run("package", "STAGE=prod"))


def test_make_deploy_deploys_the_stateful_stack_first() -> None:
    lines = [line for line in _make_dry_run("deploy", "STAGE=dev", "ARTIFACT_BUCKET=artifacts")
             if line.lstrip().startswith("aws cloudformation")]
    assert [line.split()[2] for line in lines][:3] == ["deploy", "package", "deploy"]
    stateful, package, app = lines[0], lines[1], lines[2]
    assert "--stack-name v-secure-dev-stateful --template-file infra/stateful.yaml" in stateful
    assert "NamePrefix=v-secure-dev" in stateful
    assert "--template-file build/package/dev/sam.json" in package and "--s3-bucket artifacts" in package
    assert "--stack-name v-secure-dev-app" in app and "CAPABILITY_NAMED_IAM" in app
    assert "StatefulStackName=v-secure-dev-stateful" in app
