"""The report as JSON: the wire model, camelCase, ``null`` fields left out.

Example::

    Path("report.json").write_bytes(to_json(report))
"""

from __future__ import annotations

import json

from chalicelib.compliance.report import ComplianceReport


def to_json(report: ComplianceReport, *, indent: int | None = 2) -> bytes:
    return json.dumps(report.wire(), indent=indent, ensure_ascii=False).encode("utf-8")
