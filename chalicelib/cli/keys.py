"""``v-secure keys ...``: master-key status, rotation and rewrap (global admin).

Example::

    v-secure keys status
    v-secure keys rotate                      # KMS: enable rotation; PKCS#11/passphrase: new version
    v-secure keys rewrap --from kms --to pkcs11
    v-secure keys rewrap --job-id rw_0123456789abcdef   # go on after an interruption
"""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chalicelib.cli.context import emit, sdk
from chalicelib.vault.keys.models import KeyStatus, RewrapProgress


@click.group("keys", help="Master keys: how many envelopes each wraps, rotation, rewrap.")
def keys() -> None:
    pass


@keys.command("status", help="How many envelopes (versions, META copies, MFA seeds) each master key wraps.")
@click.option("--page-size", type=click.IntRange(1, 1000), default=None, help="Secrets per API call.")
@click.pass_context
def status(ctx: click.Context, page_size: int | None) -> None:
    emit(ctx, sdk(ctx).key_status_all(limit=page_size))


@keys.command("rotate", help="Rotate the writer's master key: KMS automatic/on-demand rotation, or a new "
                             "PKCS#11 / passphrase key version (older versions stay readable).")
@click.option("--on-demand", is_flag=True, help="KMS: also rotate the key material now.")
@click.option("--rotation-period-days", type=click.IntRange(90, 2560), default=None,
              help="KMS: automatic rotation period.")
@click.pass_context
def rotate(ctx: click.Context, on_demand: bool, rotation_period_days: int | None) -> None:
    emit(ctx, sdk(ctx).rotate_key(on_demand=on_demand, rotation_period_days=rotation_period_days))


@keys.command("rewrap", help="Re-wrap data keys under another master key without decrypting any secret "
                             "value. Resumable: rerun with --job-id after an interruption.")
@click.option("--from", "from_key", default=None,
              help="Only envelopes under this key: a kid, a provider (kms, pkcs11, passphrase) or a KMS key.")
@click.option("--to", "to_key", default=None,
              help="Target: a provider (its current key), a kid or kms:<key id/alias/ARN>. Default: the writer.")
@click.option("--include-target", is_flag=True,
              help="Also re-wrap envelopes already under the target (KMS: newest key material).")
@click.option("--job-id", default=None, help="Go on with this job (printed by an earlier run).")
@click.option("--batch-size", type=click.IntRange(1, 500), default=None, help="Secrets per batch.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: on a terminal).")
@click.pass_context
def rewrap(ctx: click.Context, from_key: str | None, to_key: str | None, include_target: bool,
           job_id: str | None, batch_size: int | None, progress: bool | None) -> None:
    client = sdk(ctx)
    show = sys.stderr.isatty() if progress is None else progress
    usage = client.key_status_all() if show else None
    console = Console(stderr=True, force_terminal=show or None)
    bar = Progress(TextColumn("rewrap {task.fields[job]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("envelopes"), TimeElapsedColumn(), console=console, disable=not show)
    last: RewrapProgress | None = None
    with bar:
        task = bar.add_task("rewrap", total=None, job="")
        try:
            for last in client.iter_rewrap(from_key, to_key, include_target, batch_size, job_id):
                total = _total(usage, last) if usage is not None else None
                bar.update(task, job=last.job_id, completed=last.rewrapped, total=total)
        except KeyboardInterrupt:
            if last is not None:
                click.echo(f"interrupted; go on with: v-secure keys rewrap --job-id {last.job_id}", err=True)
            raise
    if last is not None:
        emit(ctx, last)


def _total(usage: KeyStatus, progress: RewrapProgress) -> int:
    """Envelopes the job will move: those under a selected kid (the target only with --include-target)."""
    selected = 0
    for key in usage.keys:
        if key.kid == progress.target and not progress.include_target:
            continue
        source = progress.source
        if source is None or key.kid == source or key.provider == source:
            selected += key.envelopes
    return max(selected, progress.rewrapped)


def register(cli: click.Group) -> None:
    cli.add_command(keys)
