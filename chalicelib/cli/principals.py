"""``v-secure principal|token|auth ...``: users, service accounts and their bearer tokens.

Example::

    v-secure principal create --principal-id ci --type service_account --groups deployers
    v-secure --output text token create --principal-id ci --ttl 30d   # prints only the token
"""

from __future__ import annotations

from typing import Any

import click

from chalicelib.cli.context import csv_option, emit, sdk
from chalicelib.config import parse_duration
from chalicelib.models import PrincipalType


def _principal_id_option(function: Any) -> Any:
    return click.option("--principal-id", required=True, help="The principal's id.")(function)


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


# --- principal -----------------------------------------------------------------------------


@click.group("principal", help="Manage users and service accounts.")
def principal() -> None:
    pass


@principal.command("create")
@_principal_id_option
@click.option("--type", "principal_type", type=click.Choice([member.value for member in PrincipalType]),
              default=PrincipalType.USER.value, show_default=True)
@click.option("--groups", multiple=True, callback=csv_option, metavar="A,B", help="Group memberships.")
@click.option("--admin", is_flag=True, help="Make the principal an administrator.")
@click.option("--description")
@click.pass_context
def create_principal(ctx: click.Context, principal_id: str, principal_type: str, groups: list[str],
                     admin: bool, description: str | None) -> None:
    """Create a user or service account."""
    emit(ctx, sdk(ctx).create_principal(principal_id, type=principal_type, groups=groups, admin=admin,
                                        description=description))


@principal.command("list")
@click.pass_context
def list_principals(ctx: click.Context) -> None:
    """List every principal."""
    emit(ctx, sdk(ctx).list_principals())


@principal.command("get")
@_principal_id_option
@click.pass_context
def get_principal(ctx: click.Context, principal_id: str) -> None:
    """Describe one principal."""
    emit(ctx, sdk(ctx).get_principal(principal_id))


@principal.command("disable")
@_principal_id_option
@click.pass_context
def disable_principal(ctx: click.Context, principal_id: str) -> None:
    """Disable a principal: its tokens stop working."""
    emit(ctx, sdk(ctx).disable_principal(principal_id))


@principal.command("enable")
@_principal_id_option
@click.pass_context
def enable_principal(ctx: click.Context, principal_id: str) -> None:
    """Enable a disabled principal again."""
    emit(ctx, sdk(ctx).enable_principal(principal_id))


# --- token ---------------------------------------------------------------------------------


@click.group("token", help="Issue, list and revoke bearer tokens.")
def token() -> None:
    pass


@token.command("create")
@_principal_id_option
@click.option("--ttl", callback=_duration, metavar="DURATION",
              help="Lifetime, e.g. 1h, 30d (default: the server's).")
@click.option("--description")
@click.pass_context
def create_token(ctx: click.Context, principal_id: str, ttl: int | None, description: str | None) -> None:
    """Issue a token. It is shown once: store it now. --output text prints only the token."""
    created = sdk(ctx).create_token(principal_id, ttl=ttl, description=description)
    emit(ctx, created, text=created.token)
    click.echo("note: this token is shown once and cannot be retrieved again.", err=True)


@token.command("list")
@_principal_id_option
@click.pass_context
def list_tokens(ctx: click.Context, principal_id: str) -> None:
    """List a principal's tokens (never the tokens themselves)."""
    emit(ctx, sdk(ctx).list_tokens(principal_id))


@token.command("revoke")
@_principal_id_option
@click.option("--token-id", required=True)
@click.pass_context
def revoke_token(ctx: click.Context, principal_id: str, token_id: str) -> None:
    """Revoke a token now."""
    emit(ctx, sdk(ctx).revoke_token(principal_id, token_id))


# --- auth ----------------------------------------------------------------------------------


@click.group("auth", help="Who am I.")
def auth() -> None:
    pass


@auth.command("whoami")
@click.pass_context
def whoami(ctx: click.Context) -> None:
    """The principal the current token belongs to."""
    emit(ctx, sdk(ctx).whoami())


def register(cli: click.Group) -> None:
    for group in (principal, token, auth):
        cli.add_command(group)
