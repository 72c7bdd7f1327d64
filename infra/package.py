"""Build the app stack: ``chalice package`` merged with ``infra/app.yaml``, written as JSON.

``make package STAGE=prod`` runs this. It stages the Lambda sources (``app.py``,
``chalicelib/``, ``.chalice/``) with a ``requirements.txt`` of the runtime dependencies from
``pyproject.toml``, runs ``chalice package --merge-template infra/app.yaml`` there, and converts
the YAML chalice writes to ``sam.json``: PyYAML writes shared objects as YAML aliases, which
CloudFormation rejects, and JSON has none.

Example::

    python infra/package.py --stage prod --out build/package/prod
    python infra/package.py --stage prod --out build/package/src-only --no-deps   # sources only (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
MERGE_TEMPLATE = REPO / "infra" / "app.yaml"
# Packaged by chalice itself (its runtime) or only used by the CLI and the dev stack.
_NOT_IN_LAMBDA = {"chalice", "click", "rich", "qrcode"}


def runtime_requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The pinned runtime dependencies the Lambda functions need, from ``pyproject.toml``.

    Example::

        runtime_requirements()  # ["boto3==1.44.8", "botocore==1.44.8", ...]
    """
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in dependencies if d.split("==")[0].split("[")[0].strip().lower() not in _NOT_IN_LAMBDA]


def stage_sources(destination: Path, *, with_requirements: bool) -> Path:
    """Copy what the Lambda package is built from into ``destination``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "deployments", "venv")
    shutil.copy2(REPO / "app.py", destination / "app.py")
    shutil.copytree(REPO / "chalicelib", destination / "chalicelib", ignore=ignore)
    shutil.copytree(REPO / ".chalice", destination / ".chalice", ignore=ignore)
    if with_requirements:
        (destination / "requirements.txt").write_text("\n".join(runtime_requirements()) + "\n")
    return destination


def package(stage: str, out: Path, *, with_requirements: bool = True) -> Path:
    """Write ``out/deployment.zip`` and ``out/sam.json`` for ``stage``; return the template path.

    Example::

        template = package("prod", Path("build/package/prod"))
    """
    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    with tempfile.TemporaryDirectory(prefix="v-secure-package-") as staging:
        source = stage_sources(Path(staging), with_requirements=with_requirements)
        subprocess.run(  # noqa: S603 - our interpreter running chalice's CLI
            [sys.executable, "-c", "import sys; from chalice.cli import main; sys.exit(main())",
             "package", "--stage", stage, "--merge-template", str(MERGE_TEMPLATE), str(out)],
            cwd=source, env=env, check=True)
    yaml_template = out / "sam.yaml"
    template = out / "sam.json"
    template.write_text(json.dumps(yaml.safe_load(yaml_template.read_text()), indent=1) + "\n")
    yaml_template.unlink()
    return template


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="prod", help="chalice stage (.chalice/config.json)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (replaced)")
    parser.add_argument("--no-deps", action="store_true",
                        help="package the sources only (no requirements.txt; no download)")
    args = parser.parse_args(argv)
    print(package(args.stage, args.out, with_requirements=not args.no_deps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
