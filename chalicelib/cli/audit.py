"""``v-secure audit ...`` and ``v-secure logs tail``: read, hash, seal and verify the audit log.

``audit verify`` runs on this side, like ``aws cloudtrail validate-logs``: it reads digests and
segments from the audit bucket and events from the audit table with this machine's AWS access
(``V_SECURE_AWS_ENDPOINT`` etc.), and checks signatures with the signing key's *public* key —
from KMS ``GetPublicKey`` once, or from ``--public-key-file`` (no KMS access needed). It exits 1
when it finds a problem. ``--server`` asks the API to verify instead.

Example::

    v-secure audit trail --secret-id prod/db --start 2026-01-01 --end 2026-01-31 --action retrieve
    v-secure audit hash --value "$CANDIDATE"          # compare with the events' hmac-sha256:...
    v-secure audit public-key > audit-signing.pem
    v-secure audit verify --public-key-file audit-signing.pem --start 2026-01-01
    v-secure logs tail --filter rotation --follow
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from chalicelib.audit.query import AuditEntry
from chalicelib.cli.context import emit, sdk, state


@click.group("audit", help="Read, hash, seal and verify the audit log.")
def audit() -> None:
    pass


@audit.command("trail")
@click.option("--secret-id", help="Only this secret's events (needs audit:read on it).")
@click.option("--start", "start_date", metavar="DATE", help="From this date or ISO time (inclusive).")
@click.option("--end", "end_date", metavar="DATE", help="Up to this date or ISO time (inclusive).")
@click.option("--action", help="An action, a comma-separated list, or an alias (retrieve, rotation, access...).")
@click.option("--actor", help="Only events of this principal.")
@click.option("--status", type=click.Choice(["success", "denied", "failure"]))
@click.option("--limit", type=click.IntRange(1, 1000), help="Entries per page (default 50).")
@click.option("--next-token", help="Continue after a previous page.")
@click.option("--all", "all_pages", is_flag=True, help="Follow nextToken through every page.")
@click.pass_context
def trail(ctx: click.Context, secret_id: str | None, start_date: str | None, end_date: str | None,
          action: str | None, actor: str | None, status: str | None, limit: int | None, next_token: str | None,
          all_pages: bool) -> None:
    """The audit trail, newest first."""
    client = sdk(ctx)
    if all_pages:
        entries = list(client.iter_audit(secret_id, start_date, end_date, action, actor, status, limit))
        emit(ctx, {"secretId": secret_id, "entries": entries})
        return
    emit(ctx, client.audit_trail(secret_id, start_date, end_date, action, actor, status, limit, next_token))


@audit.command("hash")
@click.option("--value", help="The value to hash. Visible in shell history: prefer --value-stdin.")
@click.option("--value-stdin", is_flag=True, help="Read the value from stdin (one trailing newline removed).")
@click.pass_context
def hash_value(ctx: click.Context, value: str | None, value_stdin: bool) -> None:
    """The HMAC-SHA256 of a value, exactly as audit events record it."""
    if (value is None) == (not value_stdin):
        raise click.UsageError("give exactly one of --value or --value-stdin")
    if value is None:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    hashed = sdk(ctx).audit_hash(value)
    emit(ctx, {"hash": hashed}, text=hashed)


@audit.command("seal")
@click.pass_context
def seal(ctx: click.Context) -> None:
    """Seal closed segments to S3 Object Lock and sign a digest now (global admin)."""
    emit(ctx, sdk(ctx).audit_seal())


@audit.command("public-key")
@click.pass_context
def public_key(ctx: click.Context) -> None:
    """The digest signing key's public key (PEM), to pin for offline verification."""
    pem = sdk(ctx).audit_public_key()
    emit(ctx, {"publicKey": pem}, text=pem)


@audit.command("verify")
@click.option("--start", "start_date", metavar="DATE", help="Only digests from this date or ISO time.")
@click.option("--end", "end_date", metavar="DATE", help="Only digests up to this date or ISO time.")
@click.option("--public-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The signing key's public key (PEM or DER): no KMS access needed.")
@click.option("--server", is_flag=True, help="Ask the API to verify instead of checking here.")
@click.option("--audit-table", help="The audit table (default: V_SECURE_AUDIT_TABLE).")
@click.option("--state-table", help="The table holding the digest-chain head (default: V_SECURE_SECRETS_TABLE).")
@click.option("--bucket", help="The audit bucket (default: V_SECURE_AUDIT_BUCKET).")
@click.pass_context
def verify(ctx: click.Context, start_date: str | None, end_date: str | None, public_key_file: Path | None,
           server: bool, audit_table: str | None, state_table: str | None, bucket: str | None) -> None:
    """Check digest signatures and chain, segment hashes, stream chains and gaps, and sealing."""
    if server:
        answer = sdk(ctx).audit_verify(start_date, end_date)
        _report(ctx, answer.model_dump(mode="json"), answer.problems, answer.summary)
        return
    from chalicelib.audit.query import parse_time

    start = parse_time(start_date, "--start") if start_date else None
    end = parse_time(end_date, "--end", end_of_day=True) if end_date else None
    report = _verify_here(public_key_file, audit_table, state_table, bucket, start, end)
    _report(ctx, report.as_dict(), [p.message for p in report.problems], report.summary())


def _verify_here(public_key_file: Path | None, audit_table: str | None, state_table: str | None,
                 bucket: str | None, start: datetime | None, end: datetime | None) -> Any:
    from dataclasses import replace

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from chalicelib.audit.sealer import AuditLocation
    from chalicelib.audit.verify import build_verifier, load_public_key

    location = AuditLocation.from_settings()
    location = replace(location, audit_table=audit_table or location.audit_table,
                       state_table=state_table or location.state_table, bucket=bucket or location.bucket)
    key = load_public_key(public_key_file.read_bytes()) if public_key_file else None
    verifier = build_verifier(location=location, public_key=key)
    console = Console(stderr=True)
    with Progress(TextColumn("verifying segments"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("segments", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return verifier.verify(start=start, end=end, progress=advance)


def _report(ctx: click.Context, data: dict[str, Any], problems: list[str], summary: str) -> None:
    lines = [*problems, summary]
    emit(ctx, data, text="\n".join(lines))
    if problems:
        ctx.exit(1)


# --- logs tail --------------------------------------------------------------------------------


@click.group("logs", help="Follow the audit log.")
def logs() -> None:
    pass


@logs.command("tail")
@click.option("--filter", "filter_", default=None, metavar="WHAT",
              help="Actions: a name (secret_read), a list, or a group (rotation, access, security, audit).")
@click.option("--secret-id", help="Only this secret's events.")
@click.option("--since", default="1h", show_default=True, help="How far back to start (30m, 1h, 2d).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="At most this many past events.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they come.")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=2.0, show_default=True,
              help="Seconds between polls with --follow.")
@click.option("--polls", type=click.IntRange(min=1), hidden=True, help="Stop after this many polls (tests).")
@click.pass_context
def tail(ctx: click.Context, filter_: str | None, secret_id: str | None, since: str, limit: int, follow: bool,
         interval: float, polls: int | None) -> None:
    """The latest audit events, oldest first; with --follow, new ones as they arrive."""
    from chalicelib.config import parse_duration

    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    client = sdk(ctx)
    start = datetime.now(UTC) - timedelta(seconds=window)
    seen: set[str] = set()
    page = client.audit_trail(secret_id, start, None, filter_, None, None, limit)
    newest = _print_new(ctx, page.entries, seen, start)
    done = 0
    while follow and (polls is None or done < polls):
        time.sleep(interval)
        done += 1
        entries = list(client.iter_audit(secret_id, newest, None, filter_, None, None, 200))
        newest = _print_new(ctx, entries, seen, newest)


def _print_new(ctx: click.Context, entries: list[AuditEntry], seen: set[str], newest: datetime) -> datetime:
    """Print entries not printed yet, oldest first; return the newest timestamp seen."""
    fresh = [entry for entry in reversed(entries) if entry.event_id not in seen]
    for entry in fresh:
        seen.add(entry.event_id)
        _print_entry(ctx, entry)
        moment = datetime.fromisoformat(entry.timestamp.replace("Z", "+00:00"))
        newest = max(newest, moment)
    return newest


def _print_entry(ctx: click.Context, entry: AuditEntry) -> None:
    if state(ctx).output == "json":
        import json

        click.echo(json.dumps(entry.wire(), separators=(",", ":")))
        return
    parts = [entry.timestamp, entry.action, entry.status, entry.actor, entry.secret_id or "-"]
    if entry.version is not None:
        parts.append(f"v{entry.version}")
    if entry.deny_reason:
        parts.append(f"({entry.deny_reason})")
    elif entry.authorized_by:
        parts.append(f"(by {entry.authorized_by})")
    click.echo(" ".join(parts))


def register(cli: click.Group) -> None:
    cli.add_command(audit)
    cli.add_command(logs)
