"""DESIGN.md's round-trip budget, counted on the real server with botocore events.

The API server of the test session runs in threads of this process, so the ``before-call``
hooks that :class:`bench.roundtrips.CallCounter` puts on ``chalicelib.aws.session()`` and
its clients see every AWS call a request makes. Warm paths: a retrieve is one ``GetItem``
and one audit write, a store one ``GenerateDataKey`` and one ``TransactWriteItems``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.roundtrips import CallCounter, count_calls
from tests.integration.helpers import Api, secret_url, unique

AUDIT_WRITES = {"dynamodb.PutItem", "dynamodb.TransactWriteItems"}


@pytest.fixture
def counter(api_server: str) -> Iterator[CallCounter]:
    counting = CallCounter().install()
    try:
        yield counting
    finally:
        counting.uninstall()


@pytest.fixture
def service(api_server: str, root_token: str) -> tuple[Api, str]:
    """A service account (not an admin) with read and write on a fresh secret; (its client, secret id)."""
    root = Api(api_server, root_token)
    principal, token = root.new_principal(unique("rt-svc"), type="service_account")
    secret_id = unique("rt/secret")
    created = root.store(secret_id, "sk_live_" + "a" * 32, type="api_key",
                         access={principal: ["read", "write"]})
    assert created.status_code == 201, created.text
    return Api(api_server, token), secret_id


def test_warm_retrieve_is_one_get_item_and_one_audit_write(counter: CallCounter, service: tuple[Api, str]) -> None:
    api, secret_id = service

    def retrieve(_i: int) -> None:
        answer = api.get(secret_url(secret_id))
        assert answer.status_code == 200, answer.text

    trips = count_calls(counter, "retrieve (warm)", retrieve, runs=5, prepare=retrieve)
    assert trips.median <= 2, trips.as_dict()
    assert trips.calls[0] == "dynamodb.GetItem"
    assert set(trips.calls[1:]) <= AUDIT_WRITES and len(trips.calls) == 2


def test_warm_store_is_one_generate_data_key_and_one_transaction(counter: CallCounter,
                                                                  service: tuple[Api, str]) -> None:
    api, secret_id = service

    def store(index: int) -> None:
        answer = api.store(secret_id, f"sk_live_{index:04d}" + "b" * 28)
        assert answer.status_code == 201, answer.text

    store(9999)  # this process now holds the META it wrote: the next stores are warm
    trips = count_calls(counter, "store (warm)", store, runs=5)
    assert trips.median <= 2, trips.as_dict()
    assert trips.calls == ("kms.GenerateDataKey", "dynamodb.TransactWriteItems")


def test_the_counter_sees_a_cold_data_key_as_one_more_kms_call(counter: CallCounter,
                                                               service: tuple[Api, str]) -> None:
    """The counting reaches the server's KMS client too: a new version's first read must unwrap its key."""
    api, secret_id = service
    assert api.store(secret_id, "sk_live_" + "c" * 32).status_code == 201
    with counter.counting() as log:
        assert api.get(secret_url(secret_id)).status_code == 200
    assert "kms.Decrypt" in log.calls
    assert log.calls[0] == "dynamodb.GetItem"
