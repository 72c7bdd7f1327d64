"""``v-secure secret ...``: store, read, describe, version, list, delete and restore secrets.

Example::

    v-secure secret store --secret-id prod/db --type database_credential --value-stdin < pw.txt
    v-secure --output text secret get --secret-id prod/db
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from chalicelib.cli.context import csv_option, emit, sdk
from chalicelib.models import ListSecretsResponse, SecretSummary, SecretType

SECRET_TYPES = click.Choice([member.value for member in SecretType])


def _secret_id_option(function: Any) -> Any:
    option = click.option("--secret-id", required=True, help="The secret's id, e.g. prod/db_password.")
    return option(function)


def parse_metadata(values: tuple[str, ...]) -> dict[str, str]:
    """``("a=b,c=d", "e=f")`` -> ``{"a": "b", "c": "d", "e": "f"}``.

    A comma-separated piece without ``=`` continues the previous value, so
    ``note=a,b`` gives ``{"note": "a,b"}``.
    """
    metadata: dict[str, str] = {}
    last_key: str | None = None
    for value in values:
        for piece in value.split(","):
            key, sep, item = piece.partition("=")
            if sep and key.strip():
                last_key = key.strip()
                metadata[last_key] = item
            elif last_key is not None and not sep:
                metadata[last_key] += "," + piece
            else:
                raise click.BadParameter(f"expected KEY=VALUE, got {piece!r}", param_hint="--metadata")
    return metadata


def _read_value(value: str | None, value_file: Path | None, value_stdin: bool) -> str:
    given = [value is not None, value_file is not None, value_stdin]
    if sum(given) != 1:
        raise click.UsageError("give exactly one of --value, --value-file or --value-stdin")
    if value is not None:
        return value
    if value_file is not None:
        raw = value_file.read_bytes()
        source = "--value-file"
    else:
        raw = sys.stdin.buffer.read()
        source = "--value-stdin"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise click.UsageError(f"{source}: the value must be UTF-8 text") from None
    if value_stdin:
        text = text.removesuffix("\n").removesuffix("\r")
    return text


def _read_json_file(file: Path | None, option: str) -> dict[str, Any] | None:
    if file is None:
        return None
    try:
        document = json.loads(file.read_text())
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=option) from None
    if not isinstance(document, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return document


@click.group("secret", help="Store, read and manage secrets.")
def secret() -> None:
    pass


@secret.command("store")
@_secret_id_option
@click.option("--type", "secret_type", type=SECRET_TYPES, help="The secret type (first version only).")
@click.option("--value", help="The value. Visible in shell history and `ps`: prefer the two below.")
@click.option("--value-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the value from a file, byte for byte.")
@click.option("--value-stdin", is_flag=True, help="Read the value from stdin (one trailing newline removed).")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE[,KEY=VALUE]",
              help="Metadata, repeatable.")
@click.option("--tags", multiple=True, callback=csv_option, metavar="A,B", help="Tags.")
@click.option("--expected-version", type=click.IntRange(min=0),
              help="Check-and-set: 0 = must not exist yet; N = current version must be N.")
@click.option("--description")
@click.option("--reason", help="Why (recorded in the audit log).")
@click.option("--compliance", multiple=True, callback=csv_option, metavar="STD,STD",
              help="Compliance standards, e.g. PCI-DSS,SOX.")
@click.option("--value-schema-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON Schema the value must satisfy (configuration secrets).")
@click.pass_context
def store(ctx: click.Context, secret_id: str, secret_type: str | None, value: str | None,
          value_file: Path | None, value_stdin: bool, metadata: tuple[str, ...], tags: list[str],
          expected_version: int | None, description: str | None, reason: str | None,
          compliance: list[str], value_schema_file: Path | None) -> None:
    """Store a new version of a secret."""
    secret_value = _read_value(value, value_file, value_stdin)
    result = sdk(ctx).store(
        secret_id, secret_value, type=secret_type, metadata=parse_metadata(metadata), tags=tags,
        expected_version=expected_version, description=description, reason=reason,
        compliance=compliance or None, value_schema=_read_json_file(value_schema_file, "--value-schema-file"),
    )
    emit(ctx, result)


@secret.command("get")
@_secret_id_option
@click.option("--version", type=click.IntRange(min=1), help="A version number (default: current).")
@click.option("--stage", help="A version label, e.g. previous or pending.")
@click.option("--reason", help="Why (recorded in the audit log).")
@click.option("--mfa-code", help="A TOTP code, for secrets that require MFA.")
@click.pass_context
def get(ctx: click.Context, secret_id: str, version: int | None, stage: str | None, reason: str | None,
        mfa_code: str | None) -> None:
    """Read a secret's value. With --output text, only the value is printed."""
    result = sdk(ctx).retrieve(secret_id, version=version, stage=stage, reason=reason, mfa_code=mfa_code)
    emit(ctx, result, text=result.value)


@secret.command("metadata")
@_secret_id_option
@click.pass_context
def metadata(ctx: click.Context, secret_id: str) -> None:
    """Describe a secret (never its value)."""
    emit(ctx, sdk(ctx).metadata(secret_id))


@secret.command("versions")
@_secret_id_option
@click.pass_context
def versions(ctx: click.Context, secret_id: str) -> None:
    """List a secret's versions and their labels."""
    emit(ctx, sdk(ctx).versions(secret_id))


@secret.command("rollback")
@_secret_id_option
@click.option("--version", required=True, type=click.IntRange(min=1), help="The version to make current.")
@click.option("--reason", help="Why (recorded in the audit log).")
@click.pass_context
def rollback(ctx: click.Context, secret_id: str, version: int, reason: str | None) -> None:
    """Make an earlier version current again."""
    emit(ctx, sdk(ctx).rollback(secret_id, version, reason=reason))


@secret.command("list")
@click.option("--type", "secret_type", type=SECRET_TYPES)
@click.option("--tag")
@click.option("--prefix", help="Only ids starting with this, e.g. prod/.")
@click.option("--include-deleted", is_flag=True, help="Include secrets scheduled for deletion.")
@click.option("--max-items", type=click.IntRange(min=1), help="Stop after this many (prints nextToken).")
@click.option("--page-size", type=click.IntRange(min=1), help="Items per API call.")
@click.option("--starting-token", help="The nextToken of an earlier --max-items listing.")
@click.pass_context
def list_secrets(ctx: click.Context, secret_type: str | None, tag: str | None, prefix: str | None,
                 include_deleted: bool, max_items: int | None, page_size: int | None,
                 starting_token: str | None) -> None:
    """List secrets, following pagination."""
    client = sdk(ctx)
    found: list[SecretSummary] = []
    token = starting_token
    while True:
        remaining = None if max_items is None else max_items - len(found)
        limit = min(filter(None, (page_size, remaining)), default=None)
        page = client.list(type=secret_type, tag=tag, prefix=prefix, limit=limit, next_token=token,
                           include_deleted=include_deleted)
        found.extend(page.secrets)
        if not page.next_token or page.next_token == token:
            token = None
            break
        token = page.next_token
        if max_items is not None and len(found) >= max_items:
            break
    emit(ctx, ListSecretsResponse(secrets=found[:max_items] if max_items else found, next_token=token))


@secret.command("delete")
@_secret_id_option
@click.option("--recovery-window-days", type=click.IntRange(min=1),
              help="Days during which `secret restore` can undo this.")
@click.option("--force-delete-without-recovery", is_flag=True, help="Destroy now. Cannot be undone.")
@click.pass_context
def delete(ctx: click.Context, secret_id: str, recovery_window_days: int | None,
           force_delete_without_recovery: bool) -> None:
    """Delete a secret: restorable for a recovery window, or destroyed now."""
    if recovery_window_days is not None and force_delete_without_recovery:
        raise click.UsageError("give --recovery-window-days or --force-delete-without-recovery, not both")
    emit(ctx, sdk(ctx).delete(secret_id, recovery_window_days=recovery_window_days,
                              force=force_delete_without_recovery))


@secret.command("restore")
@_secret_id_option
@click.pass_context
def restore(ctx: click.Context, secret_id: str) -> None:
    """Undo a scheduled deletion."""
    emit(ctx, sdk(ctx).restore(secret_id))


secret.add_command(metadata, name="describe")


def register(cli: click.Group) -> None:
    cli.add_command(secret)

