"""The tls_certificate rotator: CA-signed and self-signed renewals, the test's checks, expires_within."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationNotSupported, RotationTestFailed
from chalicelib.rotation.rotators._common import RevokeRefused, RotationConfigInvalid
from chalicelib.rotation.rotators.tls_certificate import ROTATOR, expires_within, read_bundle
from chalicelib.secret_types import validate_value

SANS = ["DNS:api.example.com", "DNS:www.example.com", "IP:10.0.0.7"]


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def pem(certificate: x509.Certificate, *more: x509.Certificate, key: Any) -> str:
    certs = "".join(c.public_bytes(Encoding.PEM).decode() for c in (certificate, *more))
    return certs + key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def make_ca(common_name: str = "Example Internal CA", days: int = 3650) -> tuple[str, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name(common_name)).issuer_name(name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return pem(cert, key=key), cert


def make_leaf(ca_bundle: str | None, *, days: int = 30, start: datetime | None = None,
              sans: list[x509.GeneralName] | None = None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    now = start or datetime.now(UTC)
    ca = read_bundle(ca_bundle) if ca_bundle else None
    builder = (x509.CertificateBuilder().subject_name(name("api.example.com"))
               .issuer_name(ca.leaf.subject if ca else name("api.example.com"))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
               .add_extension(x509.SubjectAlternativeName(sans or [
                   x509.DNSName("api.example.com"), x509.DNSName("www.example.com"),
                   x509.IPAddress(ipaddress.ip_address("10.0.0.7"))]), critical=False))
    certificate = builder.sign(ca.key if ca else key, hashes.SHA256())  # type: ignore[arg-type]
    return pem(certificate, *([ca.leaf] if ca else []), key=key)


def context(config: dict[str, Any] | None = None, current: str | None = None,
            secrets: dict[str, str] | None = None) -> RotationContext:
    return RotationContext(secret_id="tls/api", secret_type=SecretType.TLS_CERTIFICATE, config=config or {},
                           current_value=current, resolve_secret=(secrets or {}).__getitem__)


def test_ca_signed_renewal_keeps_names_and_chains_to_the_ca() -> None:
    ca_bundle, ca_cert = make_ca()
    current = make_leaf(ca_bundle)
    ctx = context({"caSecretId": "pki/ca", "validityDays": 30}, current, {"pki/ca": ca_bundle})
    new = ROTATOR.generate(ctx)
    facts = validate_value(SecretType.TLS_CERTIFICATE, new)
    old_facts = validate_value(SecretType.TLS_CERTIFICATE, current)
    assert (facts.subject, sorted(facts.sans)) == (old_facts.subject, sorted(SANS))
    assert facts.issuer == ca_cert.subject.rfc4514_string() and facts.fingerprint != old_facts.fingerprint
    bundle = read_bundle(new)
    assert bundle.chain == [ca_cert]
    bundle.leaf.verify_directly_issued_by(ca_cert)
    assert timedelta(days=29) < bundle.leaf.not_valid_after_utc - datetime.now(UTC) <= timedelta(days=30)
    assert bundle.key.public_key() != read_bundle(current).key.public_key()
    ROTATOR.apply(ctx, new)
    ROTATOR.test(ctx, new)


def test_self_signed_renewal_and_key_kind_kept() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name("svc.internal")).issuer_name(name("svc.internal"))
            .public_key(key.public_key()).serial_number(1).not_valid_before(now - timedelta(days=2))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("svc.internal")]), critical=False)
            .sign(key, None))
    current = pem(cert, key=key)
    ctx = context(current=current)
    new = ROTATOR.generate(ctx)
    facts = validate_value(SecretType.TLS_CERTIFICATE, new)
    assert facts.key_type == "ed25519" and facts.issuer == facts.subject == cert.subject.rfc4514_string()
    ROTATOR.test(ctx, new)


def test_validity_never_outlives_the_ca() -> None:
    ca_bundle, ca_cert = make_ca(days=10)
    ctx = context({"caSecretId": "ca", "validityDays": 365}, make_leaf(ca_bundle, days=5), {"ca": ca_bundle})
    new = read_bundle(ROTATOR.generate(ctx))
    assert new.leaf.not_valid_after_utc == ca_cert.not_valid_after_utc


def test_first_certificate_from_subject_and_sans_options() -> None:
    ca_bundle, _ = make_ca()
    ctx = context({"caSecretId": "ca", "subject": "CN=new.example.com,O=Example",
                   "sans": ["DNS:new.example.com", "IP:10.1.2.3"]}, None, {"ca": ca_bundle})
    facts = validate_value(SecretType.TLS_CERTIFICATE, ROTATOR.generate(ctx))
    assert facts.subject == "CN=new.example.com,O=Example" and facts.sans == ("DNS:new.example.com", "IP:10.1.2.3")
    with pytest.raises(RotationNotSupported):
        ROTATOR.generate(context())


def test_a_certificate_from_another_ca_fails_the_test() -> None:
    ca_bundle, _ = make_ca()
    rogue_bundle, _ = make_ca("Example Internal CA")  # same name, other key
    ctx = context({"caSecretId": "ca"}, make_leaf(ca_bundle), {"ca": ca_bundle})
    with pytest.raises(RotationTestFailed, match="not signed by the expected CA"):
        ROTATOR.test(ctx, make_leaf(rogue_bundle))
    with pytest.raises(RotationTestFailed, match="issuer"):
        ROTATOR.test(ctx, make_leaf(None))


def test_expired_or_renamed_certificates_fail_the_test() -> None:
    ca_bundle, _ = make_ca()
    ctx = context({"caSecretId": "ca"}, make_leaf(ca_bundle), {"ca": ca_bundle})
    expired = make_leaf(ca_bundle, days=1, start=datetime.now(UTC) - timedelta(days=10))
    with pytest.raises(RotationTestFailed, match="not valid now"):
        ROTATOR.test(ctx, expired)
    renamed = make_leaf(ca_bundle, sans=[x509.DNSName("evil.example.com")])
    with pytest.raises(RotationTestFailed, match="alternative names differ"):
        ROTATOR.test(ctx, renamed)
    with pytest.raises(RotationTestFailed, match="not a valid tls_certificate"):
        ROTATOR.test(ctx, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_expires_within() -> None:
    bundle = make_leaf(None, days=20)
    assert expires_within(bundle, 30) and not expires_within(bundle, 10)
    assert expires_within(bundle, 0, now=datetime.now(UTC) + timedelta(days=21))


def test_options_and_revoke() -> None:
    leaf = make_leaf(None)
    with pytest.raises(RotationConfigInvalid, match="not a CA"):
        ROTATOR.generate(context({"caSecretId": "leaf"}, leaf, {"leaf": leaf}))
    for bad in ({"keyType": "dsa"}, {"validityDays": 0}, {"sans": ["NOPE:x"]}, {"subject": "not a name"}):
        with pytest.raises(RotationConfigInvalid):
            ROTATOR.check_config(bad)
    with pytest.raises(RevokeRefused):
        ROTATOR.revoke(context(current=leaf), leaf)
    ROTATOR.revoke(context(current=make_leaf(None)), leaf)
