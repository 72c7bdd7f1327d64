"""The audit API and CLI over real HTTP: the trail, who may read it, hashing, fail-closed, no plaintext."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from chalicelib.access_control.context import system_draft
from chalicelib.audit.events import Action
from chalicelib.audit.sealer import AuditLocation, KmsSigner, Sealer
from chalicelib.audit.stream import AuditWriter, get_audit_writer
from chalicelib.aws import client
from chalicelib.cli.main import cli
from chalicelib.clock import FrozenClock
from chalicelib.config import get_settings
from chalicelib.vault.keys import get_keyring
from chalicelib.vault.service import VaultService
from chalicelib.vault.storage import DynamoSecretRepository
from tests.integration.helpers import Api, secret_url, unique
from tests.integration.test_audit_support import IsolatedAudit


@pytest.fixture
def root(api_server: str, root_token: str) -> Api:
    return Api(api_server, root_token)


def trail(api: Api, **params: Any) -> dict[str, Any]:
    answer = api.get("/audit", **params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def cli_run(api_server: str, token: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--endpoint-url", api_server, "--token", token, *args])


def test_trail_of_a_secret_newest_first_and_paginated(root: Api) -> None:
    secret_id = unique("audit/trail")
    assert root.store(secret_id, "sk_live_trail0001", type="api_key").status_code == 201
    assert root.get(secret_url(secret_id)).status_code == 200
    assert root.get(secret_url(secret_id, "metadata")).status_code == 200

    body = trail(root, secretId=secret_id)
    assert body["secretId"] == secret_id
    assert [e["action"] for e in body["entries"]] == ["secret_describe", "secret_read", "secret_store"]
    first = body["entries"][0]
    assert {"timestamp", "actor", "actorType", "status", "eventId", "streamId", "seq", "hash"} <= set(first)
    # reading the trail is itself in the secret's trail from now on
    assert trail(root, secretId=secret_id, limit=1)["entries"][0]["action"] == "audit_read"

    actions = "secret_store,secret_read,secret_describe"  # several actions: merged newest first
    page = trail(root, secretId=secret_id, action=actions, limit=2)
    assert [e["action"] for e in page["entries"]] == ["secret_describe", "secret_read"] and page["nextToken"]
    page = trail(root, secretId=secret_id, action=actions, limit=2, nextToken=page["nextToken"])
    assert [e["action"] for e in page["entries"]] == ["secret_store"] and "nextToken" not in page

    reads = trail(root, secretId=secret_id, action="retrieve", startDate=datetime.now(UTC).date().isoformat())
    assert [e["action"] for e in reads["entries"]] == ["secret_read"]
    assert trail(root, secretId=secret_id, status="denied")["entries"] == []

    # the reads above were audited, with their filters
    mine = trail(root, action="audit_read", actor="root", limit=20)["entries"]
    assert any(e["details"].get("filters", {}).get("secretId") == secret_id for e in mine)

    event = root.get(f"/audit/streams/{first['streamId']}/events/{first['seq']}")
    assert event.status_code == 200 and event.json()["eventId"] == first["eventId"]
    assert event.json()["hash"] == first["hash"]


def test_audit_read_needs_the_permission(root: Api, api_server: str) -> None:
    reader_id, reader_token = root.new_principal()
    reader = Api(api_server, reader_token)
    secret_id = unique("audit/granted")
    assert root.store(secret_id, "sk_live_granted01", type="api_key").status_code == 201

    denied = reader.get("/audit", secretId=secret_id)
    assert denied.status_code == 403 and denied.json()["code"] == "access_denied"
    assert reader.get("/audit").status_code == 403
    assert reader.post("/audit/hash", {"value": "x"}).status_code == 403
    assert reader.post("/audit/seal").status_code == 403

    granted = root.store(secret_id, "sk_live_granted02", access={"root": ["admin"], reader_id: ["audit:read"]})
    assert granted.status_code == 201, granted.text
    allowed = reader.get("/audit", secretId=secret_id)
    assert allowed.status_code == 200 and allowed.json()["entries"]
    assert reader.get("/audit").status_code == 403  # a grant on one secret is not the whole log
    assert reader.get(secret_url(secret_id)).status_code == 403  # nor a read of the value

    denials = trail(root, actor=reader_id, status="denied", limit=50)["entries"]
    assert {e["action"] for e in denials} >= {"audit_read", "audit_hash", "audit_seal"}


def test_hash_matches_what_the_event_records(root: Api, api_server: str, root_token: str) -> None:
    value = f"candidate-{unique()}"
    first = root.post("/audit/hash", {"value": value})
    assert first.status_code == 200
    hashed = first.json()["hash"]
    assert hashed.startswith("hmac-sha256:") and len(hashed) == len("hmac-sha256:") + 64
    assert root.post("/audit/hash", {"value": value}).json()["hash"] == hashed
    assert root.post("/audit/hash", {"value": value + "x"}).json()["hash"] != hashed

    events = trail(root, action="audit_hash", actor="root", limit=3)["entries"]
    assert [e["details"]["input"] == hashed for e in events] == [False, True, True]

    result = cli_run(api_server, root_token, "--output", "text", "audit", "hash", "--value", value)
    assert result.exit_code == 0 and result.output.strip() == hashed


def test_cli_trail_and_logs_tail(root: Api, api_server: str, root_token: str) -> None:
    secret_id = unique("audit/tail")
    assert root.store(secret_id, "sk_live_tail00001", type="api_key").status_code == 201
    writer = get_audit_writer()
    writer.commit(system_draft(Action.ROTATION_STARTED, secret_id=secret_id))

    listed = cli_run(api_server, root_token, "audit", "trail", "--secret-id", secret_id, "--query",
                     "entries[].action", "--output", "text")
    assert listed.exit_code == 0 and listed.output.split() == ["rotation_started", "secret_store"]

    def later() -> None:
        time.sleep(0.6)
        writer.commit(system_draft(Action.ROTATION_COMPLETED, secret_id=secret_id))

    thread = threading.Thread(target=later)
    thread.start()
    tailed = cli_run(api_server, root_token, "--output", "text", "logs", "tail", "--filter", "rotation",
                     "--secret-id", secret_id, "--follow", "--interval", "0.4", "--polls", "4")
    thread.join()
    assert tailed.exit_code == 0, tailed.output
    lines = tailed.output.splitlines()
    assert [line.split()[1] for line in lines] == ["rotation_started", "rotation_completed"]
    assert "secret_store" not in tailed.output
    # A caller's event says why it was allowed; the service's own events do not.
    everything = cli_run(api_server, root_token, "--output", "text", "logs", "tail", "--secret-id", secret_id)
    by_action = {line.split()[1]: line for line in everything.output.splitlines()}
    assert by_action["secret_store"].endswith("(by global_admin)"), everything.output
    assert "(by" not in by_action["rotation_completed"]


def test_retrieve_fails_closed_when_the_audit_table_is_unwritable(root: Api, api_server: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A vault service whose audit writer points at a table that does not exist (the shared
    stack is untouched: only this test's routes use it, through the real HTTP server)."""
    secret_id = unique("audit/failclosed")
    assert root.store(secret_id, "sk_live_closed001", type="api_key").status_code == 201
    settings = get_settings()
    broken = VaultService(DynamoSecretRepository(client("dynamodb"), settings.secrets_table,
                                                 AuditWriter(client("dynamodb"), "v-secure-missing-audit")),
                          get_keyring(), settings=settings)
    with monkeypatch.context() as patch:
        patch.setattr("chalicelib.api.secrets.get_vault_service", lambda: broken)
        read = root.get(secret_url(secret_id))
        write = root.store(secret_id, "sk_live_closed002")
    for answer in (read, write):
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "audit_unavailable" and answer.json()["details"]["dependency"] == "audit"
        assert "sk_live" not in answer.text
    versions = root.get(secret_url(secret_id, "versions")).json()["versions"]
    assert [v["version"] for v in versions] == [1]  # the refused write left nothing behind
    assert root.get(secret_url(secret_id)).json()["value"] == "sk_live_closed001"


def test_no_plaintext_canary_in_events_segments_or_digests(root: Api, local_aws: str) -> None:
    canary = f"canary-{unique()}-value"
    secret_id = unique("audit/canary")
    assert root.store(secret_id, canary, type="api_key", reason="canary check").status_code == 201
    assert root.get(secret_url(secret_id)).json()["value"] == canary
    hashed = root.post("/audit/hash", {"value": canary}).json()["hash"]

    # Seal the shared audit table into a bucket and chain of this test's own, an hour ahead,
    # so every event so far is old enough to seal.
    isolated = IsolatedAudit.create()
    settings = get_settings()
    location = AuditLocation(audit_table=settings.audit_table, state_table=isolated.location.state_table,
                             bucket=isolated.location.bucket, signing_key_id=settings.audit_signing_key_id,
                             sse_kms_key_id=settings.kms_key_id, retention_days=1, seal_interval_seconds=300)
    clock = FrozenClock(datetime.now(UTC) + timedelta(hours=1))
    sealed = Sealer(client("dynamodb"), client("s3"), KmsSigner(client("kms"), location.signing_key_id),
                    location, clock).seal()
    assert sealed.events > 0

    pages = client("dynamodb").get_paginator("scan").paginate(TableName=settings.audit_table)
    items = [item for page in pages for item in page["Items"]]
    stored = "\n".join(str(item) for item in items)
    objects = b"".join(isolated.get(key) for key in isolated.keys(""))
    assert secret_id in stored and secret_id.encode() in objects  # the events are there...
    assert hashed in stored and hashed.encode() in objects       # ...with the value's HMAC...
    assert canary not in stored and canary.encode() not in objects  # ...never the value
