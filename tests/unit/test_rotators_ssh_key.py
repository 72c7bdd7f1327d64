"""The ssh_key rotator: OpenSSH key pairs, the header/private-key match test, and the public-key hooks."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from chalicelib.errors import DependencyUnavailable
from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationTestFailed
from chalicelib.rotation.rotators._common import RevokeRefused, RotationConfigInvalid
from chalicelib.rotation.rotators.ssh_key import (
    ROTATOR,
    SshKeyRotator,
    _header_public_key,
    _sign_and_verify,
    public_key_line,
)
from chalicelib.secret_types import validate_value


def context(config: dict[str, Any] | None = None, current: str | None = None) -> RotationContext:
    return RotationContext(secret_id="deploy/ssh", secret_type=SecretType.SSH_KEY, config=config or {},
                           current_value=current, resolve_secret={"hook/token": "hook-admin"}.__getitem__)


def openssh(key: Any) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()


def test_ed25519_by_default_rsa_on_request_and_kind_kept() -> None:
    value = ROTATOR.generate(context())
    facts = validate_value(SecretType.SSH_KEY, value)
    assert (facts.format, facts.algorithm, (facts.fingerprint or "")[:7]) == ("openssh", "ssh-ed25519", "SHA256:")
    ROTATOR.test(context(), value)
    rsa_value = ROTATOR.generate(context({"keyType": "rsa", "keySize": 2048}))
    facts = validate_value(SecretType.SSH_KEY, rsa_value)
    assert (facts.algorithm, facts.key_size) == ("ssh-rsa", 2048)
    ROTATOR.test(context(), rsa_value)
    current = openssh(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    kept = ROTATOR.generate(context({"keySize": 2048}, current))
    assert validate_value(SecretType.SSH_KEY, kept).key_type == "rsa"


def swap_header_public_key(value: str, other: str) -> str:
    """Put ``other``'s public key in ``value``'s clear header (same length for Ed25519)."""
    def decode(text: str) -> bytes:
        return base64.b64decode("".join(line for line in text.strip().splitlines() if not line.startswith("-----")))

    data, donor = bytearray(decode(value)), decode(other)
    offset = len(b"openssh-key-v1\x00")
    for _ in range(3):
        (length,) = struct.unpack_from(">I", data, offset)
        offset += 4 + length
    start = offset + 4 + 4  # skip the key count and the blob length
    data[start:start + 51] = donor[start:start + 51]
    body = base64.b64encode(bytes(data)).decode()
    lines = [body[i:i + 70] for i in range(0, len(body), 70)]
    return "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *lines, "-----END OPENSSH PRIVATE KEY-----", ""])


def test_a_header_public_key_that_is_not_the_private_keys_fails_the_test() -> None:
    value = openssh(ed25519.Ed25519PrivateKey.generate())
    forged = swap_header_public_key(value, openssh(ed25519.Ed25519PrivateKey.generate()))
    assert forged != value
    with pytest.raises(RotationTestFailed):  # the OpenSSH loader already refuses the mismatch
        ROTATOR.test(context(), forged)
    assert _header_public_key(forged) != _header_public_key(value)


def test_the_challenge_check_refuses_a_foreign_public_key() -> None:
    private_key = ed25519.Ed25519PrivateKey.generate()
    _sign_and_verify(private_key, private_key.public_key())
    with pytest.raises(RotationTestFailed, match="did not verify"):
        _sign_and_verify(private_key, ed25519.Ed25519PrivateKey.generate().public_key())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(RotationTestFailed, match="Ed25519 or RSA"):
        _sign_and_verify(rsa_key, private_key.public_key())


def test_pem_and_garbage_fail_the_test() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(RotationTestFailed, match="OpenSSH format"):
        ROTATOR.test(context(), pem.decode())
    with pytest.raises(RotationTestFailed, match="not a valid ssh_key"):
        ROTATOR.test(context(), "ssh-ed25519 AAAA")


def test_hooks_receive_public_keys_only() -> None:
    seen: list[httpx.Request] = []

    def hook(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404 if request.url.path == "/revoke" else 200)

    rotator = SshKeyRotator(transport=httpx.MockTransport(hook))
    config = {"provider": {"installUrl": "https://hooks.example/install", "revokeUrl": "https://hooks.example/revoke",
                           "authSecretId": "hook/token"}}
    old, new = rotator.generate(context()), rotator.generate(context())
    rotator.apply(context(config, old), new)
    rotator.revoke(context(config, new), old)
    install, revoke = (json.loads(request.content) for request in seen)
    assert install == {"secretId": "deploy/ssh", "publicKey": public_key_line(new),
                       "fingerprint": validate_value(SecretType.SSH_KEY, new).fingerprint}
    assert revoke["publicKey"] == public_key_line(old)
    assert all("PRIVATE" not in request.content.decode() for request in seen)
    assert seen[0].headers["authorization"] == "Bearer hook-admin"
    failing = SshKeyRotator(transport=httpx.MockTransport(lambda request: httpx.Response(403)))
    with pytest.raises(DependencyUnavailable):
        failing.apply(context(config, old), new)


def test_options_and_revoke_of_current() -> None:
    for bad in ({"keyType": "dsa"}, {"keyType": "rsa", "keySize": 1024}, {"provider": {"installUrl": "http://x.y/"}}):
        with pytest.raises(RotationConfigInvalid):
            ROTATOR.generate(context(bad))
    value = ROTATOR.generate(context())
    with pytest.raises(RevokeRefused):
        ROTATOR.revoke(context(current=value), value)
