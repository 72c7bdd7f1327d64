"""The ``v-secure`` command: AWS-CLI style ``v-secure <group> <verb> --option ...``.

Global options (``--endpoint-url``, ``--profile``, ``--output``, ``--query``) belong to the
root group and may also be written after the verb, as with the AWS CLI. API errors print
``error (code): message`` on stderr and exit 1; usage errors exit 2.

Adding a command group: put a module in ``chalicelib/cli/`` that defines
``register(cli: click.Group)`` (see :mod:`chalicelib.cli.context`); it is found and
registered when this module is imported. ``cli.add_command(group)`` works too.

Example::

    v-secure --profile dev secret list --prefix prod/ --output table
    v-secure secret get --secret-id prod/db --query value --output text
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import click
import jmespath
from click.core import ParameterSource
from jmespath.exceptions import JMESPathError

import chalicelib.cli
from chalicelib import errors
from chalicelib.cli import principals, secrets
from chalicelib.cli.context import OUTPUT_FORMATS, emit, sdk, state
from chalicelib.client import ENV_ENDPOINT, ENV_MFA_CODE, ENV_PROFILE, ENV_TOKEN, NotConfigured, retry_after

_NOT_EXTENSIONS = {"main", "context", "output", "profiles"}
_registered: set[str] = set()


def format_error(error: errors.VSecureError) -> str:
    """``error (code): message`` plus the deny reason or the retry delay when there is one."""
    line = f"error ({error.code}): {error.message}"
    if isinstance(error, errors.AccessDenied):
        line += f" (reason: {error.reason})"
    delay = retry_after(error)
    if delay is not None:
        line += f" (retry after {delay:g}s)"
    return line


def _option_takes_value(option: click.Option) -> bool:
    return not (option.is_flag or option.count)


class RootGroup(click.Group):
    """The root group: maps v-secure errors to exit codes, and accepts global options anywhere."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NotConfigured as exc:
            click.echo(format_error(exc), err=True)
            ctx.exit(2)
        except errors.VSecureError as exc:
            click.echo(format_error(exc), err=True)
            ctx.exit(1)
        except JMESPathError as exc:
            click.echo(f"error (invalid_query): {exc}", err=True)
            ctx.exit(2)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self.hoist_global_options(ctx, args))

    def hoist_global_options(self, ctx: click.Context, args: Sequence[str]) -> list[str]:
        """Move global options written after the verb to before the group.

        ``secret list --output table`` becomes ``--output table secret list``. An option the
        verb defines itself is left to the verb, and option values are never mistaken for
        options (``--value --output`` stores the value ``--output``).
        """
        args = list(args)
        root_options = {name: option for option in self.params if isinstance(option, click.Option)
                        for name in option.opts}
        position = self._skip_options(args, 0, root_options)
        if position is None:
            return args
        root_end = position
        command: click.Command = self
        command_names: list[str] = []
        while position < len(args) and isinstance(command, click.Group):
            found = command.get_command(ctx, args[position])
            if found is None:
                return args
            command, position = found, position + 1
            command_names.append(args[position - 1])
        if not command_names:
            return args
        verb_options = {name: _option_takes_value(option) for option in command.params
                        if isinstance(option, click.Option) for name in option.opts + option.secondary_opts}
        hoisted: list[str] = []
        kept: list[str] = []
        while position < len(args):
            token = args[position]
            if token == "--":
                kept.extend(args[position:])
                break
            name = token.split("=", 1)[0] if token.startswith("--") else token
            takes_next = "=" not in token and position + 1 < len(args)
            if name in verb_options:
                kept.append(token)
                if verb_options[name] and takes_next:
                    position += 1
                    kept.append(args[position])
            elif name in root_options:
                hoisted.append(token)
                if _option_takes_value(root_options[name]) and takes_next:
                    position += 1
                    hoisted.append(args[position])
            else:
                kept.append(token)
            position += 1
        return args[:root_end] + hoisted + args[root_end:root_end + len(command_names)] + kept

    @staticmethod
    def _skip_options(args: list[str], position: int, options: dict[str, click.Option]) -> int | None:
        """The index after the leading root options; None if one is not a root option."""
        while position < len(args) and args[position].startswith("-"):
            token = args[position]
            option = options.get(token.split("=", 1)[0])
            if option is None:
                return None
            position += 1 if "=" in token or not _option_takes_value(option) else 2
        return position


def _check_query(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        try:
            jmespath.compile(value)
        except JMESPathError as exc:
            raise click.BadParameter(str(exc)) from None
    return value or None


@click.group("v-secure", cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--endpoint-url", envvar=ENV_ENDPOINT, metavar="URL",
              help=f"The v-secure API, e.g. http://127.0.0.1:8000 (env {ENV_ENDPOINT}).")
@click.option("--profile", envvar=ENV_PROFILE, help=f"A saved profile (env {ENV_PROFILE}; default dev).")
@click.option("--output", type=click.Choice(OUTPUT_FORMATS, case_sensitive=False), envvar="V_SECURE_OUTPUT",
              default="json", show_default=True, help="Output format (env V_SECURE_OUTPUT).")
@click.option("--query", callback=_check_query, metavar="JMESPATH",
              help="A JMESPath expression applied to the JSON result before output.")
@click.option("--token", envvar=ENV_TOKEN, hidden=True, help=f"Bearer token (env {ENV_TOKEN}).")
@click.option("--mfa-code", envvar=ENV_MFA_CODE, metavar="CODE",
              help=f"A TOTP code, sent when the server asks for MFA (env {ENV_MFA_CODE}); in a terminal "
                   "the CLI asks for one instead. A code is good for one request.")
@click.version_option(package_name="v-secure", prog_name="v-secure")
@click.pass_context
def cli(ctx: click.Context, endpoint_url: str | None, profile: str | None, output: str, query: str | None,
        token: str | None, mfa_code: str | None) -> None:
    """v-secure: encrypted, versioned, rotated and audited secrets."""
    current = state(ctx)
    current.endpoint_url = endpoint_url or None
    current.token = token or None
    current.mfa_code = (mfa_code or "").strip() or None
    current.profile = profile or None
    current.profile_explicit = ctx.get_parameter_source("profile") in (
        ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    current.output = output.lower()
    current.query = query


@cli.command("health")
@click.pass_context
def health(ctx: click.Context) -> None:
    """Check that the API answers."""
    emit(ctx, sdk(ctx).health())


def register_module(module: ModuleType) -> None:
    """Call ``module.register(cli)`` once per module."""
    register = getattr(module, "register", None)
    if callable(register) and module.__name__ not in _registered:
        _registered.add(module.__name__)
        register(cli)


def load_extensions() -> None:
    """Register every module of ``chalicelib.cli`` that defines ``register(cli)``."""
    for info in pkgutil.iter_modules(chalicelib.cli.__path__):
        if info.name in _NOT_EXTENSIONS or info.name.startswith("_"):
            continue
        register_module(importlib.import_module(f"{chalicelib.cli.__name__}.{info.name}"))


def main() -> None:
    """The console script."""
    cli.main(prog_name="v-secure")


register_module(secrets)
register_module(principals)
load_extensions()


if __name__ == "__main__":
    main()
