"""The SDK against an ``httpx.MockTransport``: paths, headers, bodies, pagination, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chalicelib import errors
from chalicelib.cli.profiles import save_profile
from chalicelib.client import (
    EndpointUnreachable,
    NotConfigured,
    UnexpectedResponse,
    VSecurity,
    path,
    resolve_connection,
    retry_after,
)

ENDPOINT = "http://vsecure.test"
NOW = "2025-01-02T03:04:05Z"
SECRET = "correct-horse-battery-staple"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and answers from a queue."""

    def __init__(self, *responses: httpx.Response | Handler) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return answer(request) if callable(answer) else answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def make_client(recorder: Recorder, token: str | None = "vs_test", **kwargs: Any) -> VSecurity:
    return VSecurity(ENDPOINT, token, transport=httpx.MockTransport(recorder), **kwargs)


def ok(body: dict[str, Any], status: int = 200, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, json=body, **kwargs)


def fail(status: int, code: str, message: str = "nope", **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", None)
    return httpx.Response(status, json={"code": code, "message": message, **extra}, headers=headers)


RETRIEVED = {"secretId": "prod/db", "value": SECRET, "version": 3, "type": "database_credential",
             "labels": ["current"], "audit": "evt_1"}
METADATA = {"secretId": "prod/db", "type": "api_key", "currentVersion": 2, "latestVersion": 2,
            "createdAt": NOW, "createdBy": "alice", "updatedAt": NOW}


def summary(secret_id: str) -> dict[str, Any]:
    return {"secretId": secret_id, "type": "api_key", "currentVersion": 1, "updatedAt": NOW}


# --- paths ---------------------------------------------------------------------------------


def test_path_encodes_each_segment_including_slashes() -> None:
    assert path("secrets", "prod/db password", "versions") == "/secrets/prod%2Fdb%20password/versions"


@pytest.mark.parametrize("segment", ["", ".", ".."])
def test_path_refuses_dot_segments(segment: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        path("secrets", segment)


def test_secret_ids_with_slashes_are_one_path_segment() -> None:
    recorder = Recorder(ok(RETRIEVED))
    with make_client(recorder) as client:
        client.retrieve("prod/db", version=3, stage="current", reason="deploy")
    assert recorder.last.method == "GET"
    assert recorder.last.url.raw_path == b"/secrets/prod%2Fdb?version=3&stage=current&reason=deploy"


@pytest.mark.parametrize(("call", "method", "raw_path"), [
    (lambda c: c.metadata("a/b"), "GET", b"/secrets/a%2Fb/metadata"),
    (lambda c: c.versions("a/b"), "GET", b"/secrets/a%2Fb/versions"),
    (lambda c: c.restore("a/b"), "POST", b"/secrets/a%2Fb/restore"),
    (lambda c: c.delete("a/b", recovery_window_days=7), "DELETE", b"/secrets/a%2Fb?recoveryWindowDays=7"),
    (lambda c: c.delete("a/b", force=True), "DELETE", b"/secrets/a%2Fb?force=true"),
    (lambda c: c.rollback("a/b", 2), "POST", b"/secrets/a%2Fb/rollback"),
    (lambda c: c.get_principal("ci"), "GET", b"/principals/ci"),
    (lambda c: c.disable_principal("ci"), "POST", b"/principals/ci/disable"),
    (lambda c: c.enable_principal("ci"), "POST", b"/principals/ci/enable"),
    (lambda c: c.list_tokens("ci"), "GET", b"/principals/ci/tokens"),
    (lambda c: c.revoke_token("ci", "tok/1"), "DELETE", b"/principals/ci/tokens/tok%2F1"),
    (lambda c: c.whoami(), "GET", b"/auth/whoami"),
    (lambda c: c.list_principals(), "GET", b"/principals"),
    (lambda c: c.health(), "GET", b"/health"),
])
def test_each_call_uses_the_contract_route(call: Callable[[VSecurity], Any], method: str,
                                           raw_path: bytes) -> None:
    recorder = Recorder(lambda request: httpx.Response(599))  # the route is all we check
    with make_client(recorder) as client, pytest.raises(errors.VSecureError):
        call(client)
    assert (recorder.last.method, recorder.last.url.raw_path) == (method, raw_path)


def test_endpoint_path_prefix_is_kept() -> None:
    recorder = Recorder(ok({"status": "ok"}))
    with VSecurity(ENDPOINT + "/api/", None, transport=httpx.MockTransport(recorder)) as client:
        client.health()
    assert recorder.last.url.raw_path == b"/api/health"


# --- bodies --------------------------------------------------------------------------------


def test_store_sends_the_real_value_in_camel_case() -> None:
    recorder = Recorder(ok({"secretId": "prod/db", "version": 1, "createdAt": NOW}, status=201))
    with make_client(recorder) as client:
        result = client.store("prod/db", SECRET, type="database_credential", metadata={"team": "core"},
                              tags=["b", "a"], expected_version=0, value_schema={"type": "object"},
                              compliance=["PCI-DSS"], reason="initial")
    assert result.version == 1
    assert recorder.last.method == "POST"
    assert recorder.last.url.raw_path == b"/secrets"
    assert recorder.body() == {
        "secretId": "prod/db", "value": SECRET, "type": "database_credential",
        "metadata": {"team": "core"}, "tags": ["a", "b"], "expectedVersion": 0,
        "compliance": ["PCI-DSS"], "valueSchema": {"type": "object"}, "reason": "initial",
    }


def test_store_validation_errors_never_echo_the_value() -> None:
    recorder = Recorder(ok({}))
    with make_client(recorder) as client, pytest.raises(errors.InvalidRequest) as caught:
        client.store("bad id!", SECRET, tags=["bad tag"])
    assert "secret_id" in caught.value.message
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert recorder.requests == []


def test_rollback_and_create_principal_and_token_bodies() -> None:
    recorder = Recorder(ok({}))
    with make_client(recorder) as client:
        for call in (lambda: client.rollback("db", 2, reason="bad deploy"),
                     lambda: client.create_principal("ci", type="service_account", groups=["ops"],
                                                     admin=True),
                     lambda: client.create_token("ci", ttl="30d", description="pipeline")):
            with pytest.raises(UnexpectedResponse):
                call()
    assert recorder.body(0) == {"version": 2, "reason": "bad deploy"}
    assert recorder.body(1) == {"principalId": "ci", "type": "service_account", "groups": ["ops"],
                                "admin": True}
    assert recorder.body(2) == {"ttlSeconds": 30 * 86400, "description": "pipeline"}


def test_delete_refuses_window_and_force_together() -> None:
    with make_client(Recorder(ok({}))) as client, pytest.raises(errors.InvalidRequest):
        client.delete("db", recovery_window_days=7, force=True)


def test_responses_are_typed_and_tolerate_new_fields() -> None:
    recorder = Recorder(ok({**METADATA, "someFutureField": 1}))
    with make_client(recorder) as client:
        metadata = client.metadata("prod/db")
    assert metadata.current_version == 2
    assert metadata.created_by == "alice"


def test_a_response_of_the_wrong_shape_is_unexpected() -> None:
    responses = (ok({"secretId": "x"}), httpx.Response(200, text="<html>"), httpx.Response(200, json=[1]))
    for response in responses:
        with make_client(Recorder(response)) as client, pytest.raises(UnexpectedResponse):
            client.metadata("x")


def test_generic_request_returns_the_json_object() -> None:
    recorder = Recorder(ok({"rotation": {"enabled": True}}), httpx.Response(204))
    with make_client(recorder) as client:
        assert client.request("POST", path("secrets", "a/b", "rotate"), params={"dryRun": True, "x": None},
                              json={"strategy": "rolling"}) == {"rotation": {"enabled": True}}
        assert client.request("DELETE", "/secrets/x/rotation") == {}
    first = recorder.requests[0]
    assert first.url.raw_path == b"/secrets/a%2Fb/rotate?dryRun=true"
    assert json.loads(first.content) == {"strategy": "rolling"}


# --- headers -------------------------------------------------------------------------------


def test_bearer_token_header() -> None:
    recorder = Recorder(ok({"status": "ok"}))
    with make_client(recorder, token="vs_abc") as client:
        client.health()
    assert recorder.last.headers["Authorization"] == "Bearer vs_abc"
    assert recorder.last.headers["User-Agent"].startswith("v-secure-sdk/")


def test_no_authorization_header_without_token() -> None:
    recorder = Recorder(ok({"status": "ok"}))
    with make_client(recorder, token=None) as client:
        client.health()
    assert "Authorization" not in recorder.last.headers


def test_token_is_not_in_repr() -> None:
    client = make_client(Recorder(ok({})), token="vs_very_secret")
    assert "vs_very_secret" not in repr(client)
    client.close()


def test_mfa_code_is_sent_as_header() -> None:
    recorder = Recorder(ok(RETRIEVED))
    with make_client(recorder) as client:
        client.retrieve("prod/db", mfa_code="123456")
        client.retrieve("prod/db")
    assert recorder.requests[0].headers["X-VSecure-MFA"] == "123456"
    assert "X-VSecure-MFA" not in recorder.requests[1].headers


def test_mfa_code_provider_is_asked_when_the_server_requires_mfa() -> None:
    recorder = Recorder(fail(403, "access_denied", "MFA required", reason="mfa_required"), ok(RETRIEVED))
    asked: list[bool] = []

    def provider() -> str:
        asked.append(True)
        return "654321"

    with make_client(recorder, mfa_code_provider=provider) as client:
        assert client.retrieve("prod/db").value == SECRET
    assert asked == [True]
    assert "X-VSecure-MFA" not in recorder.requests[0].headers
    assert recorder.requests[1].headers["X-VSecure-MFA"] == "654321"


def test_a_rejected_mfa_code_is_not_retried() -> None:
    recorder = Recorder(fail(403, "access_denied", "bad code", reason="mfa_invalid"))
    with make_client(recorder, mfa_code_provider=lambda: "1") as client, \
            pytest.raises(errors.AccessDenied) as caught:
        client.retrieve("prod/db", mfa_code="000000")
    assert caught.value.reason == "mfa_invalid"
    assert len(recorder.requests) == 1


# --- pagination ----------------------------------------------------------------------------


def test_iter_secrets_follows_next_token() -> None:
    pages: dict[str | None, dict[str, Any]] = {
        None: {"secrets": [summary("a"), summary("b")], "nextToken": "t1"},
        "t1": {"secrets": [summary("c")], "nextToken": "t2"},
        "t2": {"secrets": [summary("d")]},
    }
    recorder = Recorder(lambda request: ok(pages[request.url.params.get("nextToken")]))
    with make_client(recorder) as client:
        ids = [item.secret_id for item in client.iter_secrets(prefix="p/", include_deleted=True, page_size=2)]
    assert ids == ["a", "b", "c", "d"]
    assert [request.url.params.get("nextToken") for request in recorder.requests] == [None, "t1", "t2"]
    assert recorder.requests[0].url.params["includeDeleted"] == "true"
    assert recorder.requests[0].url.params["prefix"] == "p/"
    assert recorder.requests[0].url.params["limit"] == "2"


def test_list_omits_unset_filters() -> None:
    recorder = Recorder(ok({"secrets": []}))
    with make_client(recorder) as client:
        assert client.list().secrets == []
    assert recorder.last.url.raw_path == b"/secrets"


def test_iter_secrets_stops_if_the_token_repeats() -> None:
    recorder = Recorder(ok({"secrets": [summary("a")], "nextToken": "same"}))
    with make_client(recorder) as client:
        assert len(list(client.iter_secrets())) == 2
    assert len(recorder.requests) == 2


# --- errors --------------------------------------------------------------------------------


def raised(response: httpx.Response) -> errors.VSecureError:
    with make_client(Recorder(response)) as client, pytest.raises(errors.VSecureError) as caught:
        client.metadata("prod/db")
    return caught.value


def test_409_version_conflict_raises_version_conflict() -> None:
    error = raised(fail(409, "version_conflict", "expected version 3 but the current version is 4"))
    assert type(error) is errors.VersionConflict
    assert isinstance(error, errors.Conflict)
    assert error.message == "expected version 3 but the current version is 4"
    assert (error.code, error.status) == ("version_conflict", 409)


def test_403_keeps_the_deny_reason() -> None:
    error = raised(fail(403, "access_denied", "denied", reason="ip_not_allowed"))
    assert isinstance(error, errors.AccessDenied)
    assert error.reason == "ip_not_allowed"


def test_429_keeps_retry_after() -> None:
    error = raised(fail(429, "rate_limited", "slow down", headers={"Retry-After": "30"}))
    assert isinstance(error, errors.RateLimited)
    assert error.headers["Retry-After"] == "30"
    assert retry_after(error) == 30.0


@pytest.mark.parametrize(("status", "code", "expected"), [
    (404, "secret_not_found", errors.SecretNotFound),
    (404, "version_not_found", errors.VersionNotFound),
    (409, "secret_deleted", errors.SecretDeleted),
    (400, "invalid_secret_value", errors.InvalidSecretValue),
    (503, "audit_unavailable", errors.AuditUnavailable),
    (503, "key_unavailable", errors.KeyUnavailable),
    (500, "decryption_failed", errors.DecryptionFailed),
    (401, "unauthenticated", errors.Unauthenticated),
    (413, "payload_too_large", errors.PayloadTooLarge),
])
def test_known_codes_map_to_their_class(status: int, code: str, expected: type[errors.VSecureError]) -> None:
    assert type(raised(fail(status, code))) is expected


@pytest.mark.parametrize(("status", "expected"), [
    (400, errors.InvalidRequest), (401, errors.Unauthenticated), (403, errors.AccessDenied),
    (404, errors.NotFound), (409, errors.Conflict), (413, errors.PayloadTooLarge),
    (429, errors.RateLimited), (503, errors.DependencyUnavailable), (418, errors.InvalidRequest),
    (500, errors.VSecureError),
])
def test_unknown_codes_fall_back_by_status(status: int, expected: type[errors.VSecureError]) -> None:
    error = raised(fail(status, "something_new", "new failure"))
    assert type(error) is expected
    assert (error.code, error.status, error.message) == ("something_new", status, "new failure")


def test_dependency_errors_keep_the_server_message_and_dependency() -> None:
    error = raised(fail(503, "dependency_unavailable", "kms: throttled", details={"dependency": "kms"}))
    assert isinstance(error, errors.DependencyUnavailable)
    assert error.message == "kms: throttled"
    assert error.dependency == "kms"


def test_error_classes_defined_later_are_found() -> None:
    class QuotaExceeded(errors.Conflict):
        code = "test_quota_exceeded"

    assert type(raised(fail(409, "test_quota_exceeded"))) is QuotaExceeded


def test_non_json_error_bodies_still_raise_typed_errors() -> None:
    error = raised(httpx.Response(502, text="Bad Gateway"))
    assert type(error) is errors.VSecureError
    assert error.status == 502
    assert "Bad Gateway" in error.message
    chalice = raised(httpx.Response(404, json={"Code": "NotFoundError", "Message": "no route"}))
    assert isinstance(chalice, errors.NotFound)
    assert chalice.message == "no route"


def test_errors_on_store_never_contain_the_value() -> None:
    recorder = Recorder(fail(400, "invalid_secret_value", "value does not match the type"))
    with make_client(recorder) as client, pytest.raises(errors.InvalidSecretValue) as caught:
        client.store("db", SECRET)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert SECRET not in json.dumps(caught.value.to_body())


def test_connection_failures_are_clear() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler in (refuse, slow):
        with VSecurity(ENDPOINT, "t", transport=httpx.MockTransport(handler)) as client, \
                pytest.raises(EndpointUnreachable) as caught:
            client.health()
        assert isinstance(caught.value, ConnectionError)
        assert str(caught.value).startswith(f"cannot reach v-secure at {ENDPOINT}")


# --- configuration -------------------------------------------------------------------------


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("V_SECURE_CONFIG_DIR", str(tmp_path))
    for name in ("V_SECURE_ENDPOINT", "V_SECURE_TOKEN", "V_SECURE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def from_environment(**kwargs: Any) -> tuple[str, str | None]:
    recorder = Recorder(ok({"status": "ok"}))
    with VSecurity.from_environment(transport=httpx.MockTransport(recorder), **kwargs) as client:
        client.health()
    return str(recorder.last.url.copy_with(path="/")), recorder.last.headers.get("Authorization")


def test_from_environment_prefers_environment_variables(config_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    save_profile("dev", endpoint="http://dev.test", token="vs_dev")
    monkeypatch.setenv("V_SECURE_ENDPOINT", "http://env.test")
    monkeypatch.setenv("V_SECURE_TOKEN", "vs_env")
    assert from_environment() == ("http://env.test/", "Bearer vs_env")


def test_from_environment_falls_back_to_the_dev_profile(config_dir: Path) -> None:
    save_profile("dev", endpoint="http://dev.test", token="vs_dev")
    assert from_environment() == ("http://dev.test/", "Bearer vs_dev")


def test_from_environment_uses_the_named_profile(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_profile("dev", endpoint="http://dev.test", token="vs_dev")
    save_profile("prod", endpoint="http://prod.test", token="vs_prod")
    monkeypatch.setenv("V_SECURE_PROFILE", "prod")
    assert from_environment() == ("http://prod.test/", "Bearer vs_prod")
    assert from_environment(profile="dev") == ("http://dev.test/", "Bearer vs_dev")


def test_from_environment_without_any_configuration(config_dir: Path) -> None:
    with pytest.raises(NotConfigured):
        VSecurity.from_environment()
    with pytest.raises(NotConfigured, match="'nope'"):
        VSecurity.from_environment(profile="nope")


def test_default_profile_token_is_not_sent_to_another_endpoint(config_dir: Path) -> None:
    save_profile("dev", endpoint="http://dev.test/", token="vs_dev")
    assert resolve_connection("http://other.test", None) == ("http://other.test", None)
    assert resolve_connection("http://dev.test", None) == ("http://dev.test", "vs_dev")
    assert resolve_connection("http://other.test", None, "dev") == ("http://other.test", "vs_dev")
    assert resolve_connection(None, "vs_flag") == ("http://dev.test/", "vs_flag")


def test_degraded_health_names_the_failing_checks() -> None:
    failing = {"status": "failing", "message": "kms: throttled"}
    body = {"status": "degraded", "checks": {"keyProvider": failing}}
    with make_client(Recorder(ok(body, status=503))) as client, \
            pytest.raises(errors.DependencyUnavailable) as caught:
        client.health()
    assert caught.value.message == "v-secure is degraded: keyProvider: kms: throttled"
    assert caught.value.details == body
