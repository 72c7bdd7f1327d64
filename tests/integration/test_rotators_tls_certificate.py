"""The tls_certificate rotator with its CA stored in the vault, proven by real TLS handshakes on loopback."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from chalicelib.models import SecretType
from chalicelib.rotation.rotators import RotationContext, RotationTestFailed
from chalicelib.rotation.rotators.tls_certificate import ROTATOR, TlsCertificateRotator, expires_within, read_bundle
from tests.integration.helpers import Api, secret_url, unique
from tests.rotator_support import rotate_like_engine


def make_ca(common_name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.PEM).decode() + key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def handshake(bundle: str, ca_bundle: str, server_name: str, tmp_path: Path) -> str:
    """Serve ``bundle`` on loopback and connect with only the CA as trust anchor; returns the TLS version."""
    parsed = read_bundle(bundle)
    chain = tmp_path / "chain.pem"
    chain.write_text("".join(c.public_bytes(Encoding.PEM).decode() for c in [parsed.leaf, *parsed.chain]))
    key = tmp_path / "key.pem"
    key.write_text(parsed.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode())
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(chain, key)
    client_context = ssl.create_default_context(cadata=read_bundle(ca_bundle).leaf.public_bytes(Encoding.PEM).decode())
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        failures: list[BaseException] = []

        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as error:
                failures.append(error)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                client_context.wrap_socket(raw, server_hostname=server_name) as tls:
            assert tls.recv(2) == b"ok"
            version = tls.version() or ""
        thread.join(timeout=5)
    assert not failures
    return version


def test_ca_signed_rotation_serves_tls_for_the_same_names(api_server: str, root_token: str, tmp_path: Path) -> None:
    api = Api(api_server, root_token)
    ca_id, secret_id = unique("pki-ca"), unique("tls-api")
    ca_bundle = make_ca("v-secure test CA")
    assert api.store(ca_id, ca_bundle, type="tls_certificate").status_code == 201

    def read_secret(secret: str) -> str:
        return str(api.get(secret_url(secret)).json()["value"])

    ctx = RotationContext(secret_id=secret_id, secret_type=SecretType.TLS_CERTIFICATE,
                          config={"caSecretId": ca_id, "validityDays": 20, "subject": "CN=api.internal.test",
                                  "sans": ["DNS:api.internal.test", "IP:127.0.0.1"]},
                          resolve_secret=read_secret)
    first = ROTATOR.generate(ctx)
    assert api.store(secret_id, first, type="tls_certificate").status_code == 201
    assert expires_within(first, 30) and not expires_within(first, 10)

    new = rotate_like_engine(ROTATOR, replace(ctx, current_value=first), store=lambda v: api.store(secret_id, v))
    served = api.get(secret_url(secret_id)).json()
    assert (served["version"], served["value"]) == (2, new)
    assert read_bundle(new).leaf.serial_number != read_bundle(first).leaf.serial_number
    assert handshake(new, ca_bundle, "api.internal.test", tmp_path).startswith("TLS")
    assert handshake(new, ca_bundle, "127.0.0.1", tmp_path).startswith("TLS")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(new, ca_bundle, "other.internal.test", tmp_path)

    rogue_ca = make_ca("v-secure test CA")  # same name, another key

    class RogueIssuer(TlsCertificateRotator):
        def generate(self, ctx: RotationContext) -> str:
            return super().generate(replace(ctx, resolve_secret=lambda secret: rogue_ca))

    with pytest.raises(RotationTestFailed, match="not signed by the expected CA"):
        rotate_like_engine(RogueIssuer(), replace(ctx, current_value=new), store=lambda v: api.store(secret_id, v))
    served = api.get(secret_url(secret_id)).json()
    assert (served["version"], served["value"]) == (2, new), "a failed test leaves the secret unchanged"
    with pytest.raises(ssl.SSLCertVerificationError):  # what the test step protected clients from
        handshake(RogueIssuer().generate(replace(ctx, current_value=new)), ca_bundle, "api.internal.test", tmp_path)
