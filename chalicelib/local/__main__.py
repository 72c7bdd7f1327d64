"""``python -m chalicelib.local`` (``make run``): the whole dev stack in one process tree.

Starts an embedded moto server on loopback (unless ``V_SECURE_AWS_ENDPOINT`` points at e.g.
LocalStack), creates the AWS resources, creates the root principal and writes its token to the
``dev`` CLI profile (mode 0600), then runs the scheduled functions and serves the API on
``V_SECURE_HOST:V_SECURE_PORT`` (127.0.0.1:8000). Like ``vault server -dev``, everything is in
memory and gone on exit. Ctrl-C or SIGTERM stops it all, exit status 0.

Example::

    python -m chalicelib.local                 # API on http://127.0.0.1:8000
    V_SECURE_PORT=0 V_SECURE_AWS_PORT=0 python -m chalicelib.local --print-token
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from chalicelib.cli.profiles import DEFAULT_PROFILE, save_profile
from chalicelib.config import get_settings
from chalicelib.local.environment import reset_process_state
from chalicelib.local.moto_server import MotoServerError, endpoint_url
from chalicelib.local.scheduler import LocalScheduler
from chalicelib.local.server import ApiServer, load_app, start_api_server
from chalicelib.local.stack import LocalAws, start_local_aws

logger = logging.getLogger("chalicelib.local")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.local",
                                     description="Run the v-secure dev stack (in memory).")
    parser.add_argument("--host", help="API listen address (default V_SECURE_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="API port (default V_SECURE_PORT, 8000; 0 = free port)")
    parser.add_argument("--aws-port", type=int,
                        help="embedded moto port (default V_SECURE_AWS_PORT, 4566; 0 = free port)")
    parser.add_argument("--print-token", action="store_true",
                        help="also print the root token (it is always written to the dev profile)")
    parser.add_argument("--no-scheduler", action="store_true", help="do not run scheduled functions")
    return parser.parse_args(argv)


def bootstrap_root_token() -> str | None:
    """The root token from ``chalicelib.access_control.bootstrap``, or None (with a warning)."""
    try:
        from chalicelib.access_control.bootstrap import bootstrap_root
    except ImportError as error:
        logger.warning("root principal not bootstrapped (%s); the dev profile has no token", error)
        return None
    return bootstrap_root()


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost.

    Example::

        is_loopback("127.0.0.2")  # True
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_host(host: str) -> str:
    """Where a local client should connect for a listen address (``0.0.0.0`` -> ``127.0.0.1``)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def banner(*, api_url: str, aws: LocalAws, profile_path: Path, token: str | None,
           print_token: bool, jobs: Sequence[str]) -> str:
    """The start-up message (like ``vault server -dev``'s); never contains the token unless asked."""
    cli = ".venv/bin/v-secure"
    aws_kind = "embedded moto server" if aws.embedded else "external endpoint"
    lines = [
        "==> v-secure dev stack started. Log output goes to stderr.",
        "",
        f"    API endpoint:  {api_url}",
        f"    AWS endpoint:  {aws.endpoint} ({aws_kind})",
    ]
    if token is not None:
        lines.append(f"    Root token:    written to {profile_path} (profile {DEFAULT_PROFILE!r}, mode 0600)")
        if print_token:
            lines.append(f"    Root token:    {token}")
    else:
        lines.append(f"    Root token:    NOT created (profile {DEFAULT_PROFILE!r} in {profile_path} "
                     "has no token)")
    if jobs:
        lines.append(f"    Scheduled:     {', '.join(jobs)}")
    lines += [""]
    if aws.embedded:
        lines += [
            "WARNING! Dev mode is enabled! In this mode, v-secure keeps ALL data (secrets, audit",
            "log, keys) in memory in the embedded moto server and LOSES IT ON EXIT. The root",
            "token is written unencrypted to the profile above. Do not store real secrets here.",
        ]
    else:
        lines += [
            f"WARNING! Dev mode is enabled against {aws.endpoint}: data lives wherever that endpoint",
            "keeps it, and the root token is written unencrypted to the profile above.",
        ]
    lines += [
        "",
        "Try it (the dev profile is the default):",
        "",
        f"    {cli} secret store --secret-id db_password --type database_credential \\",
        "        --value '{\"username\": \"app\", \"password\": \"change-me\"}'",
        f"    {cli} secret get --secret-id db_password",
        f"    {cli} secret list",
        f"    curl -s {api_url}/health",
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def _apply_overrides(args: argparse.Namespace) -> None:
    for value, name in ((args.host, "V_SECURE_HOST"), (args.port, "V_SECURE_PORT"),
                        (args.aws_port, "V_SECURE_AWS_PORT")):
        if value is not None:
            os.environ[name] = str(value)
    reset_process_state()


class _Stopper:
    """SIGINT/SIGTERM: during start-up raise KeyboardInterrupt, afterwards just signal the wait."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.started = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()
        if not self.started:
            raise KeyboardInterrupt

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    stopper = _Stopper()
    stopper.install()
    _apply_overrides(args)

    aws: LocalAws | None = None
    api: ApiServer | None = None
    scheduler: LocalScheduler | None = None
    try:
        aws = start_local_aws()
        settings = get_settings()
        token = bootstrap_root_token()
        app = load_app()
        api = start_api_server(app, settings.host, settings.port)
        if not is_loopback(settings.host):
            logger.warning("the API listens on %s, beyond loopback: other machines can reach the dev "
                           "stack", settings.host)
        api_url = endpoint_url(client_host(api.listeners[0].host), api.port)
        profile_path = save_profile(DEFAULT_PROFILE, api_url, token)
        if not args.no_scheduler:
            scheduler = LocalScheduler(app).start()
        print(banner(api_url=api_url, aws=aws, profile_path=profile_path, token=token,
                     print_token=args.print_token, jobs=list(scheduler.jobs) if scheduler else []),
              flush=True)
        stopper.started = True
        stopper.event.wait()
        logger.info("stopping the dev stack")
    except KeyboardInterrupt:
        logger.info("interrupted during start-up")
    except (MotoServerError, OSError) as error:
        logger.error("the dev stack could not start: %s", error)
        return 1
    finally:
        if api is not None:
            api.stop()
        if scheduler is not None:
            scheduler.stop()
        if aws is not None:
            aws.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
