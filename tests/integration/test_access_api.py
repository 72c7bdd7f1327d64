"""The access API over real HTTP: access documents, grants, denies, groups, prefix policies, errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.integration.test_access_support import Client, audit_events, secret_path, since

SPEC_PERMISSIONS = {
    "backend-team": ["read", "rotate"],
    "devops-team": ["delete", "read", "rotate", "write"],
    "app-instance": ["read"],
    "external-service": ["read", "rotate"],
}
VALUE = "sk_live_canary_0c9b8a7d"
Person = Callable[..., Client]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def root(api_server: str, root_token: str) -> Iterator[Client]:
    client = Client(api_server, root_token)
    yield client
    client.close()


@pytest.fixture
def person(api_server: str, root: Client) -> Iterator[Person]:
    """``person(name, **fields)`` -> a Client for a new principal."""
    made: list[Client] = []

    def make(prefix: str, **fields: object) -> Client:
        principal_id = unique(prefix)
        client = Client(api_server, root.new_principal(principal_id, **fields), principal_id=principal_id)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def pid(client: Client) -> str:
    return client.principal_id


def test_the_access_document_has_the_spec_shape(root: Client) -> None:
    secret_id = unique("db_password")
    assert root.store(secret_id, VALUE).status_code == 201
    initial = root.get(secret_path(secret_id, "access"))
    assert initial.status_code == 200
    assert initial.json() == {"secret_id": secret_id, "permissions": {"root": ["admin"]}, "deny": {},
                              "policies": [], "version": 1}
    document = {"secret_id": secret_id, "permissions": SPEC_PERMISSIONS,
                "constraints": {"ip_whitelist": ["10.0.0.0/8", "127.0.0.0/8"], "require_mfa": False,
                                "rate_limit": "100/min"}}
    replaced = root.put(secret_path(secret_id, "access"), document)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["permissions"] == SPEC_PERMISSIONS
    assert replaced.json()["constraints"] == document["constraints"]
    assert root.get(secret_path(secret_id, "access")).json() == replaced.json()
    # Fields left out are kept; an access change creates no version.
    only_deny = root.put(secret_path(secret_id, "access"), {"deny": {"devops-team": ["delete"]}}).json()
    assert (only_deny["permissions"], only_deny["deny"]) == (SPEC_PERMISSIONS, {"devops-team": ["delete"]})
    assert only_deny["version"] == 1 and only_deny["constraints"]["rate_limit"] == "100/min"
    assert root.get(secret_path(secret_id)).json()["value"] == VALUE


def test_only_secret_admins_change_access_and_every_change_is_audited(root: Client, person: Person) -> None:
    secret_id = unique("acl")
    owner, reader = person("owner"), person("reader")
    root.store(secret_id, VALUE, access={pid(owner): ["admin"], pid(reader): ["read"]})
    start = since()

    refused = reader.post(secret_path(secret_id, "access", "grant"), {"to": pid(reader), "permissions": ["write"]})
    assert refused.status_code == 403
    assert refused.json()["reason"] == "permission_denied" and "'admin'" in refused.json()["message"]
    assert reader.get(secret_path(secret_id, "access")).status_code == 200  # read suffices to look

    granted = owner.post(secret_path(secret_id, "access", "grant"),
                         {"to": "backend-team", "permissions": ["read", "rotate"], "reason": "on-call"})
    assert granted.status_code == 200 and granted.json()["permissions"]["backend-team"] == ["read", "rotate"]
    revoked = owner.post(secret_path(secret_id, "access", "revoke"), {"from": pid(reader)})
    assert revoked.status_code == 200 and pid(reader) not in revoked.json()["permissions"]
    assert reader.get(secret_path(secret_id)).status_code == 403

    events = [e for e in audit_events(secret_id=secret_id, after=start)
              if e["action"] in ("access_grant", "access_revoke", "access_read")]
    summary = [(e["actor"], e["action"], e["status"], e.get("deny_reason")) for e in events]
    assert summary == [
        (pid(reader), "access_grant", "denied", "permission_denied"),
        (pid(reader), "access_read", "success", None),
        (pid(owner), "access_grant", "success", None),
        (pid(owner), "access_revoke", "success", None),
    ]
    grant = events[2]
    assert grant["reason"] == "on-call" and grant["details"]["subject"] == "backend-team"
    assert "backend-team" not in grant["details"]["before"]["permissions"]
    assert grant["details"]["after"]["permissions"]["backend-team"] == ["read", "rotate"]
    assert VALUE not in str(events)


def test_refusals_do_not_reveal_whether_a_secret_exists(root: Client, person: Person) -> None:
    secret_id, missing = unique("exists"), unique("missing")
    root.store(secret_id, VALUE)
    stranger = person("stranger")
    calls: list[tuple[str, tuple[str, ...], dict[str, object] | None]] = [
        ("GET", (), None), ("GET", ("access",), None), ("PUT", ("access",), {"permissions": {}}),
        ("POST", ("access", "grant"), {"to": "x", "permissions": ["read"]}),
        ("POST", ("access", "revoke"), {"from": "x"}),
        ("GET", ("metadata",), None), ("GET", ("versions",), None), ("DELETE", (), None),
        ("POST", ("rollback",), {"version": 1}), ("POST", ("restore",), None)]
    for method, rest, body in calls:
        answers = [stranger.request(method, secret_path(s, *rest), json=body) for s in (secret_id, missing)]
        assert [a.status_code for a in answers] == [403, 403], (method, rest)
        assert answers[0].json() == answers[1].json(), (method, rest)
        assert VALUE not in answers[0].text


def test_explicit_deny_wins_over_a_group_grant(root: Client, person: Person) -> None:
    secret_id, team = unique("deny"), unique("team")
    alice = person("alice", groups=[team])
    bob = person("bob", groups=[team])
    root.store(secret_id, VALUE, access={team: ["read"]})
    assert alice.get(secret_path(secret_id)).status_code == 200
    denied = root.post(secret_path(secret_id, "access", "grant"),
                       {"to": pid(alice), "permissions": ["read"], "effect": "deny"})
    assert denied.json()["deny"] == {pid(alice): ["read"]}
    refused = alice.get(secret_path(secret_id))
    assert (refused.status_code, refused.json()["reason"]) == (403, "explicit_deny")
    assert "value" not in refused.json()
    assert bob.get(secret_path(secret_id)).json()["value"] == VALUE
    root.post(secret_path(secret_id, "access", "revoke"), {"from": pid(alice), "effect": "deny"})
    assert alice.get(secret_path(secret_id)).status_code == 200


def test_groups_grant_through_membership(root: Client, person: Person) -> None:
    secret_id, team = unique("grp"), unique("team")
    alice = person("alice")
    founder = person("founder", groups=[team])
    root.store(secret_id, VALUE, access={f"group:{team}": ["read"]})
    assert alice.get(secret_path(secret_id)).status_code == 403

    added = root.put(f"/groups/{team}/members/{pid(alice)}")
    assert added.status_code == 200 and added.json() == {"group": team, "members": sorted([pid(alice), pid(founder)])}
    assert alice.get(secret_path(secret_id)).json()["value"] == VALUE
    assert alice.get("/auth/whoami").json()["groups"] == [team]
    listed = {g["group"]: g["members"] for g in root.get("/groups").json()["groups"]}
    assert listed[team] == sorted([pid(alice), pid(founder)])

    assert alice.put(f"/groups/{team}/members/{pid(alice)}").status_code == 403  # global admin only
    removed = root.delete(f"/groups/{team}/members/{pid(alice)}")
    assert removed.json()["members"] == [pid(founder)]
    assert alice.get(secret_path(secret_id)).status_code == 403
    changes = [e for e in audit_events(actor="root", after=since(30)) if e["action"] == "group_change"
               and e["details"].get("principal") == pid(alice)]
    assert [e["details"]["operation"] for e in changes] == ["add_member", "remove_member"]
    assert root.put(f"/groups/{team}/members/nobody-{uuid.uuid4().hex[:6]}").status_code == 404
    assert root.put("/groups/Bad%20Name/members/x").status_code == 400


def test_prefix_policies(root: Client, person: Person) -> None:
    prefix, team = unique("pfx"), unique("team")
    alice = person("alice", groups=[team])
    inside, outside = f"{prefix}/db", f"{prefix}-other/db"
    for secret_id in (inside, outside):
        root.store(secret_id, VALUE)
    name = unique("policy")
    put = root.put(f"/policies/{name}", {"pattern": f"{prefix}/*", "allow": {team: ["read"]},
                                         "description": "team reads its prefix"})
    assert put.status_code == 200 and put.json()["updatedBy"] == "root"
    try:
        assert alice.get(secret_path(inside)).json()["value"] == VALUE
        assert alice.get(secret_path(outside)).status_code == 403
        # Authorized by the policy, so a missing id under the prefix is an honest 404.
        assert alice.get(secret_path(f"{prefix}/missing")).status_code == 404
        assert alice.get(secret_path(f"{prefix}/missing", "access")).status_code == 404
        assert root.get(secret_path(inside, "access")).json()["policies"] == [name]
        assert name in [p["name"] for p in root.get("/policies").json()["policies"]]

        # A policy deny wins over the secret's own grant.
        root.post(secret_path(inside, "access", "grant"), {"to": pid(alice), "permissions": ["read"]})
        deny_name = unique("deny")
        root.put(f"/policies/{deny_name}", {"pattern": f"{prefix}/*", "deny": {pid(alice): ["read"]}})
        assert alice.get(secret_path(inside)).json()["reason"] == "explicit_deny"
        assert root.delete(f"/policies/{deny_name}").status_code == 200
        assert alice.get(secret_path(inside)).status_code == 200

        refused = alice.put(f"/policies/{unique('mine')}", {"pattern": "*", "allow": {pid(alice): ["admin"]}})
        assert (refused.status_code, refused.json()["reason"]) == (403, "permission_denied")
        assert alice.get("/policies").status_code == 403
        assert alice.get(secret_path(outside)).status_code == 403
    finally:
        root.delete(f"/policies/{name}")
    assert alice.get(secret_path(inside)).status_code == 200  # still granted on the secret itself
    assert root.get(f"/policies/{name}").status_code == 404
    policy_events = [e for e in audit_events(actor="root", after=since(30)) if e["action"] == "policy_change"
                     and e["details"].get("policy") == name]
    assert [e["details"]["operation"] for e in policy_events] == ["put", "delete"]


@pytest.mark.parametrize(("method", "rest", "body", "fragment"), [
    ("POST", ("access", "grant"), {"to": "x", "permissions": ["read", "fly"]}, "permissions"),
    ("POST", ("access", "grant"), {"to": "Not A Name", "permissions": ["read"]}, "to"),
    ("POST", ("access", "grant"), {"to": "x", "permissions": []}, "permissions"),
    ("PUT", ("access",), {"constraints": {"ip_whitelist": ["10.0.0.0/33"]}}, "CIDR"),
    ("PUT", ("access",), {"constraints": {"rate_limit": "lots"}}, "rate limit"),
    ("PUT", ("access",), {"constraints": {"geo": "eu"}}, "geo"),
    ("PUT", ("access",), {"secret_id": "another", "permissions": {}}, "does not match"),
    ("PUT", ("access",), {"permissions": {"*bad*": ["read"]}}, "bad"),
])
def test_bad_input_is_a_400_that_says_what_is_wrong(root: Client, method: str, rest: tuple[str, ...],
                                                    body: dict[str, object], fragment: str) -> None:
    secret_id = unique("bad")
    root.store(secret_id, VALUE)
    answer = root.request(method, secret_path(secret_id, *rest), json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_request" and fragment in answer.json()["message"]


def test_unauthenticated_requests_are_401_and_audited(api_server: str, root: Client, person: Person) -> None:
    secret_id = unique("auth")
    root.store(secret_id, VALUE)
    start = since()
    disabled = person("gone")
    assert root.post(f"/principals/{pid(disabled)}/disable").status_code == 200
    for token, reason in ((None, "missing_bearer_token"), ("vs_" + "x" * 43, "invalid_token"),
                          (disabled.http.headers["authorization"].split()[1], "principal_disabled")):
        anonymous = Client(api_server, token)
        answer = anonymous.get(secret_path(secret_id, "access"))
        anonymous.close()
        assert answer.status_code == 401 and answer.json()["code"] == "unauthenticated"
        events = [e for e in audit_events(actor="anonymous", after=start)
                  if e["request_id"] == answer.headers["x-amzn-requestid"]]
        assert len(events) == 1 and events[0]["deny_reason"].startswith(reason), events
