"""``v-secure access|group|policy ...`` and ``v-secure auth mfa ...``: who may use which secret.

Example::

    v-secure access grant --secret-id db_password --to backend-team --permissions read,rotate
    v-secure access set-constraints --secret-id db_password --ip-whitelist 10.0.0.0/8 --require-mfa \\
        --rate-limit 100/min
    v-secure group add-member --group backend-team --principal-id alice
    v-secure policy put --name prod-readers --pattern 'prod/*' --allow backend-team=read
    v-secure auth mfa setup              # shows the otpauth:// URI and a QR code
    v-secure auth mfa setup --code 123456
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from chalicelib.cli.context import csv_option, emit, sdk, split_csv
from chalicelib.models import Permission

PERMISSIONS = ", ".join(p.value for p in Permission)


def _secret_id_option(function: Any) -> Any:
    return click.option("--secret-id", required=True, help="The secret's id, e.g. db_password.")(function)


def _permissions(_ctx: click.Context, _param: click.Parameter, value: Any) -> list[str]:
    permissions = split_csv(value)
    unknown = [p for p in permissions if p not in {q.value for q in Permission}]
    if unknown:
        raise click.BadParameter(f"unknown permission {', '.join(unknown)} (use {PERMISSIONS})")
    return permissions


def parse_grants(values: tuple[str, ...], option: str) -> dict[str, list[str]]:
    """``("backend-team=read,rotate", "ops=admin")`` -> ``{"backend-team": ["read", "rotate"], "ops": ["admin"]}``."""
    grants: dict[str, list[str]] = {}
    for value in values:
        name, sep, permissions = value.partition("=")
        if not sep or not name.strip() or not permissions.strip():
            raise click.BadParameter(f"expected NAME=PERMISSION[,PERMISSION], got {value!r}", param_hint=option)
        grants.setdefault(name.strip(), []).extend(split_csv(permissions))
    return grants


# --- access --------------------------------------------------------------------------------


@click.group("access", help="A secret's permissions, explicit denies and constraints.")
def access() -> None:
    pass


@access.command("list")
@_secret_id_option
@click.pass_context
def list_access(ctx: click.Context, secret_id: str) -> None:
    """Show the secret's access document (needs read on it)."""
    emit(ctx, sdk(ctx).get_access(secret_id))


@access.command("grant")
@_secret_id_option
@click.option("--to", "to", required=True, metavar="NAME", help="A principal id or group name (or group:NAME).")
@click.option("--permissions", multiple=True, required=True, callback=_permissions, metavar="P,P",
              help=f"Any of {PERMISSIONS}.")
@click.option("--deny", is_flag=True, help="Deny these permissions explicitly (a deny wins over every grant).")
@click.option("--reason", help="Why (recorded in the audit log).")
@click.pass_context
def grant(ctx: click.Context, secret_id: str, to: str, permissions: list[str], deny: bool,
          reason: str | None) -> None:
    """Grant permissions on a secret (needs admin on it)."""
    emit(ctx, sdk(ctx).grant(secret_id, to, permissions, deny=deny, reason=reason))


@access.command("revoke")
@_secret_id_option
@click.option("--from", "from_", required=True, metavar="NAME", help="A principal id or group name.")
@click.option("--permissions", multiple=True, callback=_permissions, metavar="P,P",
              help="The permissions to take back (default: all of them).")
@click.option("--deny", is_flag=True, help="Lift an explicit deny instead.")
@click.option("--reason", help="Why (recorded in the audit log).")
@click.pass_context
def revoke(ctx: click.Context, secret_id: str, from_: str, permissions: list[str], deny: bool,
           reason: str | None) -> None:
    """Revoke permissions on a secret (needs admin on it)."""
    emit(ctx, sdk(ctx).revoke(secret_id, from_, permissions or None, deny=deny, reason=reason))


@access.command("set-constraints")
@_secret_id_option
@click.option("--ip-whitelist", multiple=True, callback=csv_option, metavar="CIDR,CIDR",
              help="Allowed source networks (IPv4 or IPv6).")
@click.option("--require-mfa", is_flag=True, help="Require a TOTP code (X-VSecure-MFA) on every request.")
@click.option("--rate-limit", metavar="N/min|N:SECONDS", help="Reads per principal, e.g. 100/min or 100:60.")
@click.pass_context
def set_constraints(ctx: click.Context, secret_id: str, ip_whitelist: list[str], require_mfa: bool,
                    rate_limit: str | None) -> None:
    """Replace the secret's constraints block (no option: remove every constraint)."""
    emit(ctx, sdk(ctx).set_constraints(secret_id, ip_whitelist=ip_whitelist, require_mfa=require_mfa,
                                       rate_limit=rate_limit))


@access.command("put")
@_secret_id_option
@click.option("--policy-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help='The spec\'s JSON document: {"permissions": {...}, "deny": {...}, "constraints": {...}}.')
@click.pass_context
def put_access(ctx: click.Context, secret_id: str, policy_file: Path) -> None:
    """Replace the fields of the access document that the file has (the others are kept)."""
    try:
        document = json.loads(policy_file.read_text())
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--policy-file") from None
    if not isinstance(document, dict):
        raise click.BadParameter("expected a JSON object", param_hint="--policy-file")
    if document.get("secret_id") not in (None, secret_id):
        raise click.BadParameter(f"the file is for {document['secret_id']!r}", param_hint="--policy-file")
    emit(ctx, sdk(ctx).put_access(secret_id, permissions=document.get("permissions"), deny=document.get("deny"),
                                  constraints=document.get("constraints")))


# --- group ---------------------------------------------------------------------------------


@click.group("group", help="Groups of principals (grants can name a group).")
def group() -> None:
    pass


@group.command("list")
@click.option("--group", "name", help="Only this group's members.")
@click.pass_context
def list_groups(ctx: click.Context, name: str | None) -> None:
    """List groups and their members (global admin)."""
    client = sdk(ctx)
    emit(ctx, client.get_group(name) if name else client.list_groups())


@group.command("add-member")
@click.option("--group", "name", required=True)
@click.option("--principal-id", required=True)
@click.pass_context
def add_member(ctx: click.Context, name: str, principal_id: str) -> None:
    """Add a principal to a group (global admin)."""
    emit(ctx, sdk(ctx).add_group_member(name, principal_id))


@group.command("remove-member")
@click.option("--group", "name", required=True)
@click.option("--principal-id", required=True)
@click.pass_context
def remove_member(ctx: click.Context, name: str, principal_id: str) -> None:
    """Remove a principal from a group (global admin)."""
    emit(ctx, sdk(ctx).remove_group_member(name, principal_id))


# --- policy --------------------------------------------------------------------------------


@click.group("policy", help="Prefix policies: grants and denies over secret ids like prod/*.")
def policy() -> None:
    pass


@policy.command("put")
@click.option("--name", required=True)
@click.option("--pattern", required=True, help="Secret ids it covers, e.g. 'prod/*'.")
@click.option("--allow", multiple=True, metavar="NAME=P[,P]", help="A grant (repeatable).")
@click.option("--deny", multiple=True, metavar="NAME=P[,P]", help="An explicit deny (repeatable).")
@click.option("--description")
@click.pass_context
def put_policy(ctx: click.Context, name: str, pattern: str, allow: tuple[str, ...], deny: tuple[str, ...],
               description: str | None) -> None:
    """Create or replace a prefix policy (global admin)."""
    emit(ctx, sdk(ctx).put_policy(name, pattern, allow=parse_grants(allow, "--allow"),
                                  deny=parse_grants(deny, "--deny"), description=description))


@policy.command("get")
@click.option("--name", required=True)
@click.pass_context
def get_policy(ctx: click.Context, name: str) -> None:
    """Show one prefix policy (global admin)."""
    emit(ctx, sdk(ctx).get_policy(name))


@policy.command("list")
@click.pass_context
def list_policies(ctx: click.Context) -> None:
    """List the prefix policies (global admin)."""
    emit(ctx, sdk(ctx).list_policies())


@policy.command("delete")
@click.option("--name", required=True)
@click.pass_context
def delete_policy(ctx: click.Context, name: str) -> None:
    """Delete a prefix policy (global admin)."""
    emit(ctx, sdk(ctx).delete_policy(name))


# --- auth mfa ------------------------------------------------------------------------------


def qr_text(data: str) -> str:
    """``data`` as a QR code drawn with text characters (scannable from a terminal)."""
    import qrcode

    code = qrcode.QRCode(border=1)
    code.add_data(data)
    code.make(fit=True)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


@click.group("mfa", help="TOTP multi-factor authentication for your principal.")
def mfa() -> None:
    pass


@mfa.command("setup")
@click.option("--code", help="The first code from your authenticator: activates the pending setup.")
@click.pass_context
def mfa_setup(ctx: click.Context, code: str | None) -> None:
    """Enrol an authenticator: shows the otpauth:// URI and a QR code, then activates with the first code."""
    client = sdk(ctx)
    if code:
        emit(ctx, client.mfa_activate(code))
        return
    setup = client.mfa_setup()
    click.echo("Scan this QR code with your authenticator app (or add the URI / secret by hand):\n", err=True)
    click.echo(qr_text(setup.otpauth_uri), err=True)
    click.echo(f"URI:    {setup.otpauth_uri}\nSecret: {setup.secret}\n", err=True)
    if _interactive():
        entered = click.prompt("Code from your authenticator", err=True).strip()
        emit(ctx, client.mfa_activate(entered))
        return
    click.echo("MFA is pending: activate it with `v-secure auth mfa setup --code <code>`.", err=True)
    emit(ctx, setup)


@mfa.command("activate")
@click.option("--code", required=True)
@click.pass_context
def mfa_activate(ctx: click.Context, code: str) -> None:
    """Activate a pending setup with its first code (same as ``setup --code``)."""
    emit(ctx, sdk(ctx).mfa_activate(code))


@mfa.command("disable")
@click.option("--code", help="A current code (needed to disable your own active MFA).")
@click.option("--principal-id", help="Global admins: reset another principal's MFA (no code needed).")
@click.pass_context
def mfa_disable(ctx: click.Context, code: str | None, principal_id: str | None) -> None:
    """Turn MFA off."""
    emit(ctx, sdk(ctx).mfa_disable(code, principal_id))


@mfa.command("status")
@click.pass_context
def mfa_status(ctx: click.Context) -> None:
    """Whether MFA is active (or pending) for your principal."""
    emit(ctx, sdk(ctx).mfa_status())


def register(cli: click.Group) -> None:
    from chalicelib.cli.principals import auth

    for command in (access, group, policy):
        cli.add_command(command)
    auth.add_command(mfa)
