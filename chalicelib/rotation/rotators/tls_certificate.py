"""``tls_certificate`` rotation: a new key and certificate with the same subject and SANs.

Options:

* ``caSecretId``: a ``tls_certificate`` secret holding the internal CA (its certificate, any chain
  above it, and its private key). Without it the new certificate is self-signed;
* ``validityDays`` (default 90; never past the CA's own expiry);
* ``keyType``: ``ec`` (P-256), ``rsa`` or ``ed25519``; by default the current key's kind (``keySize``
  for RSA, default 3072 bits);
* ``subject`` (RFC 4514, e.g. ``CN=api.example.com``) and ``sans`` (``["DNS:api.example.com",
  "IP:10.0.0.1"]``): used only when there is no current certificate to copy them from.

The new value is a PEM bundle: the leaf certificate, the CA chain, then the PKCS#8 private key.
The test checks the bundle parses, the key matches the leaf, the leaf is signed by the CA (or by
itself), it is valid now, and its subject and SANs are the current ones. :func:`expires_within`
lets the scheduler start a rotation when a certificate is about to expire.

Example::

    if expires_within(current_bundle, days=30):
        ...  # rotate now
    bundle = ROTATOR.generate(RotationContext(..., config={"caSecretId": "pki/internal-ca"},
                                               current_value=current_bundle, resolve_secret=read))
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from chalicelib.errors import InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.rotation.rotators._common import (
    RotationConfigInvalid,
    checked,
    choice,
    optional_text,
    positive_int,
    refuse_current,
    resolve,
    text_list,
)
from chalicelib.rotation.rotators.base import RotationContext, RotationNotSupported, RotationTestFailed
from chalicelib.secret_types import validate_value
from chalicelib.secret_types.base import load_pem_key
from chalicelib.secret_types.tls_certificate import matching_certificate, split_pem_bundle, subject_alt_names

KEY_TYPES = ("ec", "rsa", "ed25519")
DEFAULT_VALIDITY_DAYS = 90
DEFAULT_RSA_BITS = 3072
BACKDATE = timedelta(minutes=5)
"""``notBefore`` is set a little in the past so that clients with a slow clock accept the certificate."""


@dataclass(frozen=True)
class Bundle:
    """A parsed PEM bundle: the leaf (the certificate matching the key), the other certificates, the key."""

    leaf: x509.Certificate
    chain: list[x509.Certificate]
    key: PrivateKeyTypes


class TlsCertificateRotator:
    """Issues a fresh certificate for the same names, from an internal CA or self-signed."""

    secret_type = SecretType.TLS_CERTIFICATE

    def check_config(self, config: dict[str, Any]) -> None:
        optional_text(config, "caSecretId")
        positive_int(config, "validityDays", DEFAULT_VALIDITY_DAYS, maximum=3650)
        choice(config, "keyType", KEY_TYPES, None)
        positive_int(config, "keySize", DEFAULT_RSA_BITS, minimum=2048, maximum=8192)
        subject = optional_text(config, "subject")
        if subject is not None:
            _subject_from(subject)
        _sans_from(text_list(config, "sans"))

    def generate(self, ctx: RotationContext) -> str:
        self.check_config(ctx.config)
        current = _readable_bundle(ctx.current_value)
        subject, sans = _names(ctx.config, current)
        key = _new_key(ctx.config, current.key if current else None)
        ca = self._ca(ctx)
        now = datetime.now(UTC)
        not_after = now + timedelta(days=int(ctx.config.get("validityDays") or DEFAULT_VALIDITY_DAYS))
        if ca is not None:
            not_after = min(not_after, ca.leaf.not_valid_after_utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(subject)
                   .issuer_name(ca.leaf.subject if ca else subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - BACKDATE)
                   .not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False))
        if sans is not None:
            builder = builder.add_extension(sans, critical=False)
        builder = _copy_usages(builder, current.leaf if current else None)
        signer: Any = ca.key if ca else key
        if ca is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),  # type: ignore[arg-type]
                critical=False)
        certificate = builder.sign(signer, _digest_for(signer))
        chain = [ca.leaf, *ca.chain] if ca else []
        pem = "".join(c.public_bytes(Encoding.PEM).decode() for c in [certificate, *chain])
        return pem + key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()

    def apply(self, ctx: RotationContext, new_value: str) -> None:
        """Nothing to do: servers pick the new bundle up from v-secure."""

    def test(self, ctx: RotationContext, new_value: str) -> None:
        checked(SecretType.TLS_CERTIFICATE, new_value)
        try:
            bundle = read_bundle(new_value)
        except InvalidSecretValue as error:
            raise RotationTestFailed(f"the new certificate bundle is not usable: {error.message}") from None
        self._check_chain(ctx, bundle)
        _check_validity(bundle.leaf)
        current = _readable_bundle(ctx.current_value)
        if current is not None:
            _check_same_names(current.leaf, bundle.leaf)

    def revoke(self, ctx: RotationContext, old_value: str) -> None:
        """Nothing to do: v-secure's CA keeps no revocation list; old certificates simply expire."""
        refuse_current(ctx, old_value)

    def _ca(self, ctx: RotationContext) -> Bundle | None:
        ca_id = ctx.config.get("caSecretId")
        if not ca_id:
            return None
        try:
            ca = read_bundle(resolve(ctx, ca_id, "caSecretId"))
        except InvalidSecretValue:
            raise RotationConfigInvalid("the secret named by 'caSecretId' is not a certificate bundle") from None
        if not _is_ca(ca.leaf):
            raise RotationConfigInvalid("the certificate named by 'caSecretId' is not a CA certificate")
        return ca

    def _check_chain(self, ctx: RotationContext, bundle: Bundle) -> None:
        ca = self._ca(ctx)
        issuer = ca.leaf if ca else bundle.leaf
        if bundle.leaf.issuer != issuer.subject:
            raise RotationTestFailed("the new certificate's issuer is not the expected CA")
        try:
            bundle.leaf.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            raise RotationTestFailed("the new certificate is not signed by the expected CA") from None


def read_bundle(value: str) -> Bundle:
    """Parse a ``tls_certificate`` bundle (the leaf is the certificate that matches the key)."""
    validate_value(SecretType.TLS_CERTIFICATE, value)
    cert_blocks, key_blocks = split_pem_bundle(value)
    certificates = [x509.load_pem_x509_certificate(block.encode()) for block in cert_blocks]
    key = load_pem_key(key_blocks[0], "the tls_certificate private key")
    leaf = matching_certificate(certificates, key)
    return Bundle(leaf=leaf, chain=[c for c in certificates if c is not leaf], key=key)


def _readable_bundle(value: str | None) -> Bundle | None:
    """The current bundle, or None when there is none or it cannot be read (a first issue then)."""
    if not value:
        return None
    try:
        return read_bundle(value)
    except InvalidSecretValue:
        return None


def expires_within(value: str, days: float, *, now: datetime | None = None) -> bool:
    """True if the bundle's leaf certificate expires within ``days`` days of ``now`` (or already has).

    Example::

        expires_within(bundle_pem, 30)  # True: rotate now
    """
    leaf = read_bundle(value).leaf
    moment = now or datetime.now(UTC)
    return leaf.not_valid_after_utc <= moment + timedelta(days=days)


def _names(config: dict[str, Any], current: Bundle | None) -> tuple[x509.Name, x509.SubjectAlternativeName | None]:
    if current is not None:
        try:
            sans = current.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            sans = None
        return current.leaf.subject, sans
    subject = optional_text(config, "subject")
    if subject is None:
        raise RotationNotSupported("a first certificate needs the rotation options 'subject' (and 'sans')")
    return _subject_from(subject), _sans_from(text_list(config, "sans"))


def _subject_from(text: str) -> x509.Name:
    try:
        return x509.Name.from_rfc4514_string(text)
    except ValueError:
        raise RotationConfigInvalid("rotation option 'subject' is not an RFC 4514 name") from None


def _sans_from(items: list[str]) -> x509.SubjectAlternativeName | None:
    names: list[x509.GeneralName] = []
    for item in items:
        kind, _, name = item.partition(":")
        try:
            if kind == "DNS" and name:
                names.append(x509.DNSName(name))
            elif kind == "IP":
                names.append(x509.IPAddress(ipaddress.ip_address(name)))
            elif kind == "URI" and name:
                names.append(x509.UniformResourceIdentifier(name))
            elif kind == "email" and name:
                names.append(x509.RFC822Name(name))
            else:
                raise ValueError(kind)
        except ValueError:
            raise RotationConfigInvalid("rotation option 'sans' holds entries like DNS:host, IP:10.0.0.1, "
                                        "URI:..., email:...") from None
    return x509.SubjectAlternativeName(names) if names else None


def _new_key(config: dict[str, Any], current: PrivateKeyTypes | None) -> CertificateIssuerPrivateKeyTypes:
    kind = config.get("keyType") or _kind_of(current)
    if kind == "rsa":
        size = config.get("keySize") or (current.key_size if isinstance(current, rsa.RSAPrivateKey) else None)
        return rsa.generate_private_key(public_exponent=65537, key_size=int(size or DEFAULT_RSA_BITS))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    curve = type(current.curve)() if isinstance(current, ec.EllipticCurvePrivateKey) else ec.SECP256R1()
    return ec.generate_private_key(curve)


def _kind_of(key: PrivateKeyTypes | None) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    return "ec"


def _digest_for(signer: Any) -> hashes.SHA256 | None:
    return None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _copy_usages(builder: x509.CertificateBuilder, previous: x509.Certificate | None) -> x509.CertificateBuilder:
    """Keep the current certificate's key usages; a first certificate is a TLS server certificate."""
    copied = False
    if previous is not None:
        for extension_type in (x509.KeyUsage, x509.ExtendedKeyUsage):
            try:
                extension = previous.extensions.get_extension_for_class(extension_type)
            except x509.ExtensionNotFound:
                continue
            builder = builder.add_extension(extension.value, critical=extension.critical)
            copied = True
    if not copied:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_validity(leaf: x509.Certificate) -> None:
    now = datetime.now(UTC)
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        raise RotationTestFailed("the new certificate is not valid now (check its notBefore/notAfter)")


def _check_same_names(current: x509.Certificate, new: x509.Certificate) -> None:
    if current.subject != new.subject:
        raise RotationTestFailed("the new certificate's subject differs from the current one")
    if sorted(subject_alt_names(current)) != sorted(subject_alt_names(new)):
        raise RotationTestFailed("the new certificate's subject alternative names differ from the current ones")


ROTATOR = TlsCertificateRotator()
