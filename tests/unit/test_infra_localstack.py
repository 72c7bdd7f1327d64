"""localstack-compose.yml: the services v-secure uses, persistent state, loopback only."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.cfn_template import REPO

COMPOSE = REPO / "localstack-compose.yml"
NEEDED = {"dynamodb", "kms", "s3", "events", "sqs", "cloudformation", "iam", "sts"}


def _service() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]["localstack"]
    return service


def test_every_service_v_secure_uses() -> None:
    services = set(_service()["environment"]["SERVICES"].split(","))
    assert services >= NEEDED
    used = {match for path in (REPO / "chalicelib").rglob("*.py")
            for match in re.findall(r"\bclient\(\"([a-z0-9-]+)\"\)", path.read_text())}
    assert {"dynamodb", "kms"} <= used  # the scan finds the clients
    assert used <= services, used - services


def test_state_persists_in_a_volume() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    service = _service()
    assert service["environment"]["PERSISTENCE"] == "1"
    volume, mount = service["volumes"][0].split(":")
    assert mount == "/var/lib/localstack" and volume in compose["volumes"]


def test_listens_on_loopback_at_the_default_aws_port() -> None:
    from chalicelib.config import Settings

    assert _service()["ports"] == [f"127.0.0.1:{Settings().aws_port}:4566"]
