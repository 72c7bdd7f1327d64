"""Every secret route over real HTTP against the moto server, including the error statuses."""

from __future__ import annotations

import pytest

from tests.integration.helpers import Api, secret_url, unique

CANARY = "canary-4e1d-super_secret_password_123"


@pytest.fixture
def root(api_server: str, root_token: str) -> Api:
    return Api(api_server, root_token)


def test_store_retrieve_versions_rollback(root: Api) -> None:
    secret_id = unique("db_password")
    first = root.store(secret_id, CANARY, type="database_credential", metadata={"database": "production_db"},
                       tags=["production", "critical"])
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["secretId"], body["version"], body["stored"], body["encrypted"]) == (secret_id, 1, True, True)
    assert root.store(secret_id, "second").json()["version"] == 2

    current = root.get(secret_url(secret_id), reason="database_connection")
    assert current.status_code == 200 and current.headers["cache-control"] == "no-store"
    assert (current.json()["value"], current.json()["version"]) == ("second", 2)
    assert current.json()["audit"].startswith("evt_")

    assert root.get(secret_url(secret_id), version=1).json()["value"] == CANARY
    assert root.get(secret_url(secret_id), stage="PREVIOUS").json()["version"] == 1

    rolled = root.post(secret_url(secret_id, "rollback"), {"version": 1, "reason": "bad deploy"})
    assert rolled.status_code == 200 and rolled.json()["previousVersion"] == 2
    assert root.get(secret_url(secret_id)).json()["value"] == CANARY
    versions = {v["version"]: v["status"] for v in root.get(secret_url(secret_id, "versions")).json()["versions"]}
    assert versions == {1: "active", 2: "previous"}

    meta = root.get(secret_url(secret_id, "metadata")).json()
    assert meta["type"] == "database_credential" and meta["tags"] == ["critical", "production"]
    assert meta["metadata"] == {"database": "production_db"} and meta["labels"] == {"CURRENT": 1, "PREVIOUS": 2}
    assert "value" not in meta and CANARY not in str(meta)


def test_path_like_ids(root: Api) -> None:
    secret_id = f"prod/payments/{unique('stripe')}"
    assert root.store(secret_id, "sk_live_abcdefgh", type="api_key").status_code == 201
    assert root.get(secret_url(secret_id)).json()["secretId"] == secret_id
    listed = root.get("/secrets", prefix=secret_id[:-3]).json()["secrets"]
    assert [s["secretId"] for s in listed] == [secret_id]


def test_list_filters_and_pagination(root: Api) -> None:
    prefix = unique("list") + "/"
    for n in range(5):
        root.store(f"{prefix}{n}", "sk_live_abcdefgh", type="api_key", tags=["even"] if n % 2 == 0 else [])
    root.store(f"{prefix}config", "{}", type="configuration")
    seen, token = [], None
    while True:
        page = root.get("/secrets", prefix=prefix, limit=2, **({"nextToken": token} if token else {})).json()
        seen += [s["secretId"] for s in page["secrets"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == [f"{prefix}{n}" for n in range(5)] + [f"{prefix}config"]
    tagged = root.get("/secrets", prefix=prefix, tag="even").json()["secrets"]
    assert [s["secretId"] for s in tagged] == [f"{prefix}0", f"{prefix}2", f"{prefix}4"]
    configs = root.get("/secrets", prefix=prefix, type="configuration").json()["secrets"]
    assert [s["secretId"] for s in configs] == [f"{prefix}config"]
    assert root.get("/secrets", nextToken="!!not-a-token").status_code == 400


def test_delete_restore_and_destroy(root: Api) -> None:
    secret_id = unique("deleted")
    root.store(secret_id, "sk_live_abcdefgh", type="api_key")
    assert root.delete(secret_url(secret_id), recoveryWindowDays=3).status_code == 400
    deleted = root.delete(secret_url(secret_id), recoveryWindowDays=7)
    assert deleted.status_code == 200 and deleted.json()["destroyAfter"]
    assert root.get(secret_url(secret_id)).status_code == 409
    assert root.get("/secrets", prefix=secret_id).json()["secrets"] == []
    assert root.get("/secrets", prefix=secret_id, includeDeleted="true").json()["secrets"][0]["deleted"] is True
    assert root.post(secret_url(secret_id, "restore")).status_code == 200
    assert root.get(secret_url(secret_id)).json()["value"] == "sk_live_abcdefgh"
    destroyed = root.delete(secret_url(secret_id), force="true")
    assert destroyed.status_code == 200 and destroyed.json()["destroyed"] is True
    assert root.get(secret_url(secret_id)).status_code == 404


def test_bad_input_gets_400_with_a_json_body(root: Api) -> None:
    checks = [
        root.http.post("/secrets", content=b"{not json"),
        root.store("has space", "v", type="api_key"),
        root.store(unique(), "v", type="no_such_type"),
        root.store(unique(), "sk_live_abcdefgh"),  # type missing on create
        root.store(unique(), CANARY, type="configuration"),  # not a JSON object
        root.store(unique(), "sk_live_abcdefgh", type="api_key", unknownField=1),
        root.store(unique(), "sk_live_abcdefgh", type="api_key", constraints={"ip_whitelist": ["not-a-cidr"]}),
        root.get(secret_url("x"), version="one"),
    ]
    for answer in checks:
        assert answer.status_code == 400, answer.text
        assert set(answer.json()) >= {"code", "message"}
        assert CANARY not in answer.text


def test_unauthenticated_requests_get_401(api_server: str, root: Api) -> None:
    secret_id = unique()
    root.store(secret_id, "sk_live_abcdefgh", type="api_key")
    for token in (None, "vs_not-a-real-token", "garbage"):
        answer = Api(api_server, token).get(secret_url(secret_id))
        assert answer.status_code == 401 and answer.json()["code"] == "unauthenticated"
        assert "sk_live" not in answer.text


def test_permissions_403_without_revealing_existence(api_server: str, root: Api) -> None:
    secret_id = unique()
    root.store(secret_id, "sk_live_abcdefgh", type="api_key")
    _, token = root.new_principal()
    stranger = Api(api_server, token)
    for path in (secret_url(secret_id), secret_url(unique("missing"))):
        answer = stranger.get(path)
        assert answer.status_code == 403 and answer.json()["reason"] == "permission_denied"
    assert stranger.store(secret_id, "sk_live_other123").status_code == 403
    assert stranger.post("/principals", {"principalId": unique("p")}).status_code == 403


def test_grants_by_principal_and_group(api_server: str, root: Api) -> None:
    group = unique("team")
    _reader_id, reader_token = root.new_principal(groups=[group])
    writer_id, writer_token = root.new_principal()
    secret_id = unique()
    root.store(secret_id, "sk_live_abcdefgh", type="api_key",
               access={group: ["read"], writer_id: ["write"]})
    reader, writer = Api(api_server, reader_token), Api(api_server, writer_token)
    assert reader.get(secret_url(secret_id)).json()["value"] == "sk_live_abcdefgh"
    assert reader.store(secret_id, "sk_live_12345678").status_code == 403
    assert writer.store(secret_id, "sk_live_12345678").status_code == 201
    assert writer.get(secret_url(secret_id)).status_code == 403
    assert reader.delete(secret_url(secret_id)).status_code == 403


def test_not_found_for_authorized_callers(root: Api) -> None:
    assert root.get(secret_url(unique("missing"))).status_code == 404
    secret_id = unique()
    root.store(secret_id, "sk_live_abcdefgh", type="api_key")
    assert root.get(secret_url(secret_id), version=9).status_code == 404
    assert root.get(secret_url(secret_id), stage="PENDING").status_code == 404
    assert root.post(secret_url(secret_id, "rollback"), {"version": 7}).status_code == 404


def test_conflicts_get_409(root: Api) -> None:
    secret_id = unique()
    assert root.store(secret_id, "sk_live_abcdefgh", type="api_key", expectedVersion=0).status_code == 201
    conflict = root.store(secret_id, "sk_live_12345678", expectedVersion=0)
    assert conflict.status_code == 409 and conflict.json()["code"] == "version_conflict"
    assert root.store(secret_id, "sk_live_12345678", expectedVersion=1).status_code == 201
    assert root.post(secret_url(secret_id, "restore")).status_code == 400


def test_too_large_gets_413(root: Api) -> None:
    assert root.store(unique(), "a" * (64 * 1024 + 1), type="api_key").status_code == 413
    huge = root.http.post("/secrets", content=b"{" + b" " * (300 * 1024) + b"}")
    assert huge.status_code == 413


def test_principals_and_tokens(api_server: str, root: Api) -> None:
    principal_id, token = root.new_principal(type="service_account", groups=["backend-team"])
    me = Api(api_server, token)
    assert me.get("/auth/whoami").json()["principalId"] == principal_id
    listed = root.get("/principals").json()["principals"]
    assert principal_id in [p["principalId"] for p in listed]
    tokens = me.get(f"/principals/{principal_id}/tokens").json()["tokens"]
    assert len(tokens) == 1 and "token" not in tokens[0]
    second = me.post(f"/principals/{principal_id}/tokens", {"ttlSeconds": 3600}).json()
    revoked = root.delete(f"/principals/{principal_id}/tokens/{second['tokenId']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert Api(api_server, second["token"]).get("/auth/whoami").status_code == 401
    assert root.post(f"/principals/{principal_id}/disable").json()["disabled"] is True
    assert me.get("/auth/whoami").status_code == 401
    assert root.post(f"/principals/{principal_id}/enable").json()["disabled"] is False
    assert me.get("/auth/whoami").status_code == 200
    assert root.post("/principals", {"principalId": principal_id}).status_code == 409
    assert root.get("/principals/nobody-here").status_code == 404


def test_health_and_openapi(api_server: str) -> None:
    anonymous = Api(api_server, None)
    health = anonymous.get("/health")
    assert health.status_code == 200 and health.json()["checks"]["keyProvider"]["status"] == "ok"
    document = anonymous.get("/openapi.json").json()
    assert document["openapi"].startswith("3.") and "/secrets/{secretId}" in document["paths"]
    assert "StoreSecretRequest" in document["components"]["schemas"]
