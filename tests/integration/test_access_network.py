"""Constraints through real HTTP servers: client addresses, trusted proxies, and two server processes.

Server A is the session's in-process API server. Server B is a second process (started here)
serving the same app against the same local AWS stack, with ``V_SECURE_TRUSTED_PROXIES``
set to 127.0.0.2. On Linux all of 127.0.0.0/8 is local, so a client can connect *from*
127.0.0.2, 127.0.0.3 ... and the server sees that address as ``sourceIp``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.aws import client
from chalicelib.config import get_settings
from tests.integration.test_access_support import Client, api_process, audit_events, secret_path, since, totp_code

VALUE = "sk_live_network_canary_77aa"
TRUSTED_PROXY = "127.0.0.2"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def second_server(local_aws: str, api_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"V_SECURE_TRUSTED_PROXIES": f"{TRUSTED_PROXY}/32"}
    with api_process(local_aws, env, tmp_path_factory.mktemp("server-b")) as url:
        yield url


@pytest.fixture(scope="module")
def setup(api_server: str, root_token: str) -> Iterator[tuple[Client, str, str]]:
    """(root client on server A, reader id, reader token)."""
    root = Client(api_server, root_token)
    reader = unique("reader")
    yield root, reader, root.new_principal(reader)
    root.close()


def test_ip_allow_lists_see_the_real_client_address(api_server: str, setup: tuple[Client, str, str]) -> None:
    root, reader, token = setup
    secret_id = unique("ip")
    root.store(secret_id, VALUE, access={reader: ["read"]}, constraints={"ip_whitelist": ["127.0.0.1/32"]})
    start = since()
    local, other = Client(api_server, token), Client(api_server, token, source="127.0.0.2")
    try:
        assert local.get(secret_path(secret_id)).json()["value"] == VALUE
        refused = other.get(secret_path(secret_id))
        assert (refused.status_code, refused.json()["reason"]) == (403, "ip_not_allowed")
        assert VALUE not in refused.text
        # X-Forwarded-For is not trusted without a trusted-proxy list.
        spoofed = other.get(secret_path(secret_id), headers={"X-Forwarded-For": "127.0.0.1"})
        assert spoofed.json()["reason"] == "ip_not_allowed"
        # Also for changing access, and for root: constraints bind everyone.
        remote_root = Client(api_server, root.http.headers["authorization"].split()[1], source="127.0.0.2")
        grant = remote_root.post(secret_path(secret_id, "access", "grant"), {"to": "x", "permissions": ["read"]})
        remote_root.close()
        assert (grant.status_code, grant.json()["reason"]) == (403, "ip_not_allowed")
    finally:
        local.close()
        other.close()
    events = [(e["source_ip"], e["status"], e.get("deny_reason")) for e in audit_events(secret_id=secret_id,
                                                                                          after=start)
              if e["action"] != "secret_store"]
    assert events == [("127.0.0.1", "success", None), ("127.0.0.2", "denied", "ip_not_allowed"),
                      ("127.0.0.2", "denied", "ip_not_allowed"), ("127.0.0.2", "denied", "ip_not_allowed")]


def test_forwarded_for_counts_only_behind_a_trusted_proxy(second_server: str,
                                                          setup: tuple[Client, str, str]) -> None:
    root, reader, token = setup
    secret_id = unique("xff")
    root.store(secret_id, VALUE, access={reader: ["read"]}, constraints={"ip_whitelist": ["127.0.0.3/32"]})
    start = since()
    cases = [  # (connect from, X-Forwarded-For, expected status)
        ("127.0.0.3", None, 200),
        (TRUSTED_PROXY, "127.0.0.3", 200),
        (TRUSTED_PROXY, "10.9.9.9", 403),
        (TRUSTED_PROXY, "127.0.0.3, 10.9.9.9", 403),  # a client cannot prepend its way in
        ("127.0.0.4", "127.0.0.3", 403),  # not a trusted proxy: the header is ignored
    ]
    for source, forwarded, expected in cases:
        caller = Client(second_server, token, source=source)
        answer = caller.get(secret_path(secret_id), headers={"X-Forwarded-For": forwarded} if forwarded else None)
        caller.close()
        assert answer.status_code == expected, (source, forwarded, answer.text)
        assert (answer.json().get("value") == VALUE) is (expected == 200)
    seen = [(e["source_ip"], e["status"]) for e in audit_events(secret_id=secret_id, after=start)
            if e["action"] == "secret_read"]
    assert seen == [("127.0.0.3", "success"), ("127.0.0.3", "success"), ("10.9.9.9", "denied"),
                    ("10.9.9.9", "denied"), ("127.0.0.4", "denied")]


def _outside_window_edge(window: int) -> None:
    left = window - time.time() % window
    if left < 20:
        time.sleep(left + 0.5)


def test_rate_limits_hold_across_two_server_processes(api_server: str, second_server: str,
                                                      setup: tuple[Client, str, str]) -> None:
    root, reader, token = setup
    secret_id, limit, window = unique("rate"), 10, 3600
    root.store(secret_id, VALUE, access={reader: ["read"]}, constraints={"rate_limit": f"{limit}:{window}"})
    _outside_window_edge(window)
    start = since()
    servers = [Client(api_server, token), Client(second_server, token)]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda n: servers[n % 2].get(secret_path(secret_id)), range(3 * limit)))
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) == limit and statuses.count(429) == 2 * limit, statuses
        served_by = {n % 2 for n, a in enumerate(answers) if a.status_code == 200}
        limited_by = {n % 2 for n, a in enumerate(answers) if a.status_code == 429}
        assert limited_by == {0, 1} and served_by, "both processes must take part"
        for answer in answers:
            if answer.status_code == 429:
                assert answer.json()["code"] == "rate_limited" and VALUE not in answer.text
                assert 0 < int(answer.headers["retry-after"]) <= window + 1
        # Later requests, on either process, are still refused.
        assert [s.get(secret_path(secret_id)).status_code for s in servers] == [429, 429]
    finally:
        for server in servers:
            server.close()
    window_index = int(time.time() // window)
    counter = client("dynamodb").get_item(TableName=get_settings().secrets_table, ConsistentRead=True, Key={
        "pk": {"S": f"RATE#{reader}#{secret_id}"}, "sk": {"S": f"W#{window}#{window_index}"}})["Item"]
    assert counter["hits"]["N"] == str(limit)
    events = audit_events(secret_id=secret_id, after=start)
    assert sum(e["action"] == "secret_read" and e["status"] == "success" for e in events) == limit
    assert sum(e["action"] == "rate_limited" and e["deny_reason"] == "rate_limited" for e in events) == 2 * limit + 2


def test_an_mfa_code_cannot_be_replayed_on_another_process(api_server: str, second_server: str,
                                                           setup: tuple[Client, str, str]) -> None:
    root, _reader, _token = setup
    alice = unique("alice")
    a = Client(api_server, root.new_principal(alice))
    b = Client(second_server, a.http.headers["authorization"].split()[1])
    try:
        seed = a.enrol_mfa()
        secret_id = unique("mfa")
        root.store(secret_id, VALUE, access={alice: ["read"]}, constraints={"require_mfa": True})
        code = totp_code(seed)
        assert a.get(secret_path(secret_id), mfa=code).json()["value"] == VALUE
        replay = b.get(secret_path(secret_id), mfa=code)
        assert (replay.status_code, replay.json()["reason"]) == (403, "mfa_invalid")
        assert "already used" in replay.json()["message"] and VALUE not in replay.text
        # The same the other way round, on a request that claims its code at once.
        later = totp_code(seed, 1)
        assert b.get(secret_path(secret_id, "metadata"), mfa=later).status_code == 200
        assert a.get(secret_path(secret_id, "metadata"), mfa=later).json()["reason"] == "mfa_invalid"
    finally:
        a.close()
        b.close()
