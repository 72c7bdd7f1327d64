"""Test support for the key providers: a SoftHSM2 token directory, provider environments.

SoftHSM2 reads ``SOFTHSM2_CONF`` once, when the PKCS#11 module is first loaded, and a token
initialized later is not seen by a process that already loaded it. So :func:`softhsm` sets up
one token directory per test process with every token the tests use, before any test loads
the module, and returns the same :class:`SoftHsm` to every caller.

Example::

    hsm = softhsm()                       # skips with "service unavailable: ..." without SoftHSM2
    with provider_env(hsm.env("vs-unit")):
        ...                                # the process now writes with the PKCS#11 provider
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import service_unavailable

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
PIN = "pin-canary-7f3a9c51"
"""A canary: it must never show up in a log line, an error body or an audit event."""
SO_PIN = "so-pin-4e21d0"
KEY_LABEL = "v-secure-master"
TOKENS = ("vs-unit", "vs-rotate", "vs-nokey", "vs-wrongpin", "vs-api", "vs-rewrap", "vs-logs")
"""Every token the tests of one process use (see the module docstring)."""


def softhsm_module() -> str | None:
    return next((path for path in MODULE_CANDIDATES if Path(path).is_file()), None)


def init_token(conf: Path, label: str, pin: str = PIN, so_pin: str = SO_PIN) -> None:
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
                   check=True, capture_output=True, env={**os.environ, "SOFTHSM2_CONF": str(conf)})


def write_conf(directory: Path) -> Path:
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
                    "slots.removable = false\n")
    return conf


@dataclass
class SoftHsm:
    module: str
    conf: Path
    tokens: tuple[str, ...] = field(default=TOKENS)

    def env(self, token: str, *, pin: str | None = PIN, key_label: str = KEY_LABEL) -> dict[str, str | None]:
        """The settings of a vault that writes with ``token``'s key."""
        return {"V_SECURE_KEY_PROVIDER": "pkcs11", "V_SECURE_PKCS11_MODULE": self.module,
                "V_SECURE_PKCS11_TOKEN_LABEL": token, "V_SECURE_PKCS11_PIN": pin,
                "V_SECURE_PKCS11_PIN_FILE": None, "V_SECURE_PKCS11_KEY_LABEL": key_label}


_softhsm: SoftHsm | None = None


def softhsm() -> SoftHsm:
    """This process's SoftHSM2 with every token of :data:`TOKENS` initialized (PIN :data:`PIN`)."""
    global _softhsm
    if _softhsm is not None:
        return _softhsm
    module = softhsm_module()
    if module is None or shutil.which("softhsm2-util") is None:
        service_unavailable("softhsm2 not installed", "apt-get install softhsm2 (.ci/install-softhsm.sh)")
    try:
        import pkcs11  # noqa: F401
    except ImportError as error:
        service_unavailable("python-pkcs11 not installed", error)
    directory = tempfile.mkdtemp(prefix="v-secure-softhsm-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    conf = write_conf(Path(directory))
    for label in TOKENS:
        init_token(conf, label)
    os.environ["SOFTHSM2_CONF"] = str(conf)
    _softhsm = SoftHsm(module, conf)
    return _softhsm


PROVIDER_SETTINGS = ("V_SECURE_KEY_PROVIDER", "V_SECURE_KEY_PROVIDERS_READ", "V_SECURE_ENCRYPTION_KEY",
                     "V_SECURE_KEY_DERIVATION_ITERATIONS", "V_SECURE_PKCS11_MODULE", "V_SECURE_PKCS11_TOKEN_LABEL",
                     "V_SECURE_PKCS11_PIN", "V_SECURE_PKCS11_PIN_FILE", "V_SECURE_PKCS11_KEY_LABEL",
                     "V_SECURE_KMS_KEY_ID")


@contextmanager
def provider_env(env: Mapping[str, str | None]) -> Iterator[None]:
    """Run with these key-provider settings (None removes one), then restore the previous ones.

    Settings, boto3 clients and every service singleton (keyring, vault service...) are reset on
    the way in and out, and so is the ``/health`` cache, so the in-process API server follows.
    """
    saved = {name: os.environ.get(name) for name in {*PROVIDER_SETTINGS, *env}}
    _apply(env)
    try:
        yield
    finally:
        _apply(saved)


def _apply(env: Mapping[str, str | None]) -> None:
    from chalicelib.api import system
    from chalicelib.local.environment import reset_process_state

    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    reset_process_state()
    system._health.clear()
