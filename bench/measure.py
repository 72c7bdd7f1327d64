"""Timing: percentiles, throughput, spread across repetitions, and alternating A/B comparisons.

Every figure is in milliseconds unless its name says otherwise. A measurement is run in
``repetitions`` rounds of ``n`` operations after a warm-up; the *spread* is
``(max - min) / median`` of the rounds' medians, and a measurement whose spread exceeds
:data:`NOISY_SPREAD` is flagged ``noisy`` (the machine was busy: the figures are less sure).

Comparisons run A and B alternately, pair by pair (A then B, then B then A, ...), so a slow
phase of the machine hits both sides alike and drift cancels out of the ratio.

Example::

    summary = measure(lambda i: client.get("/health"), n=200, repetitions=3, warmup=20)
    print(summary.p50, summary.p99, summary.throughput)

    pair = compare(lambda i: ours(i), lambda i: theirs(i), n=100, repetitions=3, warmup=10)
    print(pair.ratio)  # median(A) / median(B)
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

NOISY_SPREAD = 0.25
"""Rounds whose medians differ by more than this share of their median make a figure noisy."""

Operation = Callable[[int], object]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks.

    The same definition as ``numpy.percentile``'s default and ``statistics.quantiles(...,
    method="inclusive")``.

    Example::

        percentile([1, 2, 3, 4], 50)  # 2.5
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0-100, not {q}")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: Sequence[float]) -> float:
    """``(max - min) / median``: how far apart repeated measurements of one thing landed.

    Example::

        spread([10, 11, 12])  # 0.1818...
    """
    if not values:
        raise ValueError("spread of no values")
    middle = statistics.median(values)
    if middle == 0:
        return 0.0 if max(values) == min(values) else math.inf
    return (max(values) - min(values)) / middle


def ratio(a: float, b: float) -> float:
    """``a / b``; infinite when ``b`` is zero and ``a`` is not, 1 when both are zero.

    Example::

        ratio(12.0, 4.0)  # 3.0
    """
    if b == 0:
        return 1.0 if a == 0 else math.inf
    return a / b


@dataclass(frozen=True)
class Summary:
    """Latency figures of one operation over every round (ms), its throughput and noise."""

    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    min: float
    max: float
    throughput: float
    """Operations per second of one sequential client (operations / time spent in them)."""
    round_p50: tuple[float, ...]
    spread: float
    noisy: bool

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["round_p50"] = list(self.round_p50)
        return {key: _rounded(value) for key, value in data.items()}


def summarize(rounds: Sequence[Sequence[float]], *, wall_seconds: float | None = None) -> Summary:
    """A :class:`Summary` of ``rounds`` (lists of durations in ms, one list per round).

    Throughput is operations per second of wall time when ``wall_seconds`` is given (several
    clients at once), else of the time spent in the operations (one sequential client).

    Example::

        summarize([[1.0, 2.0], [1.5, 2.5]]).p50  # 1.75
    """
    samples = [value for one in rounds for value in one]
    if not samples:
        raise ValueError("no samples to summarize")
    medians = tuple(statistics.median(one) for one in rounds if one)
    total_seconds = sum(samples) / 1000 if wall_seconds is None else wall_seconds
    noise = spread(medians)
    return Summary(
        n=len(samples), p50=percentile(samples, 50), p95=percentile(samples, 95), p99=percentile(samples, 99),
        mean=statistics.fmean(samples), min=min(samples), max=max(samples),
        throughput=len(samples) / total_seconds if total_seconds else math.inf,
        round_p50=medians, spread=noise, noisy=noise > NOISY_SPREAD,
    )


def timed(operation: Operation, index: int) -> float:
    """Run ``operation(index)`` once; its duration in ms."""
    start = time.perf_counter_ns()
    operation(index)
    return (time.perf_counter_ns() - start) / 1e6


def measure(operation: Operation, *, n: int, repetitions: int = 3, warmup: int = 10) -> Summary:
    """Time ``operation(i)`` ``n`` times in each of ``repetitions`` rounds, after ``warmup`` calls.

    ``i`` counts up across warm-up and rounds, so an operation can use it to vary its input
    (a new version, another secret).
    """
    counter = 0
    for _ in range(warmup):
        operation(counter)
        counter += 1
    rounds: list[list[float]] = []
    for _ in range(repetitions):
        durations = []
        for _ in range(n):
            durations.append(timed(operation, counter))
            counter += 1
        rounds.append(durations)
    return summarize(rounds)


def measure_concurrent(operation: Operation, *, clients: int, n: int, repetitions: int = 3,
                       warmup: int = 10) -> Summary:
    """``clients`` threads each run ``operation`` ``n`` times per round; throughput is per wall second.

    The latency figures are per operation, as each client saw them.
    """
    for index in range(warmup):
        operation(index)
    rounds: list[list[float]] = []
    wall = 0.0
    for repetition in range(repetitions):
        durations: list[float] = []
        lock = threading.Lock()

        def client(number: int, repetition: int = repetition, durations: list[float] = durations,
                   lock: threading.Lock = lock) -> None:
            base = warmup + (repetition * clients + number) * n
            mine = [timed(operation, base + i) for i in range(n)]
            with lock:
                durations.extend(mine)

        threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall += time.perf_counter() - start
        rounds.append(durations)
    return summarize(rounds, wall_seconds=wall)


@dataclass(frozen=True)
class Comparison:
    """A measured against B in alternating pairs; ``ratio`` is ``p50(A) / p50(B)``.

    ``spread`` and ``noisy`` are about the ratio across rounds: the sides may each move with
    the machine's load (their own summaries say so) while their ratio holds.
    """

    a: Summary
    b: Summary
    ratio: float
    """median(A) / median(B) over every pair."""
    ratio_p99: float
    pair_ratio: float
    """The median of the per-pair ratios A_i / B_i (robust to a slow phase of the machine)."""
    round_ratios: tuple[float, ...]
    spread: float
    noisy: bool
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.as_dict(), "b": self.b.as_dict(), "ratio": _rounded(self.ratio),
            "ratio_p99": _rounded(self.ratio_p99), "pair_ratio": _rounded(self.pair_ratio),
            "round_ratios": [_rounded(r) for r in self.round_ratios], "spread": _rounded(self.spread),
            "noisy": self.noisy, "notes": self.notes,
        }


def compare_rounds(a_rounds: Sequence[Sequence[float]], b_rounds: Sequence[Sequence[float]]) -> Comparison:
    """The :class:`Comparison` of paired samples (``a_rounds[r][i]`` ran next to ``b_rounds[r][i]``).

    Example::

        compare_rounds([[2.0, 4.0]], [[1.0, 2.0]]).ratio  # 2.0
    """
    if len(a_rounds) != len(b_rounds) or any(len(x) != len(y) for x, y in zip(a_rounds, b_rounds, strict=True)):
        raise ValueError("A and B must have the same rounds and pairs")
    a, b = summarize(a_rounds), summarize(b_rounds)
    pairs = [ratio(x, y) for xs, ys in zip(a_rounds, b_rounds, strict=True) for x, y in zip(xs, ys, strict=True)]
    per_round = tuple(ratio(statistics.median(xs), statistics.median(ys))
                      for xs, ys in zip(a_rounds, b_rounds, strict=True))
    noise = spread(per_round)
    return Comparison(a=a, b=b, ratio=ratio(a.p50, b.p50), ratio_p99=ratio(a.p99, b.p99),
                      pair_ratio=statistics.median(pairs), round_ratios=per_round, spread=noise,
                      noisy=noise > NOISY_SPREAD)


def compare(a: Operation, b: Operation, *, n: int, repetitions: int = 3, warmup: int = 10) -> Comparison:
    """Time A and B alternately (A B, B A, A B, ...), ``n`` pairs per round, after a warm-up of each."""
    counter = 0
    for _ in range(warmup):
        a(counter)
        b(counter)
        counter += 1
    a_rounds: list[list[float]] = []
    b_rounds: list[list[float]] = []
    for _ in range(repetitions):
        a_times: list[float] = []
        b_times: list[float] = []
        for pair in range(n):
            if pair % 2 == 0:
                a_times.append(timed(a, counter))
                b_times.append(timed(b, counter))
            else:
                b_times.append(timed(b, counter))
                a_times.append(timed(a, counter))
            counter += 1
        a_rounds.append(a_times)
        b_rounds.append(b_times)
    return compare_rounds(a_rounds, b_rounds)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isinf(value) or math.isnan(value) else round(value, 3)
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value
