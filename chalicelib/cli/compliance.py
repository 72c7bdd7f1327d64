"""``v-secure compliance report``: a compliance report from the API, as JSON, CSV or PDF.

Example::

    v-secure compliance report --standard PCI-DSS --period monthly
    v-secure compliance report --standard HIPAA --period quarterly --format pdf --out report.pdf
    v-secure compliance report --standard GDPR --period custom --start 2026-01-01 --end 2026-03-31 \\
        --format csv --out gdpr.csv --mask-ids
    v-secure compliance report --standard SOX --fail-on-violation     # exit 1 unless compliant
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from chalicelib.cli.context import emit, sdk


@click.group("compliance", help="Compliance reports (PCI-DSS, HIPAA, SOX, GDPR).")
def compliance() -> None:
    pass


@compliance.command("report")
@click.option("--standard", required=True, help="PCI-DSS, HIPAA, SOX or GDPR.")
@click.option("--period", type=click.Choice(["monthly", "quarterly", "yearly", "custom"]), default="monthly",
              show_default=True, help="A calendar period (the one holding --start, default now), or custom.")
@click.option("--start", metavar="DATE", help="Custom: first day (or ISO time); otherwise picks the period.")
@click.option("--end", metavar="DATE", help="Custom: last day (or ISO time).")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "pdf"]), default="json", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file ('-' for stdout). Required for pdf.")
@click.option("--include-secrets", is_flag=True, help="Add the per-secret inventory (never values).")
@click.option("--mask-ids", is_flag=True, help="Replace secret ids with keyed hashes.")
@click.option("--prefix", help="Only secrets whose id starts with this.")
@click.option("--fail-on-violation", is_flag=True, help="Exit 1 when the report is not compliant (json only).")
@click.pass_context
def report(ctx: click.Context, standard: str, period: str, start: str | None, end: str | None, fmt: str,
           out: Path | None, include_secrets: bool, mask_ids: bool, prefix: str | None,
           fail_on_violation: bool) -> None:
    """Run every control of the standard over the period and print or save the report."""
    if fmt == "pdf" and out is None:
        raise click.UsageError("--format pdf needs --out FILE (or --out - for stdout)")
    if fail_on_violation and fmt != "json":
        raise click.UsageError("--fail-on-violation reads the JSON report; use it with --format json")
    client = sdk(ctx)
    if fmt == "json":
        answer = client.compliance_report(standard, period, start, end, include_secrets, mask_ids, prefix)
        if out is not None and str(out) != "-":
            from chalicelib.compliance.reporters.json_reporter import to_json

            out.write_bytes(to_json(answer))
            click.echo(f"{answer.standard} {answer.period}: {answer.status.value} -> {out}", err=True)
        else:
            emit(ctx, answer)
        if fail_on_violation and answer.status.value != "compliant":
            ctx.exit(1)
        return
    body = client.export_compliance_report(standard, fmt, period, start, end, include_secrets, mask_ids, prefix)
    if out is None or str(out) == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return
    out.write_bytes(body)
    click.echo(f"wrote {len(body)} bytes to {out}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(compliance)
