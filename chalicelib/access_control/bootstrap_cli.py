"""Create the first admin token of a deployment without printing it.

Run once, with an administrator's AWS credentials, after both stacks are deployed. The token is
written to a new file (mode 0600, never overwritten) or to a CLI profile (``~/.v-secure``, mode
0600); stdout and the logs only say where it went.

Example::

    python -m chalicelib.access_control.bootstrap_cli --from-stack v-secure-prod-stateful \\
        --token-file ./root-token
    python -m chalicelib.access_control.bootstrap_cli --from-stack v-secure-prod-stateful \\
        --profile prod --endpoint https://abc123.execute-api.eu-west-1.amazonaws.com/api
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# Outputs of infra/stateful.yaml -> the settings the app reads them into.
STACK_OUTPUT_SETTINGS: Mapping[str, str] = {
    "SecretsTableName": "V_SECURE_SECRETS_TABLE",
    "AuditTableName": "V_SECURE_AUDIT_TABLE",
    "AuditBucketName": "V_SECURE_AUDIT_BUCKET",
    "EventBusName": "V_SECURE_EVENT_BUS",
    "DataKeyAlias": "V_SECURE_KMS_KEY_ID",
    "SigningKeyAlias": "V_SECURE_AUDIT_SIGNING_KEY_ID",
    "AuditRetentionDays": "V_SECURE_RETENTION_DAYS",
}


class BootstrapCliError(RuntimeError):
    """The token could not be delivered safely (the file exists, the stack is missing...)."""


def settings_from_stack(stack_name: str) -> dict[str, str]:
    """The ``V_SECURE_*`` settings named by the stateful stack's outputs.

    Example::

        settings_from_stack("v-secure-prod-stateful")["V_SECURE_SECRETS_TABLE"]  # "v-secure-prod-secrets"
    """
    from chalicelib.aws import client

    stacks = client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = sorted(set(STACK_OUTPUT_SETTINGS) - set(outputs))
    if missing:
        raise BootstrapCliError(f"stack {stack_name} has no output(s) {', '.join(missing)}")
    return {setting: outputs[output] for output, setting in STACK_OUTPUT_SETTINGS.items()}


def write_token_file(path: Path, token: str) -> Path:
    """Create ``path`` with mode 0600 and the token; refuse to replace an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BootstrapCliError(f"{path} exists; choose a new file (a token is never overwritten)") from None
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(token + "\n")
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.access_control.bootstrap_cli",
                                     description="Create the root principal and its first token (not printed).")
    parser.add_argument("--from-stack", metavar="STACK",
                        help="read table/bucket/key names from this stateful stack's outputs")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--token-file", type=Path, help="new file to write the token to (mode 0600)")
    where.add_argument("--profile", help="CLI profile to write the endpoint and token to (mode 0600)")
    parser.add_argument("--endpoint", help="API URL stored with --profile")
    parser.add_argument("--ttl-seconds", type=int, help="token lifetime (default: no expiry)")
    args = parser.parse_args(argv)
    if args.profile and not args.endpoint:
        parser.error("--profile needs --endpoint (the API URL the profile points at)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from chalicelib.local.environment import reset_process_state

    try:
        if args.from_stack:
            os.environ.update(settings_from_stack(args.from_stack))
            reset_process_state()
        if args.token_file is not None and args.token_file.exists():
            raise BootstrapCliError(f"{args.token_file} exists; choose a new file (a token is never overwritten)")
        from chalicelib.access_control.bootstrap import bootstrap_root

        token = bootstrap_root(ttl_seconds=args.ttl_seconds)
        if args.token_file is not None:
            destination = str(write_token_file(args.token_file, token))
        else:
            from chalicelib.cli.profiles import save_profile

            destination = f"profile {args.profile!r} in {save_profile(args.profile, args.endpoint, token)}"
    except BootstrapCliError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"root token written to {destination} (mode 0600); it is not shown anywhere else")
    return 0


if __name__ == "__main__":
    sys.exit(main())
