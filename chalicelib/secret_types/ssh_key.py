"""``ssh_key``: an SSH private key, in OpenSSH or PEM form, unencrypted.

Facts: the public key's ``fingerprint`` exactly as ``ssh-keygen -lf`` prints it
(``SHA256:<base64 without padding>``), the SSH ``algorithm`` (``ssh-ed25519``, ``ssh-rsa``,
``ecdsa-sha2-nistp256``...), ``key_type`` and ``key_size``.

Example::

    ssh_keygen_output = open("id_ed25519").read()
    SshKeyHandler().validate(ssh_keygen_output).fingerprint  # "SHA256:3J0v1..."
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_private_key

from chalicelib.errors import InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.secret_types.base import ValidatedValue, describe_private_key, load_pem_key

OPENSSH_HEADER = "-----BEGIN OPENSSH PRIVATE KEY-----"
_WHAT = "an ssh_key"


class SshKeyHandler:
    """Validates ``ssh_key`` values and records the OpenSSH SHA256 fingerprint."""

    type: SecretType = SecretType.SSH_KEY

    def validate(self, value: str, *, value_schema: dict[str, Any] | None = None) -> ValidatedValue:
        stripped = value.strip()
        if stripped.startswith(OPENSSH_HEADER):
            key, key_format = load_openssh_key(stripped), "openssh"
        elif stripped.startswith("-----BEGIN"):
            key, key_format = load_pem_key(stripped, _WHAT), "pem"
        else:
            raise InvalidSecretValue(f"{_WHAT} must be an OpenSSH or PEM private key")
        algorithm, fingerprint = public_key_identity(key)
        key_type, key_size = describe_private_key(key)
        return ValidatedValue(
            format=key_format,
            algorithm=algorithm,
            fingerprint=fingerprint,
            key_type=key_type,
            key_size=key_size,
        )


def load_openssh_key(text: str) -> PrivateKeyTypes:
    """Load an unencrypted ``-----BEGIN OPENSSH PRIVATE KEY-----`` block."""
    try:
        return load_ssh_private_key(text.encode(), password=None)
    except TypeError:
        raise InvalidSecretValue(
            f"{_WHAT} is passphrase-protected; store it unencrypted (v-secure encrypts every value)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidSecretValue(f"{_WHAT} is not a readable OpenSSH private key") from None


def public_key_identity(key: PrivateKeyTypes) -> tuple[str, str]:
    """``(ssh_algorithm, "SHA256:<base64-no-padding>")`` of the key's public half.

    Example::

        public_key_identity(Ed25519PrivateKey.generate())  # ("ssh-ed25519", "SHA256:...")
    """
    try:
        line = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidSecretValue(f"{_WHAT} has a key type SSH does not support") from None
    algorithm, blob = line.split()[:2]
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return algorithm.decode(), "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
