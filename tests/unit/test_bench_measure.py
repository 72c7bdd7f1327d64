"""The bench's arithmetic: percentiles, spread, ratios, alternating pairs, round-trip medians."""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any

import pytest

import bench.measure
from bench.coldstart import parse_importtime
from bench.measure import NOISY_SPREAD, compare, compare_rounds, measure, percentile, ratio, spread, summarize
from bench.report import aws_projection, compact_calls, json_safe
from bench.roundtrips import CallCounter, CallLog, RoundTrips, count_calls


@pytest.mark.parametrize(("q", "expected"), [(0, 1.0), (50, 2.5), (100, 4.0), (25, 1.75), (99, 3.97)])
def test_percentile_interpolates_between_closest_ranks(q: float, expected: float) -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], q) == pytest.approx(expected)


def test_percentile_agrees_with_the_inclusive_quantiles_of_the_standard_library() -> None:
    samples = [float(x * x % 17) for x in range(1, 60)]
    quartiles = statistics.quantiles(samples, n=4, method="inclusive")
    assert [percentile(samples, q) for q in (25, 50, 75)] == pytest.approx(quartiles)


def test_percentile_of_one_sample_is_that_sample() -> None:
    assert percentile([7.5], 99) == 7.5


@pytest.mark.parametrize("bad", [-1, 101])
def test_percentile_refuses_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match="within 0-100"):
        percentile([1.0, 2.0], bad)


def test_percentile_refuses_no_samples() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_spread_is_range_over_median() -> None:
    assert spread([10.0, 11.0, 12.0]) == pytest.approx(2 / 11)
    assert spread([5.0, 5.0]) == 0.0


def test_ratio_handles_zero() -> None:
    assert ratio(12.0, 4.0) == 3.0
    assert ratio(0.0, 0.0) == 1.0
    assert math.isinf(ratio(1.0, 0.0))


def test_summarize_figures_and_throughput_of_one_client() -> None:
    summary = summarize([[1.0, 3.0], [2.0, 4.0]])
    assert (summary.n, summary.p50, summary.min, summary.max) == (4, 2.5, 1.0, 4.0)
    assert summary.mean == 2.5
    assert summary.throughput == pytest.approx(4 / 0.010)  # 4 operations in 10 ms
    assert summary.round_p50 == (2.0, 3.0)
    assert summary.spread == pytest.approx(1 / 2.5)


def test_summarize_uses_wall_time_for_concurrent_clients() -> None:
    assert summarize([[10.0, 10.0, 10.0, 10.0]], wall_seconds=0.02).throughput == pytest.approx(200)


def test_rounds_far_apart_are_flagged_noisy_and_close_ones_are_not() -> None:
    assert summarize([[10.0], [10.0 * (1 + NOISY_SPREAD * 2)]]).noisy
    assert not summarize([[10.0], [10.5]]).noisy


def test_measure_runs_warmup_then_rounds_with_increasing_indexes() -> None:
    seen: list[int] = []
    summary = measure(seen.append, n=3, repetitions=2, warmup=2)
    assert seen == [0, 1, 2, 3, 4, 5, 6, 7]
    assert summary.n == 6


def test_compare_rounds_ratio_of_medians_and_of_pairs() -> None:
    result = compare_rounds([[2.0, 4.0, 6.0], [2.0, 4.0, 6.0]], [[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    assert result.ratio == pytest.approx(4.0 / 2.0)
    assert result.pair_ratio == pytest.approx(2.0)  # pairs: 2, 2, 1.5 -> median 2
    assert result.round_ratios == (2.0, 2.0)
    assert result.spread == 0.0
    assert not result.noisy


def test_compare_rounds_refuses_unpaired_samples() -> None:
    with pytest.raises(ValueError, match="same rounds"):
        compare_rounds([[1.0, 2.0]], [[1.0]])


def test_compare_alternates_which_side_runs_first() -> None:
    order: list[str] = []
    compare(lambda i: order.append("a"), lambda i: order.append("b"), n=4, repetitions=1, warmup=0)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]


def test_alternating_pairs_cancel_a_steady_slowdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine slows down a little with every operation; A always costs twice B."""
    ticks = itertools.count()

    def slowing(operation: Any, index: int) -> float:
        return float(operation(index)) * (1 + next(ticks) / 100)

    monkeypatch.setattr(bench.measure, "timed", slowing)
    alternating = compare(lambda i: 2.0, lambda i: 1.0, n=40, repetitions=1, warmup=0).ratio
    a_first = [2.0 * (1 + 2 * k / 100) for k in range(40)]
    b_second = [1.0 * (1 + (2 * k + 1) / 100) for k in range(40)]
    always_a_first = compare_rounds([a_first], [b_second]).ratio
    assert abs(alternating - 2.0) < abs(always_a_first - 2.0) / 3


def test_aws_projection_adds_assumed_latencies() -> None:
    assert aws_projection(["dynamodb.GetItem", "dynamodb.PutItem"]) == (7, 13)
    assert aws_projection(["kms.GenerateDataKey", "dynamodb.TransactWriteItems"]) == (13, 22)
    assert aws_projection([]) == (0, 0)


def test_compact_calls_folds_repeats_in_order() -> None:
    calls = ["dynamodb.GetItem", "dynamodb.Query", "dynamodb.Query", "dynamodb.Query", "kms.Decrypt",
             "dynamodb.Query"]
    assert compact_calls(calls) == "GetItem, Query x3, Decrypt, Query"
    assert compact_calls([]) == ""


def test_json_safe_replaces_infinities() -> None:
    assert json_safe({"a": [math.inf, 1.5], "b": math.nan}) == {"a": [None, 1.5], "b": None}


def test_count_calls_reports_the_median_run_and_the_occasional_extra_calls() -> None:
    warm = ["dynamodb.GetItem", "dynamodb.PutItem"]
    refresh = ["dynamodb.Query", *warm]
    script = [warm, refresh, warm, warm, warm]
    counter = CallCounter()

    def run(index: int) -> None:
        for call in script[index]:
            counter.record(call)

    trips = count_calls(counter, "retrieve (warm)", run, runs=5)
    assert trips.counts == (2, 3, 2, 2, 2)
    assert trips.median == 2
    assert trips.calls == tuple(warm)
    assert trips.extra == ("dynamodb.Query x1/5 runs",)
    assert trips.budget == 2
    assert trips.within_budget


def test_a_warm_operation_over_its_budget_fails() -> None:
    over = RoundTrips(operation="store (warm)", counts=(3, 3, 3), calls=("dynamodb.GetItem", "kms.GenerateDataKey",
                                                                          "dynamodb.TransactWriteItems"), budget=2)
    assert not over.within_budget
    assert over.as_dict()["within_budget"] is False


def test_counting_collects_calls_and_items_read_only_inside_the_block() -> None:
    counter = CallCounter()

    class Query:
        name = "Query"

    counter.record("dynamodb.GetItem")
    with counter.counting() as log:
        counter.record("dynamodb.Query")
        counter._on_answer(Query(), parsed={"ScannedCount": 50, "Count": 50})
        counter._on_answer(Query(), parsed={"Count": 7})
    counter.record("dynamodb.PutItem")
    assert log == CallLog(calls=["dynamodb.Query"], items_read=57)


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |       referencing
import time:       363 |      53243 |     jsonschema
import time:      1359 |      54601 |   chalicelib.secret_types.configuration
import time:       874 |      81171 | chalicelib.secret_types.registry
import time:      2922 |     685290 | app
"""


def test_parse_importtime_finds_cost_and_importers() -> None:
    cost = parse_importtime(IMPORTTIME, "jsonschema")
    assert cost is not None
    assert cost.ms == pytest.approx(53.243)
    assert cost.chain == ("chalicelib.secret_types.configuration", "chalicelib.secret_types.registry")
    assert parse_importtime(IMPORTTIME, "reportlab") is None
