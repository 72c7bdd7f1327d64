"""``tls_certificate``: a PEM bundle holding a certificate (plus any chain) and its private key.

Rules: at least one PEM certificate, exactly one unencrypted PEM private key, and the key must
match one of the certificates, which is taken as the leaf. An expired certificate is accepted;
the facts say so (``expired=True``) so that it can be reported.

Facts: ``subject``, ``issuer``, ``not_before``, ``not_after``, ``expired``, ``sans``, the leaf's
``fingerprint`` (``sha256:<hex>``), ``key_type`` and ``key_size``.

Example::

    facts = TlsCertificateHandler().validate(cert_pem + key_pem)
    facts.subject, facts.sans  # ("CN=api.example.com", ("DNS:api.example.com",))
    facts.not_after, facts.expired  # (datetime(2027, 1, 15, ...), False)
"""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chalicelib.clock import Clock, SystemClock
from chalicelib.errors import InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.secret_types.base import ValidatedValue, describe_private_key, is_expired, load_pem_key

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_WHAT = "a tls_certificate"


class TlsCertificateHandler:
    """Validates ``tls_certificate`` bundles; ``clock`` decides whether the leaf has expired."""

    type: SecretType = SecretType.TLS_CERTIFICATE

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()

    def validate(self, value: str, *, value_schema: dict[str, Any] | None = None) -> ValidatedValue:
        cert_blocks, key_blocks = split_pem_bundle(value)
        if not cert_blocks:
            raise InvalidSecretValue(f"{_WHAT} bundle must contain a PEM certificate")
        if len(key_blocks) != 1:
            raise InvalidSecretValue(f"{_WHAT} bundle must contain exactly one PEM private key")
        certificates = [_load_certificate(block) for block in cert_blocks]
        key = load_pem_key(key_blocks[0], f"the {_WHAT} private key")
        leaf = matching_certificate(certificates, key)
        return self._facts(leaf, key)

    def _facts(self, leaf: x509.Certificate, key: PrivateKeyTypes) -> ValidatedValue:
        key_type, key_size = describe_private_key(key)
        return ValidatedValue(
            format="pem",
            subject=leaf.subject.rfc4514_string(),
            issuer=leaf.issuer.rfc4514_string(),
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            expired=is_expired(leaf.not_valid_after_utc, self._clock.now()),
            sans=subject_alt_names(leaf),
            fingerprint="sha256:" + leaf.fingerprint(hashes.SHA256()).hex(),
            key_type=key_type,
            key_size=key_size,
        )


def split_pem_bundle(value: str) -> tuple[list[str], list[str]]:
    """``(certificate_blocks, private_key_blocks)``; other PEM blocks (e.g. EC PARAMETERS) are ignored."""
    certificates: list[str] = []
    keys: list[str] = []
    for match in _PEM_BLOCK.finditer(value):
        label = match.group(1)
        if label == "CERTIFICATE":
            certificates.append(match.group(0))
        elif label.endswith("PRIVATE KEY"):
            keys.append(match.group(0))
    return certificates, keys


def _load_certificate(block: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(block.encode())
    except ValueError:
        raise InvalidSecretValue(f"{_WHAT} bundle holds a certificate that cannot be parsed") from None


def matching_certificate(certificates: list[x509.Certificate], key: PrivateKeyTypes) -> x509.Certificate:
    """The first certificate whose public key is ``key``'s, or ``InvalidSecretValue``."""
    wanted = _spki(key.public_key())
    for certificate in certificates:
        try:
            if _spki(certificate.public_key()) == wanted:
                return certificate
        except (ValueError, UnsupportedAlgorithm):
            continue
    raise InvalidSecretValue(f"the {_WHAT} private key does not match the certificate's public key")


def _spki(public_key: PublicKeyTypes) -> bytes:
    return bytes(public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def subject_alt_names(certificate: x509.Certificate) -> tuple[str, ...]:
    """SANs in OpenSSL's notation: ``DNS:example.com``, ``IP:10.0.0.1``, ``URI:...``, ``email:...``."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    except ValueError:
        raise InvalidSecretValue(f"{_WHAT} has a malformed extension") from None
    names = extension.value
    return (
        *(f"DNS:{name}" for name in names.get_values_for_type(x509.DNSName)),
        *(f"IP:{address}" for address in names.get_values_for_type(x509.IPAddress)),
        *(f"URI:{uri}" for uri in names.get_values_for_type(x509.UniformResourceIdentifier)),
        *(f"email:{email}" for email in names.get_values_for_type(x509.RFC822Name)),
    )
