"""The ssh_key rotator against OpenSSH's own ``ssh-keygen`` and an ``authorized_keys`` hook on loopback,
storing through the real API."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationTestFailed
from chalicelib.rotation.rotators.ssh_key import ROTATOR, SshKeyRotator, public_key_line
from chalicelib.secret_types import validate_value
from tests.conftest import service_unavailable
from tests.integration.helpers import Api, secret_url, unique
from tests.rotator_support import LoopbackServer, Seen, rotate_like_engine


def ssh_keygen(*args: str) -> str:
    binary = shutil.which("ssh-keygen")
    if binary is None:
        service_unavailable("ssh-keygen", "OpenSSH client tools are not installed")
    return subprocess.run([binary, *args], check=True, capture_output=True, text=True, timeout=30).stdout


class AuthorizedKeys:
    """The hook a deployment would run: keeps an authorized_keys list."""

    def __init__(self, server: LoopbackServer) -> None:
        self.lines: list[str] = []
        server.route("POST", "/install", self.install)
        server.route("POST", "/revoke", self.revoke)

    def install(self, seen: Seen) -> tuple[int, dict[str, Any] | str]:
        self.lines.append(seen.json()["publicKey"])
        return 200, {"installed": True}

    def revoke(self, seen: Seen) -> tuple[int, dict[str, Any] | str]:
        line = seen.json()["publicKey"]
        if line not in self.lines:
            return 404, {"error": "unknown"}
        self.lines.remove(line)
        return 200, {"removed": True}


@pytest.fixture
def hooks() -> Iterator[tuple[LoopbackServer, AuthorizedKeys]]:
    with LoopbackServer() as server:
        yield server, AuthorizedKeys(server)


@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
def test_ssh_keygen_reads_the_key_and_agrees_on_the_fingerprint(key_type: str, tmp_path: Path) -> None:
    value = ROTATOR.generate(RotationContext("s", SecretType.SSH_KEY, {"keyType": key_type, "keySize": 2048}))
    path = tmp_path / "id_key"
    path.write_text(value)
    path.chmod(0o600)
    assert ssh_keygen("-y", "-f", str(path)).split()[:2] == public_key_line(value).split()[:2]
    fingerprint = ssh_keygen("-l", "-E", "sha256", "-f", str(path)).split()[1]
    assert fingerprint == validate_value(SecretType.SSH_KEY, value).fingerprint


class PemKeys(SshKeyRotator):
    """Hands out PEM instead of OpenSSH: the test step must refuse it."""

    def generate(self, ctx: RotationContext) -> str:
        key = ed25519.Ed25519PrivateKey.generate()
        return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def test_rotation_installs_the_new_key_and_removes_the_old(hooks: tuple[LoopbackServer, AuthorizedKeys],
                                                           api_server: str, root_token: str) -> None:
    server, authorized = hooks
    api = Api(api_server, root_token)
    secret_id = unique("deploy-ssh")
    config = {"provider": {"installUrl": server.url("/install"), "revokeUrl": server.url("/revoke")}}
    ctx = RotationContext(secret_id=secret_id, secret_type=SecretType.SSH_KEY, config=config)
    first = ROTATOR.generate(ctx)
    ROTATOR.apply(ctx, first)
    assert api.store(secret_id, first, type="ssh_key").status_code == 201

    rotator = SshKeyRotator()
    new = rotate_like_engine(rotator, replace(ctx, current_value=first), store=lambda v: api.store(secret_id, v))
    assert authorized.lines == [public_key_line(new)]
    versions = api.get(secret_url(secret_id, "versions")).json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert api.get(secret_url(secret_id)).json()["value"] == new

    with pytest.raises(RotationTestFailed, match="OpenSSH format"):
        rotate_like_engine(PemKeys(), replace(ctx, current_value=new), store=lambda v: api.store(secret_id, v))
    served = api.get(secret_url(secret_id)).json()
    assert (served["version"], served["value"]) == (2, new), "a failed test leaves the secret unchanged"
    assert authorized.lines == [public_key_line(new)], "the key that failed its test is removed again"
