"""The embedded dev stack: moto + bootstrap, HTTP server, scheduler, ``python -m chalicelib.local``."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from chalice import Chalice, Rate, Response

from chalicelib.aws import client
from chalicelib.config import get_settings
from chalicelib.local.bootstrap import BootstrapResult, bootstrap_resources
from chalicelib.local.moto_server import MotoServer, SerializedWsgi
from chalicelib.local.scheduler import SCHEDULE_ENV, LocalScheduler, rate_seconds, scheduled_jobs
from chalicelib.local.server import LocalApiServer, serving, start_api_server
from tests.integration.conftest import EventReader

REPO = Path(__file__).resolve().parents[2]

# A small app of the test's own, served by our server class (app.py stays untouched).
probe = Chalice(app_name="v-secure-probe")
probe.api.binary_types.append("application/x-probe")


@probe.route("/ping", methods=["GET", "HEAD"])
def ping() -> dict[str, bool]:
    return {"pong": True}


@probe.route("/whoami")
def whoami() -> dict[str, Any]:
    request = probe.current_request
    assert request is not None
    return {"sourceIp": request.context["identity"]["sourceIp"], "requestId": request.context["requestId"]}


@probe.route("/blob")
def blob() -> Response:
    return Response(body=bytes(range(256)), headers={"Content-Type": "application/octet-stream"})


@probe.route("/echo", methods=["POST"], content_types=["application/x-probe"])
def echo() -> dict[str, Any]:
    request = probe.current_request
    assert request is not None
    body = request.raw_body
    assert isinstance(body, bytes)
    return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


# --- AWS resources --------------------------------------------------------------------------

def test_bootstrap_is_idempotent(aws_resources: BootstrapResult) -> None:
    assert aws_resources.created, "the first bootstrap of the session creates everything"
    first = bootstrap_resources(get_settings())
    second = bootstrap_resources(get_settings())
    assert first.created == [] and second.created == []
    assert (first.data_key_arn, first.signing_key_arn, first.events_queue_url, first.events_rule_arn) == (
        aws_resources.data_key_arn, aws_resources.signing_key_arn, aws_resources.events_queue_url,
        aws_resources.events_rule_arn)


def test_tables_exist_with_ttl(aws_resources: BootstrapResult) -> None:
    dynamodb = client("dynamodb")
    ttl = dynamodb.describe_time_to_live(TableName=aws_resources.secrets_table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")
    audit = dynamodb.describe_table(TableName=aws_resources.audit_table)["Table"]
    assert audit["TableStatus"] == "ACTIVE"
    assert {index["IndexName"] for index in audit["GlobalSecondaryIndexes"]} >= {"by_secret", "by_day"}


def test_audit_bucket_has_compliance_object_lock(aws_resources: BootstrapResult) -> None:
    s3, bucket = client("s3"), aws_resources.audit_bucket
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    retention = lock["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("COMPLIANCE", get_settings().retention_days)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                          "KMSMasterKeyID": aws_resources.data_key_arn}

    key = f"test/{uuid.uuid4()}"
    written = s3.put_object(Bucket=bucket, Key=key, Body=b"segment")
    assert written["ServerSideEncryption"] == "aws:kms"
    assert s3.head_object(Bucket=bucket, Key=key)["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(Exception, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key=key, VersionId=written["VersionId"])


def test_kms_aliases_resolve_and_signing_key_is_p256(aws_resources: BootstrapResult) -> None:
    kms, settings = client("kms"), get_settings()
    data_key = kms.describe_key(KeyId=settings.kms_key_id)["KeyMetadata"]
    assert (data_key["Arn"], data_key["KeyUsage"]) == (aws_resources.data_key_arn, "ENCRYPT_DECRYPT")
    assert len(kms.generate_data_key(KeyId=settings.kms_key_id, KeySpec="AES_256")["Plaintext"]) == 32

    signing = kms.describe_key(KeyId=settings.audit_signing_key_id)["KeyMetadata"]
    assert signing["Arn"] == aws_resources.signing_key_arn
    assert (signing["KeySpec"], signing["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    signature = kms.sign(KeyId=settings.audit_signing_key_id, Message=b"digest",
                         SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    assert kms.verify(KeyId=settings.audit_signing_key_id, Message=b"digest", Signature=signature,
                      SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"]


def test_event_rule_delivers_put_events_to_the_queue(aws_resources: BootstrapResult,
                                                     read_events: EventReader) -> None:
    marker = str(uuid.uuid4())
    bus = get_settings().event_bus
    entries = [
        {"Source": "someone-else", "DetailType": "Ignored", "Detail": json.dumps({"marker": marker}),
         "EventBusName": bus},
        {"Source": "v-secure", "DetailType": "LocalStackTest", "Detail": json.dumps({"marker": marker}),
         "EventBusName": bus},
    ]
    assert client("events").put_events(Entries=entries)["FailedEntryCount"] == 0
    def marked(event: dict[str, Any]) -> bool:
        return bool(event.get("detail", {}).get("marker") == marker)

    mine = read_events(marked, timeout=10)
    assert [(event["source"], event["detail-type"]) for event in mine] == [("v-secure", "LocalStackTest")]
    assert read_events(marked, timeout=1.5) == []  # the other source was not forwarded


def _race_check_and_set(dynamodb: Any, table: str, pk: str, *, writers: int = 16,
                        rounds: int = 4) -> list[int]:
    """``writers`` threads bump ``rev`` of ``pk`` with check-and-set transactions; returns the won revs."""
    dynamodb.put_item(TableName=table, Item={"pk": {"S": pk}, "sk": {"S": "META"}, "rev": {"N": "1"}})
    wins: list[int] = []
    barrier = threading.Barrier(writers)

    def writer() -> None:
        barrier.wait()
        for _ in range(rounds):
            item = dynamodb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": "META"}},
                                     ConsistentRead=True)["Item"]
            rev = int(item["rev"]["N"])
            try:
                dynamodb.transact_write_items(TransactItems=[
                    {"Put": {"TableName": table,
                             "Item": {"pk": {"S": pk}, "sk": {"S": "META"}, "rev": {"N": str(rev + 1)}},
                             "ConditionExpression": "rev = :r",
                             "ExpressionAttributeValues": {":r": {"N": str(rev)}}}},
                    {"Put": {"TableName": table, "Item": {"pk": {"S": pk}, "sk": {"S": f"V#{rev + 1:05d}"}},
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                ])
                wins.append(rev + 1)
            except dynamodb.exceptions.TransactionCanceledException:
                pass

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wins


def test_concurrent_check_and_set_transactions_have_one_winner(local_aws: str) -> None:
    """Plain moto lets two TransactWriteItems pass the same condition, and a failed one's
    rollback (a restored copy of the table) erases others' writes; with a table of some size
    this shows up in most runs. The embedded server serializes requests, so check-and-set holds."""
    dynamodb, table = client("dynamodb"), f"race-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    for batch in range(8):  # a table of some size makes moto's copy-on-rollback window wide
        dynamodb.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {"pk": {"S": f"filler-{batch}-{n}"}, "sk": {"S": "-"},
                                     "blob": {"S": "x" * 500}}}} for n in range(25)]})
    for trial in range(2):
        pk = f"secret-{trial}"
        wins = _race_check_and_set(dynamodb, table, pk)
        stored = dynamodb.query(TableName=table, KeyConditionExpression="pk = :p",
                                ExpressionAttributeValues={":p": {"S": pk}}, ConsistentRead=True)["Items"]
        assert sorted(wins) == list(range(2, len(wins) + 2))  # one winner per revision
        assert {item["sk"]["S"] for item in stored} == {"META", *(f"V#{v:05d}" for v in wins)}  # none lost
    dynamodb.delete_table(TableName=table)


def test_long_polls_bypass_the_moto_lock() -> None:
    assert SerializedWsgi.may_wait({"HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage"})
    assert SerializedWsgi.may_wait({"QUERY_STRING": "Action=ReceiveMessage&WaitTimeSeconds=5"})
    assert not SerializedWsgi.may_wait({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.TransactWriteItems"})


# --- HTTP server ----------------------------------------------------------------------------

def test_health_over_keep_alive(api_server: str) -> None:
    with httpx.Client(base_url=api_server, timeout=10) as http:
        answers = [http.get("/health") for _ in range(5)]
    assert [answer.status_code for answer in answers] == [200] * 5
    assert answers[0].json()["status"] == "ok"
    assert all(answer.headers.get("connection", "keep-alive") != "close" for answer in answers)
    assert len({answer.headers["x-amzn-requestid"] for answer in answers}) == 5


def test_trivial_route_over_keep_alive_is_fast_on_one_connection() -> None:
    with serving(probe) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        http.get("/ping")  # warm-up
        timings = []
        for _ in range(200):
            started = time.perf_counter()
            assert http.get("/ping").json() == {"pong": True}
            timings.append((time.perf_counter() - started) * 1000)
        assert server.connections_accepted == 1
    timings.sort()
    print(f"\n/ping over keep-alive: median {statistics.median(timings):.2f} ms, "
          f"p99 {timings[int(len(timings) * 0.99) - 1]:.2f} ms, max {timings[-1]:.2f} ms (200 requests)")


def test_real_client_address_and_request_id_reach_the_app() -> None:
    with serving(probe) as server:
        # All of 127.0.0.0/8 is loopback on Linux: connect *from* 127.0.0.2 to 127.0.0.1.
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=server.url, transport=transport, timeout=10) as http:
            first, second = http.get("/whoami"), http.get("/whoami")
        plain = httpx.get(f"{server.url}/whoami", timeout=10)
    assert first.json()["sourceIp"] == "127.0.0.2"
    assert plain.json()["sourceIp"] == "127.0.0.1"
    assert first.json()["requestId"] == first.headers["x-amzn-requestid"]
    assert len({first.json()["requestId"], second.json()["requestId"], plain.json()["requestId"]}) == 3


def test_ipv6_loopback() -> None:
    try:
        server = LocalApiServer(probe, "::1", 0)
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    server.start()
    try:
        answer = httpx.get(f"{server.url}/whoami", timeout=10)
    finally:
        server.stop()
    assert server.url.startswith("http://[::1]:")
    assert answer.json()["sourceIp"] == "::1"


def test_extra_loopback_listener_shares_the_port() -> None:
    with start_api_server(probe, "127.0.0.1", 0, extra_hosts=["127.0.0.2"]) as api:
        assert api.urls == [f"http://127.0.0.1:{api.port}", f"http://127.0.0.2:{api.port}"]
        assert httpx.get(f"{api.urls[1]}/whoami", timeout=10).json()["sourceIp"] == "127.0.0.1"


def test_binary_bodies_head_and_chunked_requests() -> None:
    payload = os.urandom(3000)
    with serving(probe) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        binary = http.get("/blob", headers={"Accept": "application/octet-stream"})
        assert (binary.status_code, binary.content) == (200, bytes(range(256)))
        assert binary.headers["content-type"] == "application/octet-stream"

        echoed = http.post("/echo", content=payload, headers={"Content-Type": "application/x-probe"})
        assert echoed.json() == {"length": 3000, "sha256": hashlib.sha256(payload).hexdigest()}
        chunked = http.post("/echo", content=iter([payload[:1000], payload[1000:]]),
                            headers={"Content-Type": "application/x-probe"})
        assert chunked.json()["sha256"] == hashlib.sha256(payload).hexdigest()

        head = http.head("/ping")
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
        missing = http.get("/no-such-route")
        assert missing.status_code == 403  # API Gateway's answer for an unknown path
        assert http.get("/ping").json() == {"pong": True}  # the connection is still in sync
        assert server.connections_accepted == 1


def test_concurrent_requests_see_their_own_current_request() -> None:
    errors: list[str] = []
    with serving(probe) as server:
        def worker(address: str) -> None:
            transport = httpx.HTTPTransport(local_address=address)
            with httpx.Client(base_url=server.url, transport=transport, timeout=10) as http:
                for _ in range(30):
                    seen = http.get("/whoami").json()["sourceIp"]
                    if seen != address:
                        errors.append(f"{address} saw {seen}")

        threads = [threading.Thread(target=worker, args=(f"127.0.0.{n}",)) for n in range(2, 10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


# --- scheduler ------------------------------------------------------------------------------

def test_scheduler_calls_scheduled_functions_and_survives_errors() -> None:
    jobs_app = Chalice(app_name="v-secure-jobs")
    seen: list[dict[str, Any]] = []

    @jobs_app.schedule(Rate(1, unit=Rate.HOURS), name="collect")
    def collect(event: Any) -> None:
        seen.append(event.to_dict())

    @jobs_app.schedule("rate(5 minutes)", name="explode")
    def explode(event: Any) -> None:
        raise RuntimeError("boom")

    scheduler = LocalScheduler(jobs_app, interval=0.05).start()
    try:
        assert scheduler.wait_for_run("collect", runs=3, timeout=10)
        assert scheduler.wait_for_run("explode", runs=3, timeout=10)
    finally:
        scheduler.stop()
    assert seen[0]["detail-type"] == "Scheduled Event" and seen[0]["source"] == "aws.events"
    assert seen[0]["resources"][0].endswith(":rule/collect")
    assert scheduler.jobs["explode"].failures >= 3
    assert scheduler.jobs["explode"].last_error == "RuntimeError: boom"


def test_schedule_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    assert rate_seconds("rate(5 minutes)") == 300 and rate_seconds(Rate(2, unit=Rate.HOURS)) == 7200
    assert rate_seconds("cron(0 3 1 * ? *)") is None
    jobs_app = Chalice(app_name="v-secure-intervals")

    @jobs_app.schedule("rate(1 minute)", name="fast")
    def fast(event: Any) -> None: ...

    @jobs_app.schedule("cron(0 3 1 * ? *)", name="monthly")
    def monthly(event: Any) -> None: ...

    assert {job.name: job.interval for job in scheduled_jobs(jobs_app, cap=30)} == {"fast": 30, "monthly": 30}
    monkeypatch.setenv(SCHEDULE_ENV, "2.5")
    assert {job.interval for job in scheduled_jobs(jobs_app)} == {2.5}


# --- processes ------------------------------------------------------------------------------

def test_moto_server_dies_with_its_parent() -> None:
    script = textwrap.dedent("""
        import sys, time
        from chalicelib.local.moto_server import MotoServer, SerializedWsgi
        moto = MotoServer(port=0).start()
        print(moto.endpoint, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        endpoint = parent.stdout.readline().strip()
        assert httpx.get(f"{endpoint}/moto-api/", timeout=5).status_code == 200
    finally:
        parent.kill()  # SIGKILL: no atexit, no cleanup in the parent
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
        except httpx.TransportError:
            return
        time.sleep(0.1)
    pytest.fail("the moto server outlived its parent")


def test_moto_server_start_stop_on_a_given_port() -> None:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    with MotoServer(port=port) as moto:
        assert moto.endpoint == f"http://127.0.0.1:{port}" and moto.running
    assert not moto.running


def _read_until(stream: Any, marker: str, timeout: float) -> str:
    """Lines from ``stream`` (read on a helper thread) until one contains ``marker``, or timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    text, deadline = "", time.monotonic() + timeout
    while marker not in text:
        try:
            text += lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
    return text


def test_dev_stack_main_starts_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("V_SECURE_") or name in ("V_SECURE_LOG_LEVEL",)}
    env.update({"V_SECURE_PORT": "0", "V_SECURE_AWS_PORT": "0", "V_SECURE_CONFIG_DIR": str(tmp_path),
                "PYTHONUNBUFFERED": "1"})
    stack = subprocess.Popen([sys.executable, "-m", "chalicelib.local"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert stack.stdout is not None
        banner = _read_until(stack.stdout, "Press Ctrl-C", timeout=60)
        assert "Press Ctrl-C" in banner, banner
        fields = dict(line.strip().split(":  ", 1) for line in banner.splitlines() if ":  " in line)
        api_url = fields["API endpoint"].strip()
        aws_url = fields["AWS endpoint"].split()[0]
        assert "in memory" in banner and "LOSES IT ON EXIT" in banner
        assert "v-secure secret store --secret-id db_password" in banner

        profile_path = tmp_path / "profiles.json"
        assert profile_path.stat().st_mode & 0o777 == 0o600
        profile = json.loads(profile_path.read_text())["dev"]
        assert profile["endpoint"] == api_url
        assert profile["token"] and profile["token"] not in banner
        assert httpx.get(f"{api_url}/health", timeout=10).status_code == 200
    finally:
        stack.send_signal(signal.SIGINT)
        code = stack.wait(30)
    assert code == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{aws_url}/moto-api/", timeout=2)
