"""TOTP MFA over real HTTP and through the CLI: enrolment, per-request codes, replay, lock-out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from chalicelib.aws import client
from chalicelib.cli.access import qr_text
from chalicelib.cli.main import cli
from chalicelib.config import get_settings
from tests.integration.test_access_support import Client, audit_events, secret_path, since, totp_code

VALUE = "sk_live_mfa_canary_5e4d3c"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def root(api_server: str, root_token: str) -> Iterator[Client]:
    root = Client(api_server, root_token)
    yield root
    root.close()


def new_client(api_server: str, root: Client, prefix: str) -> tuple[str, Client]:
    principal_id = unique(prefix)
    return principal_id, Client(api_server, root.new_principal(principal_id))


def wrong_code(seed: str) -> str:
    valid = {totp_code(seed, s) for s in (-2, -1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def test_enrolment_stores_the_seed_encrypted_and_activates_on_the_first_valid_code(
        api_server: str, root: Client) -> None:
    alice_id, alice = new_client(api_server, root, "alice")
    secret_id = unique("mfa")
    root.store(secret_id, VALUE, access={alice_id: ["read"]}, constraints={"require_mfa": True})

    setup = alice.post("/auth/mfa/setup")
    assert setup.status_code == 201 and setup.headers["cache-control"] == "no-store"
    seed = setup.json()["secret"]
    assert setup.json()["otpauthUri"] == f"otpauth://totp/v-secure:{alice_id}?secret={seed}&issuer=v-secure"
    assert alice.get("/auth/mfa").json() == {"principalId": alice_id, "active": False, "pending": True,
                                             "enrolment": 1}
    db, table = client("dynamodb"), get_settings().secrets_table
    for key in ({"pk": {"S": f"PRINCIPAL#{alice_id}"}, "sk": {"S": "META"}},
                {"pk": {"S": "PRINCIPALS"}, "sk": {"S": alice_id}}):
        item = db.get_item(TableName=table, Key=key)["Item"]
        envelope = item["mfa"]["M"]["envelope"]["M"]
        assert envelope["alg"]["S"] == "AES-256-GCM" and envelope["ctx"]["M"]["secret_id"]["S"] == f"mfa/{alice_id}"
        assert seed not in json.dumps(item, default=repr)

    # Pending is not active: the secret still wants MFA the principal does not have.
    assert alice.get(secret_path(secret_id), mfa=totp_code(seed)).json()["reason"] == "mfa_required"
    start = since()
    bad = alice.post("/auth/mfa/activate", {"code": wrong_code(seed)})
    assert (bad.status_code, bad.json()["reason"]) == (403, "mfa_invalid")
    assert alice.post("/auth/mfa/activate", {"code": "12ab56"}).status_code == 400
    assert alice.post("/auth/mfa/activate", {"code": totp_code(seed, -1)}).json()["active"] is True
    assert alice.post("/auth/mfa/setup").status_code == 409  # no silent re-enrolment

    failed = [e for e in audit_events(actor=alice_id, after=start) if e["action"] == "mfa_failed"]
    assert [(e["status"], e["deny_reason"], e["details"]["during"]) for e in failed] == [
        ("denied", "mfa_invalid", "mfa_enroll")]
    enrolled = [(e["details"]["step"], e["status"], e.get("authorized_by"))
                for e in audit_events(actor=alice_id, after=since(30)) if e["action"] == "mfa_enroll"]
    # The refused re-enrolment (409) is recorded too, as a failure of an authorized request.
    assert enrolled == [("setup", "success", "self"), ("activate", "success", "self"), ("setup", "failure", "self")]


def test_a_code_is_good_for_one_request(api_server: str, root: Client) -> None:
    alice_id, alice = new_client(api_server, root, "alice")
    seed = alice.enrol_mfa()
    secret_id = unique("mfa")
    root.store(secret_id, VALUE, access={alice_id: ["read"]}, constraints={"require_mfa": True})
    start = since()

    missing = alice.get(secret_path(secret_id))
    assert (missing.status_code, missing.json()["reason"]) == (403, "mfa_required") and VALUE not in missing.text
    code = totp_code(seed)
    assert alice.get(secret_path(secret_id), mfa=code).json()["value"] == VALUE
    replay = alice.get(secret_path(secret_id), mfa=code)
    assert (replay.status_code, replay.json()["reason"]) == (403, "mfa_invalid")
    assert "already used" in replay.json()["message"] and VALUE not in replay.text
    wrong = alice.get(secret_path(secret_id), mfa=wrong_code(seed))
    assert (wrong.status_code, wrong.json()["reason"]) == (403, "mfa_invalid")
    assert alice.get(secret_path(secret_id), mfa=totp_code(seed, 1)).json()["value"] == VALUE

    events = [(e["action"], e["status"], e.get("deny_reason"))
              for e in audit_events(secret_id=secret_id, after=start) if e["actor"] == alice_id]
    assert events == [("secret_read", "denied", "mfa_required"), ("secret_read", "success", None),
                      ("mfa_failed", "denied", "mfa_invalid"), ("mfa_failed", "denied", "mfa_invalid"),
                      ("secret_read", "success", None)]


def test_failed_codes_are_counted_and_lock_the_principal_out(api_server: str, root: Client) -> None:
    carol_id, carol = new_client(api_server, root, "carol")
    seed = carol.enrol_mfa()
    secret_id = unique("mfa")
    root.store(secret_id, VALUE, access={carol_id: ["read"]}, constraints={"require_mfa": True})
    for _ in range(5):
        assert carol.get(secret_path(secret_id), mfa=wrong_code(seed)).json()["reason"] == "mfa_invalid"
    locked = carol.get(secret_path(secret_id), mfa=totp_code(seed))
    assert locked.status_code == 403 and "too many failed" in locked.json()["message"]
    assert VALUE not in locked.text
    failures = [e for e in audit_events(secret_id=secret_id) if e["action"] == "mfa_failed"]
    assert len(failures) == 6 and {e["actor"] for e in failures} == {carol_id}


def test_disable_needs_a_valid_code_or_a_global_admin(api_server: str, root: Client) -> None:
    _bob_id, bob = new_client(api_server, root, "bob")
    seed = bob.enrol_mfa()
    assert bob.post("/auth/mfa/disable", {}).json()["reason"] == "mfa_required"
    assert bob.post("/auth/mfa/disable", {"code": bob.activation_code}).json()["reason"] == "mfa_invalid"  # used
    assert bob.post("/auth/mfa/disable", {"code": totp_code(seed)}).json()["active"] is False
    assert bob.post("/auth/mfa/setup").json()["enrolment"] == 2

    dave_id, dave = new_client(api_server, root, "dave")
    dave.enrol_mfa()
    refused = bob.post("/auth/mfa/disable", {"principalId": dave_id})
    assert (refused.status_code, refused.json()["reason"]) == (403, "permission_denied")
    assert root.post("/auth/mfa/disable", {"principalId": dave_id}).json() == {
        "principalId": dave_id, "active": False, "pending": False, "enrolment": 1}


def test_the_cli_shows_the_uri_and_a_qr_code_then_activates(api_server: str, root: Client,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    erin_id = unique("erin")
    monkeypatch.setenv("V_SECURE_ENDPOINT", api_server)
    monkeypatch.setenv("V_SECURE_TOKEN", root.new_principal(erin_id))
    runner = CliRunner()

    setup = runner.invoke(cli, ["auth", "mfa", "setup"], catch_exceptions=False)
    assert setup.exit_code == 0, setup.output
    uri = json.loads(setup.stdout)["otpauthUri"]
    assert uri.startswith(f"otpauth://totp/v-secure:{erin_id}?secret=")
    assert f"URI:    {uri}" in setup.stderr
    assert qr_text(uri) in setup.stderr and "█" in qr_text(uri)
    seed = json.loads(setup.stdout)["secret"]
    assert json.loads(runner.invoke(cli, ["auth", "mfa", "status"]).stdout)["pending"] is True

    activated = runner.invoke(cli, ["auth", "mfa", "setup", "--code", totp_code(seed, -1)])
    assert activated.exit_code == 0 and json.loads(activated.stdout)["active"] is True
    wrong = runner.invoke(cli, ["auth", "mfa", "disable", "--code", wrong_code(seed)])
    assert wrong.exit_code == 1 and "reason: mfa_invalid" in wrong.stderr
    disabled = runner.invoke(cli, ["auth", "mfa", "disable", "--code", totp_code(seed)])
    assert disabled.exit_code == 0 and json.loads(disabled.stdout)["active"] is False
