"""``v-secure secret rotate | rotation-status | switch``, and ``secret rollback`` aware of rotations.

``secret rotate`` with schedule options (``--rotation-interval``, ``--strategy``, ...) updates the
secret's rotation block (merged with what is there) and, with ``--now`` or when no schedule option
is given, rotates at once. ``secret rollback`` without ``--version`` rolls back the rotation in
progress: the old version again, for everyone.

Example::

    v-secure secret rotate --secret-id db_password --rotation-interval 30d --strategy rolling
    v-secure secret rotate --secret-id db_password --now --strategy canary --rollout-duration-hours 4
    v-secure secret rotate --secret-id app/flags --now --value-file flags.json
    v-secure secret rotation-status --secret-id db_password
    v-secure secret switch --secret-id db_password
    v-secure secret rollback --secret-id db_password
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from chalicelib.cli.context import csv_option, emit, sdk
from chalicelib.cli.secrets import _read_value
from chalicelib.rotation.config import Strategy

STRATEGIES = click.Choice([member.value for member in Strategy])


def parse_options(values: tuple[str, ...]) -> dict[str, Any]:
    """``("provider.url=https://x", "keySize=4096")`` -> ``{"provider": {"url": "https://x"}, "keySize": 4096}``.

    A value is JSON when it parses as JSON (numbers, booleans, objects), else text; dots nest.
    """
    options: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--option")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        target = options
        parts = key.strip().split(".")
        for part in parts[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise click.BadParameter(f"{part} is both a value and an object", param_hint="--option")
            target = nested
        target[parts[-1]] = value
    return options


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@click.command("rotate")
@click.option("--secret-id", required=True, help="The secret's id.")
@click.option("--rotation-interval", help="Rotate automatically this often (30d, 12h); 'none' for manual only.")
@click.option("--strategy", type=STRATEGIES, help="Rollout strategy.")
@click.option("--rollout-duration-hours", type=click.FloatRange(min=0, min_open=True),
              help="How long a rolling or canary rollout lasts.")
@click.option("--test-new-key/--no-test-new-key", default=None, help="Test the new value before rolling it out.")
@click.option("--retire-after", help="How long the old value keeps working after the rollout (24h, 0s).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A per-type rotation option, e.g. provider.url=https://... (repeatable).")
@click.option("--disable", is_flag=True, help="Stop rotating automatically (keeps the other settings).")
@click.option("--now", "rotate_now", is_flag=True, help="Also rotate now (the default without schedule options).")
@click.option("--value", help="Rotate to this value (configuration secrets). Prefer --value-file/--value-stdin.")
@click.option("--value-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Rotate to the value in this file.")
@click.option("--value-stdin", is_flag=True, help="Rotate to the value read from stdin.")
@click.option("--notify-services", multiple=True, callback=csv_option, metavar="A,B",
              help="Services named in the rotation's events.")
@click.option("--reason", help="Why (recorded in the audit log).")
@click.pass_context
def rotate(ctx: click.Context, secret_id: str, rotation_interval: str | None, strategy: str | None,
           rollout_duration_hours: float | None, test_new_key: bool | None, retire_after: str | None,
           options: tuple[str, ...], disable: bool, rotate_now: bool, value: str | None, value_file: Path | None,
           value_stdin: bool, notify_services: list[str], reason: str | None) -> None:
    """Configure automatic rotation, and/or rotate now."""
    client = sdk(ctx)
    schedule: dict[str, Any] = {"strategy": strategy, "rolloutDurationHours": rollout_duration_hours,
                                "testNewKey": test_new_key, "retireAfter": retire_after}
    schedule = {k: v for k, v in schedule.items() if v is not None}
    configuring = rotation_interval is not None or disable or bool(options) or (bool(schedule) and not rotate_now)
    given_value = value is not None or value_file is not None or value_stdin
    result: Any = None
    if configuring:
        current = client.rotation_status(secret_id).rotation or {}
        block = _merge(current, parse_options(options))
        block.update(schedule)
        if rotation_interval is not None:
            block["interval"] = None if rotation_interval.lower() in ("none", "never", "") else rotation_interval
            block["enabled"] = True
        if disable:
            block["enabled"] = False
        result = client.configure(secret_id, {k: v for k, v in block.items() if v is not None}, reason=reason)
    if rotate_now or not configuring or given_value:
        new_value = _read_value(value, value_file, value_stdin) if given_value else None
        rotated = client.rotate(secret_id, strategy=strategy, rollout_duration_hours=rollout_duration_hours,
                                test_new_key=test_new_key, notify_services=notify_services or None, value=new_value,
                                reason=reason)
        result = rotated if result is None else {"configuration": result, "rotation": rotated}
    emit(ctx, result)


@click.command("rotation-status")
@click.option("--secret-id", required=True, help="The secret's id.")
@click.pass_context
def rotation_status(ctx: click.Context, secret_id: str) -> None:
    """The rotation settings, next due time, and the run with its steps and progress."""
    emit(ctx, sdk(ctx).rotation_status(secret_id))


@click.command("switch")
@click.option("--secret-id", required=True, help="The secret's id.")
@click.option("--reason", help="Why (recorded in the audit log).")
@click.pass_context
def switch(ctx: click.Context, secret_id: str, reason: str | None) -> None:
    """Blue-green: make the rotation's new version CURRENT for everyone, at once."""
    emit(ctx, sdk(ctx).switch(secret_id, reason=reason))


@click.command("rollback")
@click.option("--secret-id", required=True, help="The secret's id, e.g. prod/db_password.")
@click.option("--version", type=click.IntRange(min=1),
              help="The version to make current. Without it: roll back the rotation in progress.")
@click.option("--reason", help="Why (recorded in the audit log).")
@click.pass_context
def rollback(ctx: click.Context, secret_id: str, version: int | None, reason: str | None) -> None:
    """Make an earlier version current again; during a rotation, the old version for everyone."""
    client = sdk(ctx)
    if version is None:
        emit(ctx, client.rollback_rotation(secret_id, reason=reason))
    else:
        emit(ctx, client.rollback(secret_id, version, reason=reason))


def register(cli: click.Group) -> None:
    from chalicelib.cli.secrets import secret

    for command in (rotate, rotation_status, switch, rollback):
        secret.add_command(command)
