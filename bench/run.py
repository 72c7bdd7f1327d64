"""``python -m bench`` (``make bench``): the whole benchmark in one run on one local stack.

Order matters: the cold-start probes run before anything else (nothing competes for the
CPU), the latency, peer, floor and round-trip figures are taken on small tables, and the
scaling part loads its 100 000 secrets and its audit events last.

Exit status: 0 when every budget holds, 1 when one does not (a warm retrieve or store over
DESIGN.md's round-trip budget, or a heavy module imported by ``import app``), 2 on an error.

Example::

    python -m bench                    # everything, 7-9.5 minutes on 2 cores
    python -m bench --quick            # small counts, for a smoke test
    python -m bench --audit-events 200000 --output results-200k.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import features
from bench.coldstart import cold_start
from bench.features import FeatureMissing
from bench.floor import Floor
from bench.harness import BENCH_PREFIX, BenchStack, random_value
from bench.measure import Comparison, Summary, compare, measure, measure_concurrent, ratio
from bench.peers import Credstash
from bench.report import git_commit, machine_info, package_versions, print_tables, timestamp, write_json
from bench.roundtrips import CallCounter, RoundTrips, count_calls
from bench.scaling import (
    SyntheticStream,
    audit_secret_id,
    load_events,
    load_secrets,
    loader_client,
    scale_secret_id,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "bench" / "results.json"
VALUE_SIZE = 48
HOT = f"{BENCH_PREFIX}hot"
STORE = f"{BENCH_PREFIX}store"
STORE_SERVICE = f"{BENCH_PREFIX}store-service"
AUDIT_SECRETS = 20
AUDIT_MIN_LOAD = 2_000
AUDIT_CANDIDATES = (1_000_000, 500_000, 250_000, 100_000, 50_000, 20_000)
SECRET_CANDIDATES = (100_000, 50_000, 20_000, 10_000)


@dataclass(frozen=True)
class Plan:
    """How much to measure. ``quick()`` is for smoke tests; the defaults are ``make bench``'s."""

    n: int = 50
    repetitions: int = 3
    warmup: int = 20
    pairs: int = 40
    store_n: int = 20
    """Stores per round (each one makes every later TransactWriteItems on moto slower)."""
    round_trip_runs: int = 7
    concurrent_clients: int = 4
    feature_n: int = 10
    scale_small: int = 1_000
    scale_large: int = 100_000
    scale_sample: int = 100
    audit_small: int = 10_000
    audit_large: int | None = None
    """None: the largest of AUDIT_CANDIDATES that fits the time budget."""
    audit_queries: int = 10
    cold_runs: int = 5
    budget_seconds: float = 510.0
    """When the scaling parts must be done (they pick their counts to fit); make bench's limit is 600."""

    @classmethod
    def quick(cls) -> Plan:
        return cls(n=20, repetitions=2, warmup=5, pairs=20, store_n=8, round_trip_runs=5, feature_n=5, scale_small=200,
                   scale_large=2_000, scale_sample=20, audit_small=3_000, audit_large=6_000, audit_queries=5,
                   cold_runs=3, budget_seconds=240.0)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke test, 1-2 minutes)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write results.json")
    parser.add_argument("--secrets", type=int, help="secrets in the large table (default 100000)")
    parser.add_argument("--audit-events", type=int,
                        help="audit events in the large table (default: the largest of 1000000, 500000, ... "
                             "that fits the time budget)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling part")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold-start part")
    return parser.parse_args(argv)


class Bench:
    """One run: the stack, the counters and the results being built."""

    def __init__(self, stack: BenchStack, plan: Plan, deadline: float, console: Console) -> None:
        from chalicelib.config import get_settings

        self.stack = stack
        self.plan = plan
        self.deadline = deadline
        self.console = console
        self.counter = CallCounter().install()
        self.settings = get_settings()
        self.floor = Floor.connect(stack.endpoint, self.settings.secrets_table, self.settings.audit_table,
                                   self.settings.kms_key_id)
        self.peer = Credstash.connect(stack.endpoint)
        self.loader = loader_client(stack.endpoint, self.settings.region)
        self.latency: dict[str, dict[str, Any]] = {}
        self.peers: dict[str, dict[str, Any]] = {}
        self.floors: dict[str, dict[str, Any]] = {}
        self.trips: list[dict[str, Any]] = []
        self.scaling: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.failures: list[str] = []
        self._value = random_value(VALUE_SIZE)
        self._peer_version = 0

    # --- operations ------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}", highlight=False)

    def http_store(self, secret_id: str) -> Callable[[int], object]:
        return lambda _i: self.stack.store(secret_id, self._value)

    def http_retrieve(self, secret_id: str, **params: Any) -> Callable[[int], object]:
        return lambda _i: self.stack.retrieve(secret_id, **params)

    def service_store(self, secret_id: str) -> Callable[[int], object]:
        from chalicelib.models import StoreSecretRequest
        from chalicelib.vault.service import get_vault_service

        caller = self.stack.caller()
        return lambda _i: get_vault_service().store(
            caller, StoreSecretRequest.model_validate({"secretId": secret_id, "value": self._value}))

    def service_retrieve(self, secret_id: str) -> Callable[[int], object]:
        from chalicelib.vault.service import get_vault_service

        caller = self.stack.caller()
        return lambda _i: get_vault_service().retrieve(caller, secret_id)

    def peer_put(self, name: str) -> Callable[[int], object]:
        def put(_i: int) -> None:
            self._peer_version += 1
            self.peer.put(name, self._value, self._peer_version)
        return put

    def peer_get(self, name: str) -> Callable[[int], object]:
        return lambda _i: self.peer.get(name)

    def getitem(self, secret_id: str) -> Callable[[int], object]:
        return lambda _i: self.floor.get_meta(secret_id)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    # --- parts -----------------------------------------------------------------------------

    def setup(self) -> None:
        """The secrets every part uses (two versions of the hot one, so version 1 is not current)."""
        for secret_id in (HOT, STORE, STORE_SERVICE):
            self.stack.store(secret_id, random_value(VALUE_SIZE), type="api_key")
        self.stack.store(HOT, self._value)
        self.peer.put("bench-peer-get", self._value, 1)
        self.peer_put("bench-peer-store")(0)

    def round_trips(self) -> None:
        self.say("round trips")
        runs = self.plan.round_trip_runs
        warm = self.http_retrieve(HOT)
        self._trip(count_calls(self.counter, "retrieve (warm)", warm, runs=runs, prepare=warm,
                               note="data-key, token and policy caches warm"))
        self._trip(count_calls(self.counter, "retrieve (cold data key)", warm, runs=runs,
                               prepare=lambda _i: self._clear_data_keys(),
                               note="data-key cache emptied before each run: one KMS Decrypt more"))
        self._trip(count_calls(self.counter, "retrieve version=1 (warm)", self.http_retrieve(HOT, version=1),
                               runs=runs, prepare=self.http_retrieve(HOT, version=1),
                               note="a non-current version is read from its own item"))
        store = self.http_store(STORE)
        self._trip(count_calls(self.counter, "store (warm)", store, runs=runs, prepare=store,
                               note="META cached by this process (30 s) after its own last write"))
        self._trip(count_calls(self.counter, "store (new secret)",
                               lambda i: self.stack.store(f"{BENCH_PREFIX}new/trip-{i}", self._value,
                                                          type="api_key"), runs=runs,
                               note="the META read finds nothing, then GenerateDataKey + transaction"))
        self._trip(count_calls(self.counter, "store (META not cached)", store, runs=runs,
                               prepare=lambda _i: self._forget_records(),
                               note="another process wrote last, or the 30 s META cache expired"))
        self._trip(count_calls(self.counter, "store (META cached but stale)", store, runs=runs,
                               prepare=lambda _i: self._write_elsewhere(),
                               note="another process wrote since: the transaction is refused, then read, "
                                    "seal again (new version number), write"))
        listing = lambda _i: self.stack.http.get("/secrets", params={"limit": 50})  # noqa: E731
        self._trip(count_calls(self.counter, "list (first page of 50)", listing, runs=runs, prepare=listing))
        self._trip(count_calls(self.counter, "retrieve (new process, every cache cold)", warm, runs=3,
                               prepare=lambda _i: self._new_process(),
                               note="a fresh Lambda container: token, principal, policies, stream, key check"))
        self._peer_trips()

    def _trip(self, trips: RoundTrips) -> None:
        self.trips.append(trips.as_dict())
        if not trips.within_budget:
            self.failures.append(f"{trips.operation}: {trips.median} AWS calls ({', '.join(trips.calls)}), "
                                 f"budget {trips.budget}")

    def _peer_trips(self) -> None:
        put = self.peer.count_calls(lambda: self.peer_put("bench-peer-store")(0))
        get = self.peer.count_calls(lambda: self.peer_get("bench-peer-get")(0))
        for name, calls in (("credstash putSecret", put), ("credstash getSecret", get)):
            self.trips.append(RoundTrips(operation=name, counts=(len(calls),), calls=tuple(calls),
                                         note="library call: no auth, no audit").as_dict())

    def _clear_data_keys(self) -> None:
        from chalicelib.vault.keys import get_keyring

        keyring = get_keyring()
        clear = getattr(keyring, "clear", None)
        if callable(clear):
            clear()

    def _forget_records(self) -> None:
        from chalicelib.vault.service import get_vault_service

        get_vault_service()._records.forget(STORE)

    def _write_elsewhere(self) -> None:
        """A store of STORE by another service instance (another process), behind this one's META cache."""
        from chalicelib.models import StoreSecretRequest
        from chalicelib.vault.service import VaultService, get_vault_service

        ours = get_vault_service()
        other = VaultService(ours.repo, ours.keys, settings=ours.settings)
        other.store(self.stack.caller(), StoreSecretRequest.model_validate({"secretId": STORE, "value": self._value}))

    def _new_process(self) -> None:
        from chalicelib.access_control.policy_store import reset_policy_cache
        from chalicelib.local.environment import reset_process_state

        reset_process_state()
        reset_policy_cache()
        self.counter.install()

    def writes(self) -> None:
        """Stores first, while the tables are small, and few of them.

        moto's TransactWriteItems deep-copies every table it touches (to roll back on failure),
        so each store costs more as the tables grow; the bare calls are measured alongside.
        """
        plan = self.plan
        self.say("writes: store latency, against credstash putSecret and against the bare calls")
        n = plan.store_n
        self._latency("store (new version of one secret)", self.http_store(STORE), spec="store",
                      trip="store (warm)", n=n)
        self._latency("store (new secret)",
                      lambda i: self.stack.store(f"{BENCH_PREFIX}new/lat-{i}", self._value, type="api_key"),
                      spec="store", trip="store (new secret)", n=n)
        put = self.peer_put("bench-peer-store")
        self.peers["store via HTTP vs putSecret"] = self._pair(self.http_store(STORE), put, n)
        self.peers["store in-process (service) vs putSecret"] = self._pair(self.service_store(STORE_SERVICE), put, n)
        self.floors["store in-process (service) vs bare GenerateDataKey + TransactWriteItems"] = self._pair(
            self.service_store(STORE_SERVICE), self._bare_store(), n)
        self._rotate()

    def _bare_store(self) -> Callable[[int], object]:
        meta, version, event = self.floor.real_items(STORE, 1)
        return lambda _i: self.floor.store_like(meta, version, event)

    def _pair(self, a: Callable[[int], object], b: Callable[[int], object], n: int | None = None) -> dict[str, Any]:
        plan = self.plan
        pairs = n or plan.pairs
        warmup = min(plan.warmup, max(pairs // 4, 2))
        return compare(a, b, n=pairs, repetitions=plan.repetitions, warmup=warmup).as_dict()

    def reads(self) -> None:
        plan = self.plan
        self.say("reads: retrieve latency, against credstash getSecret and against a bare GetItem")
        self._latency("health (HTTP hop only, no AWS call)", lambda _i: self.stack.http.get("/health"), calls=0)
        self._latency("retrieve (current version)", self.http_retrieve(HOT), spec="retrieve",
                      trip="retrieve (warm)")
        self._latency("retrieve (version=1, not current)", self.http_retrieve(HOT, version=1), spec="retrieve",
                      trip="retrieve version=1 (warm)")
        summary = measure_concurrent(self.http_retrieve(HOT), clients=plan.concurrent_clients,
                                     n=max(plan.n // plan.concurrent_clients, 5), repetitions=plan.repetitions,
                                     warmup=plan.warmup)
        self.latency[f"retrieve ({plan.concurrent_clients} clients at once)"] = {
            "summary": summary.as_dict(), "spec": "retrieve", "calls": self._calls("retrieve (warm)")}
        get, getitem = self.peer_get("bench-peer-get"), self.getitem(HOT)
        self.peers["retrieve via HTTP vs getSecret"] = self._pair(self.http_retrieve(HOT), get)
        self.peers["retrieve in-process (service) vs getSecret"] = self._pair(self.service_retrieve(HOT), get)
        self.floors["retrieve via HTTP vs GetItem"] = self._pair(self.http_retrieve(HOT), getitem)
        self.floors["retrieve in-process (service) vs GetItem"] = self._pair(self.service_retrieve(HOT), getitem)
        self.floors["credstash getSecret vs GetItem"] = self._pair(get, getitem)
        self.floors["HTTP hop alone (/health) vs GetItem"] = self._pair(lambda _i: self.stack.http.get("/health"),
                                                                       getitem)
        self._canary()

    def others(self) -> None:
        """List, audit query and compliance report: each costs a moto Query, slow on moto; fewer runs."""
        self.say("list, audit query, compliance report")
        n = self.plan.feature_n
        listing = lambda _i: self.stack.http.get("/secrets", params={"limit": 50})  # noqa: E731
        self._latency("list (first page of 50)", listing, trip="list (first page of 50)", n=n)
        self.floors["list via HTTP vs the bare Query of its page"] = self._pair(
            listing, lambda _i: self.floor.list_page(50), max(n // 2, 3))
        self._audit_query()
        self._compliance()

    def _latency(self, name: str, operation: Callable[[int], object], *, spec: str = "", trip: str | None = None,
                 calls: int | None = None, n: int | None = None) -> Summary:
        plan = self.plan
        count = n or plan.n
        summary = measure(operation, n=count, repetitions=plan.repetitions, warmup=min(plan.warmup, max(count // 4, 2)))
        self.latency[name] = {"summary": summary.as_dict(), "spec": spec,
                              "calls": calls if calls is not None else self._calls(trip)}
        return summary

    def _calls(self, operation: str | None) -> int | str:
        found = [t["median"] for t in self.trips if t["operation"] == operation]
        return found[0] if found else ""

    def _unavailable(self, name: str, reason: str, *, spec: str = "") -> None:
        self.latency[name] = {"available": False, "reason": reason, "spec": spec}
        self.trips.append({"operation": name, "available": False, "reason": reason})

    def _rotate(self) -> None:
        name = "rotate (immediate, jwt_token HS256)"
        reason = features.unavailable(features.ROTATE)
        if reason is not None:
            self._unavailable(name, reason, spec="rotate")
            return
        self.say("rotate")
        try:
            ids = [f"{BENCH_PREFIX}rotate/{i}" for i in range(5)]
            for secret_id in ids:
                self.stack.store(secret_id, features.hmac_signing_key(), type="jwt_token")
            operation = features.rotate_operation(self.stack, ids)
            trips = count_calls(self.counter, name, operation, runs=3,
                                note="create, set, test, finish in one request; each step a transaction")
            self.trips.append(trips.as_dict())
            self._latency(name, operation, spec="rotate", calls=trips.median, n=max(self.plan.feature_n // 2, 3))
        except FeatureMissing as missing:
            self._unavailable(name, str(missing), spec="rotate")

    def _canary(self) -> None:
        """Retrieve while a canary rollout serves 5 %: by a caller outside the 5 % and by one inside it."""
        names = ("retrieve during a canary rollout (old version)", "retrieve during a canary rollout (new version)")
        reason = features.unavailable(features.ROTATE) or features.unavailable(features.ROTATION_CONFIG)
        if reason is not None:
            for name in names:
                self._unavailable(name, reason, spec="retrieve")
            return
        self.say("retrieve during a canary rollout")
        try:
            secret_id = f"{BENCH_PREFIX}canary"
            inside = features.principal_in_rollout(secret_id, percent=5)
            token = features.new_principal(self.stack, inside)
            self.stack.store(secret_id, features.hmac_signing_key(), type="jwt_token",
                             access={self.stack.principal_id: ["admin"], inside: ["read"]})
            started = features.start_canary(self.stack, secret_id)
            progress = started.get("progress") or {}
            with features.client_for(self.stack, token) as reader:
                for name, http in zip(names, (self.stack.http, reader), strict=True):
                    operation = features.retrieve_operation(http, secret_id)
                    served = operation(0)
                    trips = count_calls(self.counter, name, operation, runs=5, prepare=operation,
                                        note=f"rollout {started.get('status')} at {progress.get('rolled_out')}%: "
                                             f"v{started.get('oldVersion')} -> v{started.get('newVersion')}; this "
                                             f"caller is served v{served}")
                    self.trips.append(trips.as_dict())
                    self._latency(name, operation, spec="retrieve", calls=trips.median)
        except FeatureMissing as missing:
            for name in names:
                self._unavailable(name, str(missing), spec="retrieve")

    def _audit_query(self) -> None:
        name = "audit query (one secret, last 50)"
        reason = features.unavailable(features.AUDIT_QUERY)
        if reason is not None:
            self._unavailable(name, reason, spec="audit query")
            return
        self.say("audit query")
        try:
            operation = lambda _i: features.audit_query(self.stack.root, HOT)  # noqa: E731
            trips = count_calls(self.counter, name, operation, runs=5, prepare=operation,
                                note="served by the by_secret index; the read is itself audited")
            self.trips.append(trips.as_dict())
            self._latency(name, operation, spec="audit query", calls=trips.median, n=self.plan.feature_n)
        except FeatureMissing as missing:
            self._unavailable(name, str(missing), spec="audit query")

    def _compliance(self) -> None:
        name = "compliance report (PCI-DSS, monthly, JSON)"
        reason = features.unavailable(features.COMPLIANCE)
        if reason is not None:
            self._unavailable(name, reason)
            return
        self.say("compliance report")
        try:
            operation = lambda _i: features.compliance_report(self.stack.root)  # noqa: E731
            trips = count_calls(self.counter, name, operation, runs=2, prepare=operation)
            self.trips.append(trips.as_dict())
            self._latency(name, operation, calls=trips.median, n=max(3, self.plan.feature_n // 4))
        except FeatureMissing as missing:
            self._unavailable(name, str(missing))

    # --- scaling ---------------------------------------------------------------------------

    def scale_secrets(self, forced_large: int | None) -> None:
        """Retrieve at ~1 000 secrets, then at up to 100 000 (the most that fits the time budget)."""
        from chalicelib.vault.keys.keyring import build_provider

        plan = self.plan
        keys = build_provider("passphrase", self.settings)
        existing = self._count_secrets()
        first = max(plan.scale_small - existing, 0)
        self.say(f"scaling: loading {first:,} secrets with their version items (table has {existing:,})")
        loaded = load_secrets(self.loader, self.settings.secrets_table, keys, owner=self.stack.principal_id,
                              first=0, count=first)
        small_count = existing + first
        small = self._retrieve_at(range(first))
        wanted = forced_large or plan.scale_large
        probe_count = min(max(wanted // 50, 200), max(wanted - small_count, 0))
        probe = load_secrets(self.loader, self.settings.secrets_table, keys, owner=self.stack.principal_id,
                             first=first, count=probe_count, with_versions=False)
        per_second = probe_count / max(probe.seconds, 1e-9)
        target = forced_large or self._affordable_secrets(small_count + probe_count, per_second, wanted)
        rest = max(target - small_count - probe_count, 0)
        self.say(f"scaling: loading {rest:,} more secrets ({per_second:,.0f} secrets/s)")
        more = load_secrets(self.loader, self.settings.secrets_table, keys, owner=self.stack.principal_id,
                            first=first + probe_count, count=rest, with_versions=False)
        large_count = small_count + probe_count + rest
        large = self._retrieve_at(range(first + probe_count + rest))
        self.scaling.append(scaling_row(
            "retrieve via HTTP (secrets in the table)", small_count, large_count, small, large,
            note=f"{plan.scale_sample} sampled secrets read in turn, data keys cached; "
                 "normalized = (retrieve / GetItem at large) / (retrieve / GetItem at small)"))
        self.notes.append(
            f"Scaling secrets: the first {first:,} were loaded with their version item "
            f"({loaded.items / max(loaded.seconds, 1e-9):,.0f} items/s), the other {probe_count + rest:,} as META "
            f"items only ({(probe.items + more.items) / max(probe.seconds + more.seconds, 1e-9):,.0f} items/s): "
            "a retrieve of the current version reads nothing else, and version items would double the load "
            "time on moto. Envelopes are wrapped by the passphrase provider, which the stack reads with "
            "(no 100 000 KMS calls); each is sealed for its own secret id.")

    def _affordable_secrets(self, loaded: int, per_second: float, wanted: int) -> int:
        """The largest count up to ``wanted`` whose load fits its share of the time left."""
        candidates = sorted({wanted, *(c for c in SECRET_CANDIDATES if c < wanted)}, reverse=True)
        share = (self.time_left() - 60) * 0.6  # the rest goes to the audit part
        chosen = next((c for c in candidates if (c - loaded) / max(per_second, 1) <= share), candidates[-1])
        if chosen < wanted:
            self._over_budget_note("secrets", chosen, wanted, per_second, (wanted - loaded) / max(per_second, 1),
                                   share)
        return chosen

    def _over_budget_note(self, what: str, used: int, wanted: int, per_second: float, needed: float,
                          left: float) -> None:
        self.notes.append(
            f"Scaling {what} used {used:,}, not {wanted:,}: moto loads {per_second:,.0f} {what}/s on this machine "
            f"now (load average {machine_info()['load_average'][0]}), and {wanted:,} would need about "
            f"{needed / 60:.1f} min (loading{', and querying a table that big' if what == 'events' else ''}), "
            f"with {max(left, 0) / 60:.1f} min left for it within make bench's 10-minute budget. "
            f"--{'secrets' if what == 'secrets' else 'audit-events'} N forces a count.")

    def _retrieve_at(self, indexes: range) -> Comparison:
        """Retrieve against GetItem (alternating) over a sample of the secrets ``indexes``."""
        plan = self.plan
        step = max(len(indexes) // plan.scale_sample, 1)
        ids = [scale_secret_id(i) for i in indexes[::step][:plan.scale_sample]]
        for secret_id in ids:
            self.stack.retrieve(secret_id)  # warm the data-key cache
        comparison = compare(lambda i: self.stack.retrieve(ids[i % len(ids)]),
                             lambda i: self.floor.get_meta(ids[i % len(ids)]),
                             n=plan.n, repetitions=plan.repetitions, warmup=len(ids))
        return comparison

    def _count_secrets(self) -> int:
        from chalicelib.tables import SECRET_LIST_INDEX

        count, kwargs = 0, {"TableName": self.settings.secrets_table, "IndexName": SECRET_LIST_INDEX,
                            "KeyConditionExpression": "kind = :k", "Select": "COUNT",
                            "ExpressionAttributeValues": {":k": {"S": "SECRET"}}}
        while True:
            answer = self.floor.dynamodb.query(**kwargs)
            count += int(answer["Count"])
            if "LastEvaluatedKey" not in answer:
                return count
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def scale_audit(self, forced_large: int | None) -> None:
        name = "audit query via HTTP (one secret, last 50)"
        reason = features.unavailable(features.AUDIT_QUERY)
        if reason is not None:
            self.scaling.append({"operation": name, "available": False, "reason": reason})
            return
        plan = self.plan
        stream = SyntheticStream(secrets=AUDIT_SECRETS, actor=self.stack.principal_id)
        existing = self._count_events()
        # at least AUDIT_MIN_LOAD, so the queried secret has a full page of events at the small size too
        loaded = load_events(self.loader, self.settings.audit_table, stream,
                             max(plan.audit_small - existing, AUDIT_MIN_LOAD))
        small_count = self._count_events()
        self.say(f"scaling: audit table at {small_count:,} items ({loaded.per_second:,.0f} items/s)")
        small, small_read = self._audit_at()
        target = forced_large or plan.audit_large or self._affordable_events(small_count, loaded.per_second,
                                                                             small.a)
        self.say(f"scaling: loading {max(target - small_count, 0):,} more audit events")
        more = load_events(self.loader, self.settings.audit_table, stream, max(target - small_count, 0))
        large_count = self._count_events()
        large, large_read = self._audit_at()
        self.scaling.append(scaling_row(
            name, small_count, large_count, small, large, items_read=f"{small_read} / {large_read}",
            note=f"events over {AUDIT_SECRETS} secrets, loaded at {more.per_second:,.0f} items/s; B = the bare "
                 "Query of the same index page, which moto answers by sorting the whole table"))

    def _audit_at(self) -> tuple[Comparison, int]:
        secret_id = audit_secret_id(7)
        operation = lambda _i: features.audit_query(self.stack.root, secret_id)  # noqa: E731
        operation(0)
        with self.counter.counting() as log:
            operation(0)
        comparison = compare(operation, lambda _i: self.floor.audit_page(secret_id), n=self.plan.audit_queries,
                             repetitions=self.plan.repetitions, warmup=1)
        return comparison, log.items_read

    def _affordable_events(self, small_count: int, per_second: float, small_query: Summary) -> int:
        """The largest candidate whose load and queries fit the time left (moto's Query is O(table))."""
        queries = 2 * self.plan.audit_queries * self.plan.repetitions + 3  # ours and the bare Query, alternately
        left = self.time_left() - 30

        def needs(candidate: int) -> float:
            load = (candidate - small_count) / max(per_second, 1)
            return load + queries * small_query.p50 / 1000 * candidate / max(small_count, 1)

        chosen = next((c for c in AUDIT_CANDIDATES if needs(c) <= left), AUDIT_CANDIDATES[-1])
        if chosen < AUDIT_CANDIDATES[0]:
            self._over_budget_note("events", chosen, AUDIT_CANDIDATES[0], per_second,
                                   needs(AUDIT_CANDIDATES[0]), left)
        return chosen

    def _count_events(self) -> int:
        table = self.floor.dynamodb.describe_table(TableName=self.settings.audit_table)["Table"]
        return int(table.get("ItemCount", 0))

    def results(self) -> dict[str, Any]:
        return {"latency": self.latency, "peers": self.peers, "floor": self.floors, "round_trips": self.trips,
                "scaling": self.scaling, "notes": self.notes, "failures": self.failures}


def scaling_row(operation: str, small_count: int, large_count: int, small: Comparison, large: Comparison,
                **extra: Any) -> dict[str, Any]:
    """One scaling result: A (ours) at both sizes, and B (the floor) at both sizes to normalize with."""
    return {"operation": operation, "small_count": small_count, "large_count": large_count,
            "small": small.a.as_dict(), "large": large.a.as_dict(), "ratio": ratio(large.a.p50, small.a.p50),
            "floor_small": small.b.as_dict(), "floor_large": large.b.as_dict(),
            "floor_ratio": ratio(large.b.p50, small.b.p50),
            "normalized": ratio(large.ratio, small.ratio), **extra}


def standing_notes() -> list[str]:
    return [
        "credstash is a library call: no HTTP hop, no authentication, no authorization, no audit event. "
        "Ours is measured through the HTTP API and in-process on the service layer (VaultService), "
        "same server, same value size, alternating pairs.",
        "Every retrieve and store of ours writes an audit event (hash-chained) before it answers; "
        "credstash writes none.",
        "moto is not DynamoDB: every Query sorts the whole table in moto (O(n log n)), where DynamoDB "
        "reads only the index partition. 'items read' is what DynamoDB would read (ScannedCount).",
        "moto serves one request at a time (the local stack serializes it: moto is not thread-safe) "
        "and closes every connection, so each AWS call here also pays a TCP connect.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=200)
    try:
        return run(args, console)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except Exception:
        console.print_exception(max_frames=8)
        console.print("[red]the bench stopped on an error: no figures were written[/red]")
        return 2


def run(args: argparse.Namespace, console: Console) -> int:
    """Every part, in order; the exit status (0 every budget holds, 1 one does not)."""
    started = time.monotonic()
    plan = Plan.quick() if args.quick else Plan()
    deadline = started + plan.budget_seconds
    results: dict[str, Any] = {"timestamp": timestamp(), "commit": git_commit(ROOT), "machine": machine_info(),
                               "versions": package_versions(), "plan": plan.__dict__, "quick": args.quick}
    failures: list[str] = []
    if not args.no_cold_start:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] cold start ({plan.cold_runs} runs each)")
        cold = cold_start(ROOT, runs=plan.cold_runs)
        results["cold_start"] = cold.as_dict()
        if not cold.ok:
            failures.append(f"import app loads heavy modules: {', '.join(cold.heavy_loaded)}")
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] starting the local stack")
    with BenchStack.start() as stack:
        bench = Bench(stack, plan, deadline, console)
        bench.setup()
        bench.round_trips()
        bench.writes()
        bench.reads()
        bench.others()
        if not args.no_scaling:
            bench.scale_secrets(args.secrets)
            bench.scale_audit(args.audit_events)
        results.update(bench.results())
    results["failures"] = failures + results["failures"]
    results["notes"] = standing_notes() + results["notes"] + _cold_notes(results.get("cold_start"))
    results["machine"]["load_average_end"] = machine_info()["load_average"]
    results["total_seconds"] = round(time.monotonic() - started, 1)
    write_json(results, args.output)
    print_tables(results, console)
    console.print(f"results written to {args.output}", highlight=False)
    return 1 if results["failures"] else 0


def _cold_notes(cold: dict[str, Any] | None) -> list[str]:
    if not cold:
        return []
    return [f"import app loads {c['module']} ({c['ms']:.0f} ms, imported by {' <- '.join(c['imported_by'][:3])})"
            for c in cold["costs"]]


if __name__ == "__main__":
    sys.exit(main())
