"""Results: rich tables on stdout, ``bench/results.json``, machine info and AWS projections.

The AWS projection of an operation is the sum of assumed in-region latencies of the calls it
makes (:data:`AWS_LATENCY_MS`, low and high). These are assumptions, not measurements; they
leave out API Gateway and Lambda overhead and the service's own compute.

Example::

    write_json(results, Path("bench/results.json"))
    print_tables(results, Console())
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

AWS_LATENCY_MS: dict[str, tuple[float, float]] = {
    "dynamodb.GetItem": (3, 5),
    "dynamodb.PutItem": (4, 8),
    "dynamodb.Query": (4, 8),
    "dynamodb.TransactWriteItems": (8, 12),
    "dynamodb.UpdateItem": (4, 8),
    "kms.GenerateDataKey": (5, 10),
    "kms.Decrypt": (5, 10),
    "kms.Encrypt": (5, 10),
}
"""Assumed in-region latency (low, high) of one call, in ms. Unlisted calls count (5, 10)."""

SPEC_MS: dict[str, tuple[int, int]] = {"store": (20, 100), "retrieve": (10, 50), "rotate": (100, 500),
                                       "audit query": (50, 200)}
"""The product spec's promised p50/p99 per operation."""

PACKAGES = ("boto3", "botocore", "moto", "chalice", "credstash", "cryptography", "httpx", "pydantic", "werkzeug",
            "rich")


def aws_projection(calls: list[str]) -> tuple[float, float]:
    """(low, high) ms that ``calls`` would take one after another on AWS, by the assumptions above.

    Example::

        aws_projection(["dynamodb.GetItem", "dynamodb.PutItem"])  # (7, 13)
    """
    low = sum(AWS_LATENCY_MS.get(call, (5, 10))[0] for call in calls)
    high = sum(AWS_LATENCY_MS.get(call, (5, 10))[1] for call in calls)
    return low, high


def compact_calls(calls: list[str]) -> str:
    """Call names without their service, repeats folded: ``"GetItem, Query x3, PutItem"``.

    Example::

        compact_calls(["dynamodb.Query", "dynamodb.Query", "dynamodb.PutItem"])  # "Query x2, PutItem"
    """
    parts: list[str] = []
    previous, count = "", 0
    for call in [*calls, ""]:
        name = call.split(".", 1)[-1]
        if name == previous:
            count += 1
            continue
        if previous:
            parts.append(previous if count == 1 else f"{previous} x{count}")
        previous, count = name, 1
    return ", ".join(parts)


def machine_info() -> dict[str, Any]:
    """CPU count, load, Python and platform of this run."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {"cpu_count": os.cpu_count(), "python": sys.version.split()[0],
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "machine": platform.machine(), "load_average": [round(x, 2) for x in load]}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(root: Path) -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def json_safe(value: Any) -> Any:
    """Replace NaN/inf (not JSON) by None, recursively."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(results), indent=2, allow_nan=False) + "\n")


# --- tables -----------------------------------------------------------------------------------

def _ms(value: Any) -> str:
    if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _x(value: Any) -> str:
    if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
        return "-"
    return f"{value:.2f}x"


def _spread(data: dict[str, Any]) -> str:
    text = f"{data['spread'] * 100:.0f}%"
    return f"[yellow]{text} noisy[/yellow]" if data.get("noisy") else text


def latency_table(rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="Latency through the HTTP API (ms; one keep-alive client unless noted)")
    for column in ("operation", "n", "p50", "p95", "p99", "max", "ops/s", "spread", "spec p50/p99", "AWS calls"):
        table.add_column(column, justify="left" if column in ("operation", "spec p50/p99") else "right")
    for name, row in rows.items():
        spec = SPEC_MS.get(row.get("spec", ""))
        spec_text = f"{spec[0]}/{spec[1]}" if spec else ""
        if not row.get("available", True):
            table.add_row(name, "", "", "", "", "", "", "", spec_text, f"[dim]{row['reason']}[/dim]")
            continue
        s = row["summary"]
        table.add_row(name, str(s["n"]), _ms(s["p50"]), _ms(s["p95"]), _ms(s["p99"]), _ms(s["max"]),
                      f"{s['throughput']:.0f}", _spread(s), spec_text, str(row.get("calls", "")))
    return table


def comparison_table(title: str, rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in ("A vs B", "A p50", "B p50", "A p99", "B p99", "ratio p50", "pair ratio", "rounds", "spread"):
        table.add_column(column, justify="left" if column == "A vs B" else "right")
    for name, row in rows.items():
        if not row.get("available", True):
            table.add_row(name, "", "", "", "", "", "", "", f"[dim]{row['reason']}[/dim]")
            continue
        rounds = " ".join(f"{r:.2f}" for r in row["round_ratios"])
        table.add_row(name, _ms(row["a"]["p50"]), _ms(row["b"]["p50"]), _ms(row["a"]["p99"]), _ms(row["b"]["p99"]),
                      _x(row["ratio"]), _x(row["pair_ratio"]), rounds, _spread(row))
    return table


def round_trip_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="AWS round trips per operation (botocore before-call; median of runs)")
    for column in ("operation", "calls", "budget", "which", "on AWS (est. ms)", "also seen"):
        table.add_column(column, justify="right" if column in ("calls", "budget") else "left")
    for row in rows:
        if not row.get("available", True):
            table.add_row(row["operation"], "", "", f"[dim]{row['reason']}[/dim]", "", "")
            continue
        low, high = aws_projection(row["calls"])
        budget = "" if row["budget"] is None else str(row["budget"])
        calls = str(row["median"]) if row["within_budget"] else f"[red]{row['median']} OVER[/red]"
        table.add_row(row["operation"], calls, budget, compact_calls(row["calls"]),
                      f"{low:.0f}-{high:.0f}", "; ".join(row["extra"]) or row.get("note", ""))
    return table


def scaling_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Scaling: small vs large table (ratio = large p50 / small p50; B = the bare call, "
                        "measured alternately; normalized = ratio of A/B at large to A/B at small)")
    for column in ("operation", "small", "large", "A small", "A large", "A ratio", "B small", "B large", "B ratio",
                   "normalized", "items read", "note"):
        table.add_column(column, justify="left" if column in ("operation", "note") else "right")
    for row in rows:
        if not row.get("available", True):
            table.add_row(row["operation"], *[""] * 10, f"[dim]{row['reason']}[/dim]")
            continue
        table.add_row(row["operation"], f"{row['small_count']:,}", f"{row['large_count']:,}",
                      _ms(row["small"]["p50"]), _ms(row["large"]["p50"]), _x(row["ratio"]),
                      _ms(row["floor_small"]["p50"]), _ms(row["floor_large"]["p50"]), _x(row["floor_ratio"]),
                      _x(row["normalized"]), row.get("items_read", ""), row.get("note", ""))
    return table


def cold_start_table(data: dict[str, Any]) -> Table:
    table = Table(title="Cold start: import in a fresh interpreter (median of runs)")
    for column in ("import", "median ms", "runs", "modules"):
        table.add_column(column, justify="left" if column == "import" else "right")
    app, base = data["app_import_ms"], data["chalice_boto3_import_ms"]
    table.add_row("import app", _ms(app["median"]), " ".join(_ms(v) for v in app["runs"]), str(data["app_modules"]))
    table.add_row("import chalice, boto3", _ms(base["median"]), " ".join(_ms(v) for v in base["runs"]),
                  str(data["chalice_boto3_modules"]))
    table.add_row("[bold]ratio[/bold]", _x(data["ratio"]), "", "")
    return table


def print_tables(results: dict[str, Any], console: Console) -> None:
    """Every table of ``results`` (as written to results.json), then the notes and the verdict."""
    console.print(latency_table(results["latency"]))
    console.print(comparison_table("Peer: ours (A) vs credstash (B), alternating pairs", results["peers"]))
    console.print(comparison_table("Floor: A vs a bare DynamoDB GetItem (B), alternating pairs", results["floor"]))
    console.print(round_trip_table(results["round_trips"]))
    if results.get("scaling"):
        console.print(scaling_table(results["scaling"]))
    if results.get("cold_start"):
        console.print(cold_start_table(results["cold_start"]))
    for note in results.get("notes", []):
        console.print(f"- {note}", highlight=False)
    verdict = "[green]PASS[/green]" if not results["failures"] else "[red]FAIL[/red]"
    console.print(f"{verdict}  total {results['total_seconds']:.0f} s"
                  + "".join(f"\n  [red]x[/red] {failure}" for failure in results["failures"]))


# --- markdown (for BENCHMARKS.md) -------------------------------------------------------------

def markdown(results: dict[str, Any]) -> str:
    """The figures of ``results`` as markdown tables (``python -m bench.report bench/results.json``)."""
    lines = [f"Run of {results['timestamp']} (commit {results.get('commit')}), {results['total_seconds']:.0f} s; "
             f"{results['machine']['cpu_count']} CPUs, Python {results['machine']['python']}, load average "
             f"{results['machine']['load_average'][0]} at start, "
             f"{results['machine'].get('load_average_end', ['?'])[0]} at the end.", ""]
    lines += ["| operation | n | p50 | p95 | p99 | ops/s | spread | spec p50/p99 | AWS calls |",
              "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for name, row in results["latency"].items():
        spec = SPEC_MS.get(row.get("spec", ""))
        spec_text = f"{spec[0]}/{spec[1]}" if spec else ""
        if not row.get("available", True):
            lines.append(f"| {name} | | | | | | | {spec_text} | {row['reason']} |")
            continue
        s = row["summary"]
        noisy = " noisy" if s["noisy"] else ""
        lines.append(f"| {name} | {s['n']} | {_ms(s['p50'])} | {_ms(s['p95'])} | {_ms(s['p99'])} | "
                     f"{s['throughput']:.0f} | {s['spread'] * 100:.0f}%{noisy} | {spec_text} | "
                     f"{row.get('calls', '')} |")
    for title, key in (("A vs B (peer: credstash)", "peers"), ("A vs B (floor: the bare calls)", "floor")):
        lines += ["", f"| {title} | A p50 | B p50 | ratio p50 | pair ratio | rounds | spread |",
                  "|---|---:|---:|---:|---:|---|---:|"]
        for name, row in results[key].items():
            rounds = " ".join(f"{r:.2f}" for r in row["round_ratios"])
            noisy = " noisy" if row["noisy"] else ""
            lines.append(f"| {name} | {_ms(row['a']['p50'])} | {_ms(row['b']['p50'])} | {_x(row['ratio'])} | "
                         f"{_x(row['pair_ratio'])} | {rounds} | {row['spread'] * 100:.0f}%{noisy} |")
    lines += ["", "| operation | AWS calls | budget | which | on AWS, est. ms |", "|---|---:|---:|---|---:|"]
    for row in results["round_trips"]:
        if not row.get("available", True):
            lines.append(f"| {row['operation']} | | | {row['reason']} | |")
            continue
        low, high = aws_projection(row["calls"])
        budget = "" if row["budget"] is None else str(row["budget"])
        which = compact_calls(row["calls"])
        lines.append(f"| {row['operation']} | {row['median']} | {budget} | {which} | {low:.0f}-{high:.0f} |")
    if results.get("scaling"):
        lines += ["", "| scaling (A = ours, B = the bare call) | small | large | A small | A large | A ratio | "
                      "B ratio | normalized | items read |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in results["scaling"]:
            if not row.get("available", True):
                lines.append(f"| {row['operation']} | | | | | | | | {row['reason']} |")
                continue
            lines.append(f"| {row['operation']} | {row['small_count']:,} | {row['large_count']:,} | "
                         f"{_ms(row['small']['p50'])} | {_ms(row['large']['p50'])} | {_x(row['ratio'])} | "
                         f"{_x(row['floor_ratio'])} | {_x(row['normalized'])} | {row.get('items_read', '')} |")
    cold = results.get("cold_start")
    if cold:
        lines += ["", "| cold start | median ms | runs |", "|---|---:|---|",
                  f"| import app | {_ms(cold['app_import_ms']['median'])} | "
                  f"{' '.join(_ms(v) for v in cold['app_import_ms']['runs'])} |",
                  f"| import chalice, boto3 | {_ms(cold['chalice_boto3_import_ms']['median'])} | "
                  f"{' '.join(_ms(v) for v in cold['chalice_boto3_import_ms']['runs'])} |",
                  f"| ratio | {_x(cold['ratio'])} | |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results.json")
    print(markdown(json.loads(source.read_text())), end="")
