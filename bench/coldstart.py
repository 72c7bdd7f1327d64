"""Cold start: how long a fresh interpreter takes to ``import app``, against chalice + boto3 alone.

A Lambda cold start imports the handler module (``app``) before the first request. Each run
is a new interpreter (``python -c``) that times its own import with ``perf_counter`` and
reports which heavy modules the import pulled in; runs of the two commands alternate and the
medians are compared. One more run with ``-X importtime`` names who imports each heavy
module that was found, and what it cost.

DESIGN.md: heavy imports (PDF, database drivers, PKCS#11) are lazy. Those and a few other big
optional packages must not be loaded by ``import app``; :data:`WATCHED` lists the ones that
only earn a warning.

Example::

    result = cold_start(repo_root, runs=5)
    print(result.ratio, result.heavy_loaded)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEAVY = ("reportlab", "psycopg", "pymysql", "pkcs11", "qrcode", "PIL", "moto")
"""Must not be imported at start (PDF reports, database drivers, PKCS#11, QR images, moto)."""
WATCHED = ("jsonschema",)
"""Reported with its import cost, but not a failure (it validates configuration values)."""

_PROBE = """
import json, sys, time
start = time.perf_counter()
{imports}
elapsed = time.perf_counter() - start
print(json.dumps({{"ms": elapsed * 1000, "loaded": [m for m in {names!r} if m in sys.modules],
                  "modules": len(sys.modules)}}))
"""


@dataclass(frozen=True)
class ImportCost:
    """A module found after ``import app``: its cumulative import time and who imported it."""

    module: str
    ms: float
    chain: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"module": self.module, "ms": round(self.ms, 1), "imported_by": list(self.chain)}


@dataclass(frozen=True)
class ColdStart:
    app_ms: tuple[float, ...]
    baseline_ms: tuple[float, ...]
    app_modules: int
    baseline_modules: int
    heavy_loaded: tuple[str, ...]
    watched_loaded: tuple[str, ...]
    costs: tuple[ImportCost, ...] = field(default_factory=tuple)

    @property
    def app_median(self) -> float:
        return statistics.median(self.app_ms)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline_ms)

    @property
    def ratio(self) -> float:
        return self.app_median / self.baseline_median if self.baseline_median else float("inf")

    @property
    def ok(self) -> bool:
        return not self.heavy_loaded

    def as_dict(self) -> dict[str, Any]:
        return {
            "app_import_ms": {"median": round(self.app_median, 1), "runs": [round(v, 1) for v in self.app_ms]},
            "chalice_boto3_import_ms": {"median": round(self.baseline_median, 1),
                                        "runs": [round(v, 1) for v in self.baseline_ms]},
            "ratio": round(self.ratio, 2), "app_modules": self.app_modules,
            "chalice_boto3_modules": self.baseline_modules, "heavy_loaded": list(self.heavy_loaded),
            "watched_loaded": list(self.watched_loaded), "costs": [c.as_dict() for c in self.costs],
            "ok": self.ok,
        }


def probe(root: Path, imports: str, *, python: str = sys.executable) -> dict[str, Any]:
    """Run one fresh interpreter in ``root`` that times ``imports``; its JSON report."""
    code = _PROBE.format(imports=imports, names=HEAVY + WATCHED)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([python, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def import_costs(root: Path, modules: tuple[str, ...], *, python: str = sys.executable) -> tuple[ImportCost, ...]:
    """Each of ``modules`` as ``python -X importtime -c 'import app'`` saw it."""
    if not modules:
        return ()
    done = subprocess.run([python, "-X", "importtime", "-c", "import app"], cwd=root,
                          capture_output=True, text=True, timeout=120, check=True)
    return tuple(cost for name in modules if (cost := parse_importtime(done.stderr, name)) is not None)


def parse_importtime(text: str, module: str) -> ImportCost | None:
    """``module``'s cumulative time (ms) and its chain of importers in ``-X importtime`` output.

    Children are printed before their parent, one indentation level deeper, so the importer
    of a line is the first later line with less indentation.

    Example::

        parse_importtime(stderr, "jsonschema").chain  # ("chalicelib.secret_types.configuration", ...)
    """
    rows: list[tuple[int, str, float]] = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header line
        depth = len(name) - len(name.lstrip(" "))
        rows.append((depth, name.strip(), int(cumulative) / 1000))
    for position, (depth, name, ms) in enumerate(rows):
        if name != module:
            continue
        chain: list[str] = []
        level = depth
        for later_depth, later_name, _ in rows[position + 1:]:
            if later_depth < level:
                chain.append(later_name)
                level = later_depth
        return ImportCost(module=module, ms=ms, chain=tuple(chain))
    return None


def cold_start(root: Path, *, runs: int = 5, python: str = sys.executable) -> ColdStart:
    """Alternate ``import app`` and ``import chalice, boto3`` in fresh interpreters, ``runs`` each."""
    app_runs: list[dict[str, Any]] = []
    base_runs: list[dict[str, Any]] = []
    probe(root, "import app", python=python)  # warm the OS file cache once, uncounted
    for index in range(runs):
        order = (("app", "import app"), ("base", "import chalice, boto3"))
        for kind, imports in order if index % 2 == 0 else tuple(reversed(order)):
            (app_runs if kind == "app" else base_runs).append(probe(root, imports, python=python))
    loaded = set(app_runs[-1]["loaded"])
    heavy = tuple(m for m in HEAVY if m in loaded)
    watched = tuple(m for m in WATCHED if m in loaded)
    return ColdStart(app_ms=tuple(r["ms"] for r in app_runs), baseline_ms=tuple(r["ms"] for r in base_runs),
                     app_modules=int(app_runs[-1]["modules"]), baseline_modules=int(base_runs[-1]["modules"]),
                     heavy_loaded=heavy, watched_loaded=watched,
                     costs=import_costs(root, heavy + watched, python=python))
