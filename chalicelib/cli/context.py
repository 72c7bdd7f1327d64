"""What every ``v-secure`` command needs: the SDK client and the output writer.

Modules that add a command group import :func:`sdk` and :func:`emit` from here (never from
``main``), and expose ``register(cli)``; ``chalicelib.cli.main`` finds every module of the
``chalicelib.cli`` package that has one.

Example (``chalicelib/cli/audit.py``)::

    import click

    from chalicelib.cli.context import emit, sdk
    from chalicelib.client import path


    @click.group("audit", help="Read the audit log.")
    def audit() -> None:
        pass


    @audit.command("events")
    @click.option("--secret-id", required=True)
    @click.pass_context
    def events(ctx: click.Context, secret_id: str) -> None:
        emit(ctx, sdk(ctx).request("GET", path("audit", "secrets", secret_id)))


    def register(cli: click.Group) -> None:
        cli.add_command(audit)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import click
import httpx
import jmespath
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from chalicelib.cli.output import render
from chalicelib.client import VSecurity, resolve_connection
from chalicelib.models import WireModel

OUTPUT_FORMATS = ("json", "table", "text")


@dataclass
class CliState:
    """The root group's options, shared by every command through ``ctx.obj``.

    ``transport`` replaces the network (tests pass ``obj=CliState(transport=...)``).
    """

    endpoint_url: str | None = None
    token: str | None = None
    profile: str | None = None
    profile_explicit: bool = False
    output: str = "json"
    query: str | None = None
    mfa_code: str | None = None
    transport: httpx.BaseTransport | None = None
    client: VSecurity | None = None


def state(ctx: click.Context) -> CliState:
    """The :class:`CliState` of this invocation (created with defaults if missing)."""
    return ctx.find_root().ensure_object(CliState)


def _prompt_mfa() -> str | None:
    code = click.prompt("MFA code", default="", show_default=False, err=True)
    return str(code).strip() or None


def _given_once(code: str) -> Callable[[], str | None]:
    """The code from ``--mfa-code``, handed out once: the server refuses a replayed code anyway."""
    codes = [code]
    return lambda: codes.pop() if codes else None


def _mfa_code_provider(current: CliState) -> Callable[[], str | None] | None:
    if current.mfa_code:
        return _given_once(current.mfa_code)
    return _prompt_mfa if sys.stdin.isatty() and sys.stderr.isatty() else None


def sdk(ctx: click.Context) -> VSecurity:
    """The client for this invocation: built on first use, closed when the CLI exits.

    The endpoint and token come from ``--endpoint-url`` / ``--token``, else
    ``V_SECURE_ENDPOINT`` / ``V_SECURE_TOKEN``, else the profile.
    """
    current = state(ctx)
    if current.client is None:
        endpoint, token = resolve_connection(current.endpoint_url, current.token, current.profile,
                                             profile_explicit=current.profile_explicit)
        current.client = VSecurity(endpoint, token, transport=current.transport,
                                   mfa_code_provider=_mfa_code_provider(current))
        ctx.find_root().call_on_close(current.client.close)
    return current.client


def to_jsonable(data: Any) -> Any:
    """The JSON form of a result: wire models in camelCase without ``None`` fields."""
    if isinstance(data, WireModel):
        return data.wire()
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(data, dict):
        return {str(key): to_jsonable(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [to_jsonable(item) for item in data]
    return to_jsonable_python(data)


def emit(ctx: click.Context, data: Any, *, text: str | None = None) -> None:
    """Write a command's result to stdout in the chosen ``--output``, after ``--query``.

    ``text``, when given, is printed as-is for ``--output text`` without ``--query`` (how
    ``secret get`` prints only the value).
    """
    current = state(ctx)
    if text is not None and current.output == "text" and not current.query:
        click.echo(text, nl=not text.endswith("\n"))
        return
    form = to_jsonable(data)
    if current.query:
        form = jmespath.search(current.query, form)
    rendered = render(form, current.output)
    if rendered:
        click.echo(rendered)


def split_csv(values: Iterable[str] | str | None) -> list[str]:
    """``("a,b", "c")`` -> ``["a", "b", "c"]``: for options given as a list, repeated or both."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def csv_option(_ctx: click.Context, _param: click.Parameter, value: Any) -> list[str]:
    """A click ``callback`` turning ``--tags a,b --tags c`` into ``["a", "b", "c"]``."""
    return split_csv(value)
