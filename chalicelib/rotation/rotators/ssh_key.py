"""``ssh_key`` rotation: a new Ed25519 or RSA key pair in OpenSSH format.

Options: ``keyType`` (``ed25519`` or ``rsa``; by default the current key's kind, else Ed25519),
``keySize`` for RSA (default 3072 bits), and an optional ``provider`` block of hooks that only
ever receive public keys:

* ``provider.installUrl``: ``apply`` posts ``{"secretId", "publicKey", "fingerprint"}`` so that the
  new public key is authorized (e.g. added to ``authorized_keys`` by a deployment hook);
* ``provider.revokeUrl``: ``revoke`` posts the old key's ``{"secretId", "publicKey", "fingerprint"}``
  (2xx or 404 accepted);
* ``provider.authSecretId``, ``provider.timeoutSeconds``: as for ``api_key``.

The fingerprint (``SHA256:...``, as ``ssh-keygen -lf`` prints it) is recorded with the version by
the type validator. The test parses the OpenSSH container and checks that the public key stored in
its clear header is the private key's own, by signing a challenge and verifying it with that
public key.

Example::

    value = ROTATOR.generate(ctx)
    ROTATOR.test(ctx, value)
    public_key_line(value)  # "ssh-ed25519 AAAAC3Nz..."
"""

from __future__ import annotations

import base64
import os
import struct
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_ssh_public_key,
)

from chalicelib.errors import DependencyUnavailable, InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.rotation.rotators._common import (
    checked,
    choice,
    optional_text,
    positive_int,
    refuse_current,
    resolve,
    section,
)
from chalicelib.rotation.rotators._http import HttpHook, bearer, check_url, host_of
from chalicelib.rotation.rotators.base import RotationContext, RotationTestFailed
from chalicelib.secret_types.base import load_pem_key
from chalicelib.secret_types.ssh_key import OPENSSH_HEADER, load_openssh_key, public_key_identity

KEY_TYPES = ("ed25519", "rsa")
DEFAULT_RSA_BITS = 3072
_MAGIC = b"openssh-key-v1\x00"
_CHALLENGE = b"v-secure ssh_key rotation test "


class SshKeyRotator:
    """Makes a new OpenSSH key pair and proves its halves belong together."""

    secret_type = SecretType.SSH_KEY

    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self._transport = transport

    def check_config(self, config: dict[str, Any]) -> None:
        choice(config, "keyType", KEY_TYPES, None)
        positive_int(config, "keySize", DEFAULT_RSA_BITS, minimum=2048, maximum=8192)
        provider = section(config, "provider")
        for option in ("installUrl", "revokeUrl"):
            url = optional_text(provider, option, "provider")
            if url is not None:
                check_url(url, f"provider.{option}")
        optional_text(provider, "authSecretId", "provider")
        positive_int(provider, "timeoutSeconds", 10, maximum=120, where="provider")

    def generate(self, ctx: RotationContext) -> str:
        self.check_config(ctx.config)
        kind = ctx.config.get("keyType") or _kind_of_current(ctx.current_value)
        key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        if kind == "rsa":
            key = rsa.generate_private_key(public_exponent=65537,
                                           key_size=int(ctx.config.get("keySize") or DEFAULT_RSA_BITS))
        else:
            key = ed25519.Ed25519PrivateKey.generate()
        return key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()

    def apply(self, ctx: RotationContext, new_value: str) -> None:
        """Post the new public key to ``provider.installUrl``, if one is configured."""
        self._notify(ctx, "installUrl", new_value)

    def test(self, ctx: RotationContext, new_value: str) -> None:
        facts = checked(SecretType.SSH_KEY, new_value)
        if facts.format != "openssh":
            raise RotationTestFailed("the new ssh_key is not in OpenSSH format")
        private_key = load_openssh_key(new_value.strip())
        header_key = _header_public_key(new_value)
        if _openssh_public(header_key) != _openssh_public(private_key.public_key()):
            raise RotationTestFailed("the public key in the new ssh_key's header is not the private key's")
        _sign_and_verify(private_key, header_key)

    def revoke(self, ctx: RotationContext, old_value: str) -> None:
        """Post the old public key to ``provider.revokeUrl``, if one is configured."""
        refuse_current(ctx, old_value)
        self._notify(ctx, "revokeUrl", old_value)

    def _notify(self, ctx: RotationContext, option: str, value: str) -> None:
        self.check_config(ctx.config)
        provider = section(ctx.config, "provider")
        url = provider.get(option)
        if not url:
            return
        try:
            private_key = _load_private(value)
        except InvalidSecretValue:
            return  # no public key to name: nothing was or can be installed with it
        _algorithm, fingerprint = public_key_identity(private_key)
        body = {"secretId": ctx.secret_id, "publicKey": _openssh_public(private_key.public_key()),
                "fingerprint": fingerprint}
        auth = provider.get("authSecretId")
        headers = bearer(resolve(ctx, auth, "provider.authSecretId")) if auth else {}
        hook = HttpHook("ssh_key provider", transport=self._transport,
                        timeout=float(provider.get("timeoutSeconds") or 10))
        answer = hook.send("POST", url, headers=headers, json=body)
        if not answer.is_success and not (option == "revokeUrl" and answer.status_code == 404):
            raise DependencyUnavailable("ssh_key provider", f"{host_of(url)} answered HTTP {answer.status_code}")


def public_key_line(value: str) -> str:
    """The ``authorized_keys`` line (``ssh-ed25519 AAAA...``) of an OpenSSH or PEM private key value."""
    return _openssh_public(_load_private(value).public_key())


def _load_private(value: str) -> PrivateKeyTypes:
    stripped = value.strip()
    if stripped.startswith(OPENSSH_HEADER):
        return load_openssh_key(stripped)
    return load_pem_key(stripped, "an ssh_key")


def _kind_of_current(value: str | None) -> str:
    if value and value.strip().startswith(OPENSSH_HEADER):
        try:
            if isinstance(load_openssh_key(value.strip()), rsa.RSAPrivateKey):
                return "rsa"
        except InvalidSecretValue:
            pass
    return "ed25519"


def _openssh_public(key: PublicKeyTypes) -> str:
    return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def _header_public_key(value: str) -> PublicKeyTypes:
    """The first public key of the container's clear header (``openssh-key-v1``, see OpenSSH PROTOCOL.key)."""
    body = "".join(line for line in value.strip().splitlines() if not line.startswith("-----"))
    try:
        data = base64.b64decode(body, validate=True)
        if not data.startswith(_MAGIC):
            raise ValueError("magic")
        offset = len(_MAGIC)
        for _field in ("ciphername", "kdfname", "kdfoptions"):
            _, offset = _read_string(data, offset)
        (count,), offset = struct.unpack_from(">I", data, offset), offset + 4
        if count != 1:
            raise ValueError("count")
        blob, _ = _read_string(data, offset)
        algorithm, _ = _read_string(blob, 0)
        line = algorithm + b" " + base64.b64encode(blob)
        return load_ssh_public_key(line)
    except (ValueError, struct.error, UnsupportedAlgorithm):
        raise RotationTestFailed("the new ssh_key's OpenSSH container cannot be read") from None


def _read_string(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", data, offset)
    start = offset + 4
    if start + length > len(data):
        raise ValueError("truncated")
    return data[start:start + length], start + length


def _sign_and_verify(private_key: PrivateKeyTypes, public_key: PublicKeyTypes) -> None:
    challenge = _CHALLENGE + os.urandom(16)
    try:
        if isinstance(private_key, ed25519.Ed25519PrivateKey) and isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(private_key.sign(challenge), challenge)
            return
        if isinstance(private_key, rsa.RSAPrivateKey) and isinstance(public_key, rsa.RSAPublicKey):
            signature = private_key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
            public_key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
            return
    except InvalidSignature:
        raise RotationTestFailed("a challenge signed with the new ssh_key did not verify") from None
    raise RotationTestFailed("the new ssh_key must be Ed25519 or RSA")


ROTATOR = SshKeyRotator()
