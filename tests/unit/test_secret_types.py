"""Secret-type registry: every type accepts good values, refuses each rule's violation, and never
echoes the value in an error. All key material is generated here; none is checked in."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import json
import os
import shutil
import struct
import subprocess
import textwrap
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import NameOID

from chalicelib.clock import FrozenClock
from chalicelib.errors import InvalidRequest, InvalidSecretValue
from chalicelib.models import SecretType
from chalicelib.secret_types import (
    SecretTypeHandler,
    ValidatedValue,
    get_handler,
    register,
    validate_value,
)
from chalicelib.secret_types.jwt_token import JwtTokenHandler
from chalicelib.secret_types.oauth_token import OauthTokenHandler
from chalicelib.secret_types.tls_certificate import TlsCertificateHandler

CANARY = "Kanary7Q3vX9pLm2"
NOW = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)  # FrozenClock's default start


# --- key material --------------------------------------------------------------------------------


def pem(key: PrivateKeyTypes, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def encrypted_pem(key: PrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()


def openssh(key: PrivateKeyTypes) -> str:
    return pem(key, serialization.PrivateFormat.OpenSSH)


def make_cert(
    key: PrivateKeyTypes,
    *,
    common_name: str = "api.example.com",
    sans: tuple[str, ...] = ("api.example.com",),
    ips: tuple[str, ...] = (),
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=90),
    issuer_key: CertificateIssuerPrivateKeyTypes | None = None,
    issuer_name: str | None = None,
    is_ca: bool = False,
) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]) if issuer_name else subject
    signer = issuer_key or key
    assert isinstance(signer, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in sans]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(signer, algorithm)
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def armour(label: str, body: str) -> str:
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def encrypted_openssh(key: PrivateKeyTypes) -> str:
    """An OpenSSH key whose header says ``aes256-ctr``/``bcrypt`` (built by hand: no bcrypt module)."""
    body = base64.b64decode("".join(openssh(key).strip().splitlines()[1:-1]))
    magic, rest = body[:15], body[15:]

    def read(buf: bytes) -> tuple[bytes, bytes]:
        length = struct.unpack(">I", buf[:4])[0]
        return buf[4 : 4 + length], buf[4 + length :]

    def string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    for _ in range(3):  # ciphername, kdfname, kdfoptions
        _, rest = read(rest)
    nkeys, rest = rest[:4], rest[4:]
    public, rest = read(rest)
    private, _ = read(rest)
    private += bytes(-len(private) % 16)
    kdf_options = string(os.urandom(16)) + struct.pack(">I", 16)
    blob = magic + string(b"aes256-ctr") + string(b"bcrypt") + string(kdf_options) + nkeys
    blob += string(public) + string(private)
    lines = textwrap.wrap(base64.b64encode(blob).decode(), 70)
    return armour("OPENSSH PRIVATE KEY", "\n".join(lines))


def b64url(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def small_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def p384_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def frozen() -> FrozenClock:
    return FrozenClock(NOW)


def rejects(secret_type: SecretType, value: str, schema: dict[str, Any] | None = None) -> InvalidSecretValue:
    with pytest.raises(InvalidSecretValue) as caught:
        validate_value(secret_type, value, schema)
    return caught.value


# --- registry -------------------------------------------------------------------------------------


@pytest.mark.parametrize("secret_type", list(SecretType))
def test_every_type_has_a_handler(secret_type: SecretType) -> None:
    handler = get_handler(secret_type)
    assert isinstance(handler, SecretTypeHandler)
    assert handler.type is secret_type
    assert get_handler(secret_type.value) is handler


def test_unknown_type_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as caught:
        get_handler("password_manager")
    assert not isinstance(caught.value, InvalidSecretValue)


def test_register_replaces_and_returns_the_previous_handler() -> None:
    class Strict:
        type = SecretType.API_KEY

        def validate(self, value: str, *, value_schema: dict[str, Any] | None = None) -> ValidatedValue:
            raise InvalidSecretValue("strict says no")

    previous = register(Strict())
    try:
        assert previous is not None and previous.type is SecretType.API_KEY
        with pytest.raises(InvalidSecretValue, match="strict says no"):
            validate_value(SecretType.API_KEY, "a-perfectly-good-key")
    finally:
        register(previous)  # type: ignore[arg-type]
    assert validate_value(SecretType.API_KEY, "a-perfectly-good-key").format == "opaque"


def test_register_refuses_an_object_that_is_not_a_handler() -> None:
    with pytest.raises(TypeError):
        register(object())  # type: ignore[arg-type]


def test_value_must_be_a_string() -> None:
    with pytest.raises(InvalidSecretValue):
        validate_value(SecretType.API_KEY, b"bytes-are-not-text")  # type: ignore[arg-type]


def test_validated_value_is_frozen_and_reports_only_set_facts() -> None:
    facts = ValidatedValue(format="pem", not_after=NOW, sans=("DNS:a",), expired=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.format = "json"  # type: ignore[misc]
    assert facts.as_facts() == {
        "format": "pem",
        "not_after": NOW.isoformat(),
        "sans": ["DNS:a"],
        "expired": False,
    }
    json.dumps(facts.as_facts())


# --- api_key --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["12345678", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "k" * 4096, "ключ-api-ÄÖÜ"]
)
def test_api_key_accepts(value: str) -> None:
    assert validate_value(SecretType.API_KEY, value) == ValidatedValue(format="opaque")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("1234567", "8 to 4096"),
        ("k" * 4097, "8 to 4096"),
        (" leading-space", "whitespace"),
        ("trailing-space ", "whitespace"),
        ("trailing-newline\n", "whitespace"),
        ("has\x00nul-inside", "control"),
        ("has\ttab-inside", "control"),
        ("has\x7fdel-inside", "control"),
        ("has\x85c1-control", "control"),
    ],
)
def test_api_key_rejects(value: str, reason: str) -> None:
    assert reason in rejects(SecretType.API_KEY, value).message


# --- database_credential --------------------------------------------------------------------------


def db_json(**overrides: Any) -> str:
    document: dict[str, Any] = {
        "engine": "postgres",
        "username": "app",
        "password": "pw-" + CANARY,
        "host": "db.internal",
        "port": 5432,
        "dbname": "orders",
    }
    document.update(overrides)
    return json.dumps({key: value for key, value in document.items() if value is not ...})


def test_database_credential_json() -> None:
    facts = validate_value(SecretType.DATABASE_CREDENTIAL, db_json())
    assert facts == ValidatedValue(
        format="json", engine="postgres", username="app", host="db.internal", port=5432, dbname="orders"
    )


@pytest.mark.parametrize("engine", ["postgres", "mysql", "mariadb"])
def test_database_credential_json_engines(engine: str) -> None:
    assert validate_value(SecretType.DATABASE_CREDENTIAL, db_json(engine=engine)).engine == engine


def test_database_credential_json_allows_extra_keys_string_port_and_no_dbname() -> None:
    value = db_json(
        port="3306",
        engine="mysql",
        dbname=...,
        masterSecretId="arn:aws:secretsmanager:eu-west-1:123:secret:master",
        alternateUsers=[{"username": "app_clone", "password": "x"}],
    )
    facts = validate_value(SecretType.DATABASE_CREDENTIAL, value)
    assert (facts.port, facts.dbname, facts.engine) == (3306, None, "mysql")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"engine": "oracle"}, "'engine' must be one of"),
        ({"engine": ...}, "missing the required field 'engine'"),
        ({"username": ""}, "'username' must be a non-empty string"),
        ({"username": ...}, "missing the required field 'username'"),
        ({"password": ""}, "'password' must be a non-empty string"),
        ({"password": ...}, "missing the required field 'password'"),
        ({"password": 12345678}, "'password' must be a non-empty string"),
        ({"host": ...}, "missing the required field 'host'"),
        ({"port": ...}, "missing the required field 'port'"),
        ({"port": 0}, "'port' must be an integer from 1 to 65535"),
        ({"port": 65536}, "'port' must be an integer from 1 to 65535"),
        ({"port": "54x2"}, "'port' must be an integer from 1 to 65535"),
        ({"port": True}, "'port' must be an integer from 1 to 65535"),
        ({"port": 5432.5}, "'port' must be an integer from 1 to 65535"),
        ({"dbname": ""}, "'dbname' must be a non-empty string"),
    ],
)
def test_database_credential_json_rejects(overrides: dict[str, Any], reason: str) -> None:
    assert reason in rejects(SecretType.DATABASE_CREDENTIAL, db_json(**overrides)).message


@pytest.mark.parametrize("value", ['{"engine": "postgres", ', '{"a": 1} trailing', '{"engine": ["postgres"}'])
def test_database_credential_malformed_json_is_not_taken_for_a_password(value: str) -> None:
    assert "JSON" in rejects(SecretType.DATABASE_CREDENTIAL, value).message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://app:s3cr3t@db.internal:5432/orders",
            ("postgres", "app", "db.internal", 5432, "orders"),
        ),
        ("postgres://app:s3cr3t@db.internal/orders", ("postgres", "app", "db.internal", 5432, "orders")),
        (
            "postgresql+psycopg://app:s3cr3t@10.0.0.5:6432/o?sslmode=require",
            ("postgres", "app", "10.0.0.5", 6432, "o"),
        ),
        ("mysql://root:pw@mysql.local:3307/shop", ("mysql", "root", "mysql.local", 3307, "shop")),
        ("mariadb://svc%40corp:p%3Aw@maria.local", ("mariadb", "svc@corp", "maria.local", 3306, None)),
    ],
)
def test_database_credential_url(url: str, expected: tuple[Any, ...]) -> None:
    facts = validate_value(SecretType.DATABASE_CREDENTIAL, url)
    assert facts.format == "url"
    assert (facts.engine, facts.username, facts.host, facts.port, facts.dbname) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://app:pw@cache:6379/0", "must start with postgresql://"),
        ("postgresql://app@db/orders", "username and a password"),
        ("postgresql://:pw@db/orders", "username and a password"),
        ("postgresql://app:@db/orders", "username and a password"),
        ("postgresql://db.internal/orders", "username and a password"),
        ("postgresql://app:pw@/orders", "must include a host"),
        ("postgresql://app:pw@db:99999/orders", "port"),
        ("postgresql://app:pw@db:0/orders", "port"),
        ("postgresql://app:pw@db:54x2/orders", "port"),
        ("postgresql://app:p w@db/orders", "whitespace"),
        ("postgresql://app:pw@db/orders\n", "whitespace"),
    ],
)
def test_database_credential_url_rejects(url: str, reason: str) -> None:
    assert reason in rejects(SecretType.DATABASE_CREDENTIAL, url).message


def test_database_credential_bare_password_from_the_spec_example() -> None:
    facts = validate_value(SecretType.DATABASE_CREDENTIAL, "super_secret_password_123")
    assert facts == ValidatedValue(format="password")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("two\nlines", "line breaks"),
        ("carriage\rreturn", "line breaks"),
        ("nul\x00byte", "NUL"),
    ],
)
def test_database_credential_bare_password_rejects(value: str, reason: str) -> None:
    assert reason in rejects(SecretType.DATABASE_CREDENTIAL, value).message


# --- jwt_token ------------------------------------------------------------------------------------


def test_jwt_pem_keys(
    rsa_key: rsa.RSAPrivateKey,
    p256_key: ec.EllipticCurvePrivateKey,
    p384_key: ec.EllipticCurvePrivateKey,
    ed_key: ed25519.Ed25519PrivateKey,
) -> None:
    def facts(key: PrivateKeyTypes, **kwargs: Any) -> tuple[Any, ...]:
        result = validate_value(SecretType.JWT_TOKEN, pem(key, **kwargs))
        return result.format, result.algorithm, result.key_type, result.key_size

    assert facts(p256_key) == ("pem", "ES256", "ec", 256)
    assert facts(p384_key) == ("pem", "ES384", "ec", 384)
    assert facts(ed_key) == ("pem", "EdDSA", "ed25519", None)
    assert facts(rsa_key) == ("pem", None, "rsa", 2048)
    assert facts(rsa_key, fmt=serialization.PrivateFormat.TraditionalOpenSSL) == ("pem", None, "rsa", 2048)


def test_jwt_pem_rejects(small_rsa_key: rsa.RSAPrivateKey, p256_key: ec.EllipticCurvePrivateKey) -> None:
    assert "2048" in rejects(SecretType.JWT_TOKEN, pem(small_rsa_key)).message
    p521 = ec.generate_private_key(ec.SECP521R1())
    assert "P-256" in rejects(SecretType.JWT_TOKEN, pem(p521)).message
    assert "P-256" in rejects(SecretType.JWT_TOKEN, pem(ed448.Ed448PrivateKey.generate())).message
    assert "encrypted" in rejects(SecretType.JWT_TOKEN, encrypted_pem(p256_key)).message
    garbage = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    assert "not a readable PEM" in rejects(SecretType.JWT_TOKEN, garbage).message


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_jwt_hmac_json_key(alg: str) -> None:
    facts = validate_value(SecretType.JWT_TOKEN, json.dumps({"alg": alg, "key": "k" * 32, "kid": "2026-01"}))
    assert facts == ValidatedValue(format="json", algorithm=alg, key_type="hmac")
    key = base64.b64encode(os.urandom(32)).decode()
    assert validate_value(SecretType.JWT_TOKEN, json.dumps({"alg": alg, "key": key})).algorithm == alg


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"alg": "HS256", "key": "k" * 31}, "at least 32 bytes"),
        ({"alg": "HS256"}, "missing the required field 'key'"),
        ({"alg": "HS256", "key": 12345}, "'key' must be a non-empty string"),
        ({"alg": "HS1", "key": "k" * 64}, "'alg' must be one of"),
        ({"alg": "none", "key": "k" * 64}, "'alg' must be one of"),
        ({"key": "k" * 64}, "missing the required field 'alg'"),
        ({"alg": "ES256"}, "missing the required field 'privateKey'"),
    ],
)
def test_jwt_json_key_rejects(document: dict[str, Any], reason: str) -> None:
    assert reason in rejects(SecretType.JWT_TOKEN, json.dumps(document)).message


def test_jwt_asymmetric_json_keys(
    rsa_key: rsa.RSAPrivateKey,
    p256_key: ec.EllipticCurvePrivateKey,
    p384_key: ec.EllipticCurvePrivateKey,
    ed_key: ed25519.Ed25519PrivateKey,
) -> None:
    suits: list[tuple[str, PrivateKeyTypes]] = [
        ("ES256", p256_key),
        ("ES384", p384_key),
        ("RS256", rsa_key),
        ("PS512", rsa_key),
        ("EdDSA", ed_key),
    ]
    for alg, key in suits:
        facts = validate_value(SecretType.JWT_TOKEN, json.dumps({"alg": alg, "privateKey": pem(key)}))
        assert (facts.format, facts.algorithm) == ("json", alg)


def test_jwt_asymmetric_json_key_must_suit_alg(
    rsa_key: rsa.RSAPrivateKey,
    small_rsa_key: rsa.RSAPrivateKey,
    p256_key: ec.EllipticCurvePrivateKey,
    p384_key: ec.EllipticCurvePrivateKey,
    ed_key: ed25519.Ed25519PrivateKey,
) -> None:
    misfits: list[tuple[str, PrivateKeyTypes]] = [
        ("ES256", p384_key),
        ("ES384", p256_key),
        ("RS256", p256_key),
        ("EdDSA", rsa_key),
        ("ES256", ed_key),
    ]
    for alg, key in misfits:
        message = rejects(SecretType.JWT_TOKEN, json.dumps({"alg": alg, "privateKey": pem(key)})).message
        assert f"not a key for alg {alg}" in message
    short = json.dumps({"alg": "RS256", "privateKey": pem(small_rsa_key)})
    assert "2048" in rejects(SecretType.JWT_TOKEN, short).message
    unreadable = json.dumps({"alg": "ES256", "privateKey": "not a pem"})
    assert "not a readable PEM" in rejects(SecretType.JWT_TOKEN, unreadable).message


def test_jwt_compact_token(frozen: FrozenClock, p256_key: ec.EllipticCurvePrivateKey) -> None:
    handler = JwtTokenHandler(clock=frozen)
    live = jwt.encode({"sub": "svc", "exp": int((NOW + timedelta(hours=1)).timestamp())}, p256_key, "ES256")
    facts = handler.validate(live)
    assert (facts.format, facts.algorithm, facts.expired) == ("jwt", "ES256", False)
    assert facts.expires_at == NOW + timedelta(hours=1)

    stale = jwt.encode({"exp": int((NOW - timedelta(seconds=1)).timestamp())}, "k" * 32, "HS256")
    assert handler.validate(stale).expired is True

    no_exp = jwt.encode({"sub": "svc"}, "k" * 48, "HS384")
    assert handler.validate(no_exp) == ValidatedValue(format="jwt", algorithm="HS384")

    opaque_payload = f"{b64url({'alg': 'HS256'})}.{b64url(b'not json')}.c2ln"
    assert handler.validate(opaque_payload).expires_at is None


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (f"{b64url({'alg': 'none'})}.{b64url({'sub': 'x'})}.c2ln", "alg 'none'"),
        (f"{b64url({'typ': 'JWT'})}.{b64url({'sub': 'x'})}.c2ln", "registered JWS 'alg'"),
        (f"{b64url({'alg': 'XX999'})}.{b64url({'sub': 'x'})}.c2ln", "registered JWS 'alg'"),
        (f"{b64url(b'[1, 2]')}.{b64url({'sub': 'x'})}.c2ln", "JSON header"),
        (f"{b64url(b'not json')}.{b64url({'sub': 'x'})}.c2ln", "JSON header"),
        ("a.b", "compact JWT"),
        ("a.b.c.d.e", "compact JWT"),
        ("not a token at all", "compact JWT"),
        ("", "compact JWT"),
    ],
)
def test_jwt_compact_token_rejects(token: str, reason: str) -> None:
    assert reason in rejects(SecretType.JWT_TOKEN, token).message


def test_jwt_compact_token_with_surrounding_whitespace_is_refused() -> None:
    token = jwt.encode({"sub": "svc"}, "k" * 32, "HS256")
    assert "no whitespace" in rejects(SecretType.JWT_TOKEN, token + "\n").message


# --- tls_certificate ------------------------------------------------------------------------------


def test_tls_certificate_records_subject_expiry_and_sans(
    p256_key: ec.EllipticCurvePrivateKey, frozen: FrozenClock
) -> None:
    cert = make_cert(p256_key, sans=("api.example.com", "www.example.com"), ips=("10.0.0.1",))
    facts = TlsCertificateHandler(clock=frozen).validate(cert + pem(p256_key))
    assert facts.format == "pem"
    assert facts.subject == "CN=api.example.com"
    assert facts.issuer == "CN=api.example.com"
    assert facts.not_after == NOW + timedelta(days=90)
    assert facts.not_before == NOW - timedelta(days=1)
    assert facts.expired is False
    assert facts.sans == ("DNS:api.example.com", "DNS:www.example.com", "IP:10.0.0.1")
    assert facts.fingerprint is not None and facts.fingerprint.startswith("sha256:")
    assert len(facts.fingerprint) == len("sha256:") + 64
    assert (facts.key_type, facts.key_size) == ("ec", 256)


def test_tls_certificate_key_first_and_other_key_types(
    rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    rsa_facts = validate_value(
        SecretType.TLS_CERTIFICATE,
        pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL) + make_cert(rsa_key),
    )
    assert (rsa_facts.key_type, rsa_facts.key_size) == ("rsa", 2048)
    assert validate_value(SecretType.TLS_CERTIFICATE, make_cert(ed_key, sans=()) + pem(ed_key)).sans == ()


def test_tls_certificate_with_chain_picks_the_leaf_that_matches_the_key(
    p256_key: ec.EllipticCurvePrivateKey, p384_key: ec.EllipticCurvePrivateKey
) -> None:
    ca = make_cert(p384_key, common_name="Example CA", sans=(), is_ca=True)
    leaf = make_cert(p256_key, issuer_key=p384_key, issuer_name="Example CA")
    facts = validate_value(SecretType.TLS_CERTIFICATE, ca + leaf + pem(p256_key))
    assert (facts.subject, facts.issuer) == ("CN=api.example.com", "CN=Example CA")


def test_tls_certificate_expired_is_accepted_and_recorded(
    p256_key: ec.EllipticCurvePrivateKey, frozen: FrozenClock
) -> None:
    cert = make_cert(p256_key, not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=10))
    facts = TlsCertificateHandler(clock=frozen).validate(cert + pem(p256_key))
    assert facts.expired is True
    assert facts.not_after == NOW - timedelta(days=10)
    assert validate_value(SecretType.TLS_CERTIFICATE, cert + pem(p256_key)).expired is True


def test_tls_certificate_mismatched_key_fails(
    p256_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    other_p256 = ec.generate_private_key(ec.SECP256R1())
    for key in (other_p256, rsa_key):
        message = rejects(SecretType.TLS_CERTIFICATE, make_cert(p256_key) + pem(key)).message
        assert "does not match" in message


def test_tls_certificate_rejects(
    p256_key: ec.EllipticCurvePrivateKey, p384_key: ec.EllipticCurvePrivateKey
) -> None:
    cert = make_cert(p256_key)
    assert "certificate" in rejects(SecretType.TLS_CERTIFICATE, pem(p256_key)).message
    assert "exactly one" in rejects(SecretType.TLS_CERTIFICATE, cert).message
    assert "exactly one" in rejects(SecretType.TLS_CERTIFICATE, cert + pem(p256_key) + pem(p384_key)).message
    assert "encrypted" in rejects(SecretType.TLS_CERTIFICATE, cert + encrypted_pem(p256_key)).message
    corrupt = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    assert "cannot be parsed" in rejects(SecretType.TLS_CERTIFICATE, corrupt + pem(p256_key)).message
    assert "certificate" in rejects(SecretType.TLS_CERTIFICATE, "").message


# --- ssh_key --------------------------------------------------------------------------------------


def openssh_fingerprint(key: PrivateKeyTypes) -> str:
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    digest = hashlib.sha256(base64.b64decode(line.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def test_ssh_key_openssh_and_pem(
    rsa_key: rsa.RSAPrivateKey, p256_key: ec.EllipticCurvePrivateKey, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    cases: list[tuple[str, PrivateKeyTypes, str, str]] = [
        (openssh(ed_key), ed_key, "openssh", "ssh-ed25519"),
        (openssh(rsa_key), rsa_key, "openssh", "ssh-rsa"),
        (openssh(p256_key), p256_key, "openssh", "ecdsa-sha2-nistp256"),
        (pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL), rsa_key, "pem", "ssh-rsa"),
        (pem(p256_key), p256_key, "pem", "ecdsa-sha2-nistp256"),
    ]
    for text, key, fmt, algorithm in cases:
        facts = validate_value(SecretType.SSH_KEY, text)
        assert (facts.format, facts.algorithm) == (fmt, algorithm)
        assert facts.fingerprint == openssh_fingerprint(key)
        assert facts.fingerprint is not None and "=" not in facts.fingerprint


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_ssh_key_fingerprint_matches_ssh_keygen(ed_key: ed25519.Ed25519PrivateKey, tmp_path: Any) -> None:
    path = tmp_path / "id_ed25519"
    path.write_text(openssh(ed_key))
    path.chmod(0o600)
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert validate_value(SecretType.SSH_KEY, openssh(ed_key)).fingerprint == printed.split()[1]


def test_ssh_key_rejects(ed_key: ed25519.Ed25519PrivateKey, p256_key: ec.EllipticCurvePrivateKey) -> None:
    assert "passphrase-protected" in rejects(SecretType.SSH_KEY, encrypted_openssh(ed_key)).message
    assert "encrypted" in rejects(SecretType.SSH_KEY, encrypted_pem(p256_key)).message
    corrupt = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n"
    assert "not a readable OpenSSH" in rejects(SecretType.SSH_KEY, corrupt).message
    public_line = (
        ed_key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    assert "OpenSSH or PEM private key" in rejects(SecretType.SSH_KEY, public_line).message
    assert "OpenSSH or PEM private key" in rejects(SecretType.SSH_KEY, "").message
    assert "does not support" in rejects(SecretType.SSH_KEY, pem(x25519.X25519PrivateKey.generate())).message
    assert "does not support" in rejects(SecretType.SSH_KEY, pem(ed448.Ed448PrivateKey.generate())).message


# --- oauth_token ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token", ["ya29.a0AfH6SMBx", "t" * 8, "t" * 8192, "gho_16C7e42F292c6912E7710c838347Ae178B4a"]
)
def test_oauth_bare_token(token: str) -> None:
    assert validate_value(SecretType.OAUTH_TOKEN, token) == ValidatedValue(format="bearer")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("short", "8 to 8192"),
        ("t" * 8193, "8 to 8192"),
        ("has space", "whitespace"),
        ("trailing\n", "whitespace"),
        ("nul\x00inside", "control"),
        ("", "8 to 8192"),
    ],
)
def test_oauth_bare_token_rejects(token: str, reason: str) -> None:
    assert reason in rejects(SecretType.OAUTH_TOKEN, token).message


def test_oauth_token_object(frozen: FrozenClock) -> None:
    handler = OauthTokenHandler(clock=frozen)
    document = {
        "access_token": "ya29.a0AfH6SMBx" + CANARY,
        "refresh_token": "1//0gRefresh" + CANARY,
        "token_type": "Bearer",
        "expires_at": int((NOW + timedelta(hours=1)).timestamp()),
        "scope": "openid email https://www.googleapis.com/auth/drive.readonly",
        "client_id": "1234.apps.googleusercontent.com",
        "client_secret": "GOCSPX-" + CANARY,
        "token_endpoint": "https://oauth2.googleapis.com/token",
        "issued_by": "extra keys are fine",
    }
    facts = handler.validate(json.dumps(document))
    assert facts == ValidatedValue(
        format="json",
        token_type="Bearer",
        expires_at=NOW + timedelta(hours=1),
        expired=False,
        scopes=("openid", "email", "https://www.googleapis.com/auth/drive.readonly"),
        client_id="1234.apps.googleusercontent.com",
    )
    minimal = handler.validate(json.dumps({"access_token": "abcdefgh"}))
    assert minimal == ValidatedValue(format="json")


def test_oauth_token_object_expiry_forms(frozen: FrozenClock) -> None:
    handler = OauthTokenHandler(clock=frozen)

    def expiry(raw: Any) -> tuple[datetime | None, bool | None]:
        facts = handler.validate(json.dumps({"access_token": "abcdefgh", "expires_at": raw}))
        return facts.expires_at, facts.expired

    assert expiry("2026-01-15T09:30:00Z") == (NOW - timedelta(hours=1), True)
    assert expiry("2026-01-15T11:30:00") == (NOW + timedelta(hours=1), False)  # naive taken as UTC
    assert expiry(NOW.timestamp() + 0.5) == (NOW + timedelta(seconds=0.5), False)


def test_oauth_token_object_scope_list_and_local_endpoint() -> None:
    document = {
        "access_token": "abcdefgh",
        "scope": ["read", "write"],
        "token_endpoint": "http://localhost:8080/t",
    }
    assert validate_value(SecretType.OAUTH_TOKEN, json.dumps(document)).scopes == ("read", "write")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"refresh_token": "abcdefgh"}, "missing the required field 'access_token'"),
        ({"access_token": "short"}, "8 to 8192"),
        ({"access_token": "has space inside"}, "whitespace"),
        ({"access_token": 12345678}, "'access_token' must be a non-empty string"),
        ({"access_token": "abcdefgh", "refresh_token": ""}, "'refresh_token' must be a non-empty string"),
        ({"access_token": "abcdefgh", "client_secret": 42}, "'client_secret' must be a non-empty string"),
        ({"access_token": "abcdefgh", "expires_at": "next tuesday"}, "'expires_at'"),
        ({"access_token": "abcdefgh", "expires_at": 10**20}, "'expires_at'"),
        ({"access_token": "abcdefgh", "expires_at": True}, "'expires_at'"),
        ({"access_token": "abcdefgh", "scope": ["read", 7]}, "'scope'"),
        ({"access_token": "abcdefgh", "scope": 'bad"quote'}, "'scope'"),
        ({"access_token": "abcdefgh", "scope": {"read": True}}, "'scope'"),
        ({"access_token": "abcdefgh", "token_type": "Bearer token!"}, "'token_type'"),
        ({"access_token": "abcdefgh", "token_endpoint": "http://auth.example.com/token"}, "'token_endpoint'"),
        ({"access_token": "abcdefgh", "token_endpoint": "ftp://auth.example.com/token"}, "'token_endpoint'"),
        ({"access_token": "abcdefgh", "token_endpoint": "https:///token"}, "'token_endpoint'"),
        ({"access_token": "abcdefgh", "token_endpoint": "https://[bad/token"}, "'token_endpoint'"),
    ],
)
def test_oauth_token_object_rejects(document: dict[str, Any], reason: str) -> None:
    assert reason in rejects(SecretType.OAUTH_TOKEN, json.dumps(document)).message


def test_oauth_malformed_json_is_refused() -> None:
    assert "JSON" in rejects(SecretType.OAUTH_TOKEN, '{"access_token": ').message


# --- configuration --------------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["region", "limits"],
    "properties": {
        "region": {"type": "string", "enum": ["eu-west-1", "us-east-1"]},
        "limits": {
            "type": "object",
            "properties": {"rps": {"type": "integer", "minimum": 1}},
            "additionalProperties": False,
        },
        "owners": {"type": "array", "items": {"type": "string", "format": "email"}},
    },
}


def test_configuration_accepts_json_objects() -> None:
    assert validate_value(SecretType.CONFIGURATION, '{"feature": {"enabled": true}}') == ValidatedValue(
        format="json"
    )
    good = {"region": "eu-west-1", "limits": {"rps": 10}, "owners": ["ops@example.com"]}
    assert validate_value(SecretType.CONFIGURATION, json.dumps(good), SCHEMA).format == "json"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ("", "not valid JSON"),
        ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "not valid JSON"),
        ('{"a":' * 40 + "1" + "}" * 40, "nested more than"),
    ],
)
def test_configuration_rejects_non_objects(value: str, reason: str) -> None:
    assert reason in rejects(SecretType.CONFIGURATION, value).message


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"region": "eu-west-1", "limits": {"rps": 0}}, "at /limits/rps: 'minimum'"),
        ({"region": "eu-west-1", "limits": {"rps": "ten"}}, "at /limits/rps: 'type' (expected integer)"),
        ({"region": "mars-1", "limits": {}}, "at /region: 'enum'"),
        ({"region": "eu-west-1"}, "at (root): missing required properties limits"),
        ({"region": "eu-west-1", "limits": {"burst": 3}}, "at /limits: 'additionalProperties'"),
        (
            {"region": "eu-west-1", "limits": {}, "owners": ["ops@example.com", "nobody"]},
            "at /owners/1: 'format'",
        ),
    ],
)
def test_configuration_schema_violation_names_the_path(document: dict[str, Any], where: str) -> None:
    message = rejects(SecretType.CONFIGURATION, json.dumps(document), SCHEMA).message
    assert message.startswith("a configuration value does not match value_schema")
    assert where in message


SCHEMA_OPEN: dict[str, Any] = {"properties": {"limits": {"additionalProperties": {"type": "integer"}}}}
SCHEMA_PATTERN: dict[str, Any] = {"patternProperties": {"^K": {"type": "integer"}}}


def test_configuration_path_masks_keys_the_schema_does_not_declare() -> None:
    document = {"limits": {"burst": 3, "secret-looking-key": "x"}}
    message = rejects(SecretType.CONFIGURATION, json.dumps(document), SCHEMA_OPEN).message
    assert "at /limits/*: 'type' (expected integer)" in message
    assert "secret-looking-key" not in message


def test_configuration_path_escapes_json_pointer_characters() -> None:
    schema = {"properties": {"a/b": {"properties": {"c~d": {"type": "integer"}}}}}
    message = rejects(SecretType.CONFIGURATION, json.dumps({"a/b": {"c~d": "x"}}), schema).message
    assert "at /a~1b/c~0d:" in message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "no-such-type"},
        {"properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"$ref": "https://schemas.example.invalid/config.json"},
    ],
)
def test_configuration_bad_schema_is_an_invalid_request(schema: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_value(SecretType.CONFIGURATION, '{"a": 1}', schema)
    assert not isinstance(caught.value, InvalidSecretValue)


def test_value_schema_is_ignored_by_other_types() -> None:
    assert validate_value(SecretType.API_KEY, "a-perfectly-good-key", {"type": "integer"}).format == "opaque"


# --- the value never leaks ------------------------------------------------------------------------


def canary_cases() -> Iterator[tuple[str, SecretType, str, dict[str, Any] | None]]:
    c = CANARY
    a = {"access_token": c}
    p256 = pem(ec.generate_private_key(ec.SECP256R1()))
    cert = make_cert(ec.generate_private_key(ec.SECP256R1()))
    yield "api_key/tab", SecretType.API_KEY, f"{c}\t", None
    yield "api_key/long", SecretType.API_KEY, c * 300, None
    yield "api_key/space", SecretType.API_KEY, f" {c}", None
    yield "api_key/control", SecretType.API_KEY, f"{c}\x00{c}", None
    yield "db/engine", SecretType.DATABASE_CREDENTIAL, db_json(engine=c), None
    yield "db/port", SecretType.DATABASE_CREDENTIAL, db_json(port=c), None
    yield "db/host-type", SecretType.DATABASE_CREDENTIAL, db_json(host=[c]), None
    yield "db/bad-json", SecretType.DATABASE_CREDENTIAL, f'{{"password": "{c}", ', None
    yield "db/url-port", SecretType.DATABASE_CREDENTIAL, f"postgresql://{c}:{c}@{c}:{c}/{c}", None
    yield "db/url-scheme", SecretType.DATABASE_CREDENTIAL, f"{c}://{c}:{c}@host/{c}", None
    yield "db/url-no-password", SecretType.DATABASE_CREDENTIAL, f"mysql://{c}@host/{c}", None
    yield "db/password-newline", SecretType.DATABASE_CREDENTIAL, f"{c}\n{c}", None
    yield "jwt/pem", SecretType.JWT_TOKEN, armour("PRIVATE KEY", c), None
    yield "jwt/hmac-short", SecretType.JWT_TOKEN, json.dumps({"alg": "HS256", "key": c}), None
    yield "jwt/alg", SecretType.JWT_TOKEN, json.dumps({"alg": c, "key": c * 4}), None
    yield "jwt/private-key", SecretType.JWT_TOKEN, json.dumps({"alg": "ES384", "privateKey": p256 + c}), None
    yield "jwt/private-key-junk", SecretType.JWT_TOKEN, json.dumps({"alg": "ES256", "privateKey": c}), None
    yield "jwt/header-alg", SecretType.JWT_TOKEN, f"{b64url({'alg': c})}.{b64url({'sub': c})}.{c}", None
    yield "jwt/header-junk", SecretType.JWT_TOKEN, f"{c}.{c}.{c}", None
    yield "jwt/shape", SecretType.JWT_TOKEN, f"{c} {c}", None
    yield "tls/cert", SecretType.TLS_CERTIFICATE, armour("CERTIFICATE", c) + p256, None
    yield "tls/key", SecretType.TLS_CERTIFICATE, cert + armour("PRIVATE KEY", c), None
    yield "tls/mismatch", SecretType.TLS_CERTIFICATE, f"{cert}{p256}{c}", None
    yield "tls/none", SecretType.TLS_CERTIFICATE, c, None
    yield "ssh/openssh", SecretType.SSH_KEY, armour("OPENSSH PRIVATE KEY", c), None
    yield "ssh/pem", SecretType.SSH_KEY, armour("RSA PRIVATE KEY", c), None
    yield "ssh/public", SecretType.SSH_KEY, f"ssh-ed25519 {c} user@{c}", None
    yield "oauth/bare", SecretType.OAUTH_TOKEN, f"{c} {c}", None
    yield "oauth/access", SecretType.OAUTH_TOKEN, json.dumps({"access_token": f"{c} {c}"}), None
    yield "oauth/expiry", SecretType.OAUTH_TOKEN, json.dumps({**a, "expires_at": c}), None
    yield "oauth/scope", SecretType.OAUTH_TOKEN, json.dumps({**a, "scope": [c, 1]}), None
    yield "oauth/type", SecretType.OAUTH_TOKEN, json.dumps({**a, "token_type": f"{c} {c}"}), None
    yield "oauth/endpoint", SecretType.OAUTH_TOKEN, json.dumps({**a, "token_endpoint": f"http://{c}/"}), None
    config, in_a = SecretType.CONFIGURATION, json.dumps({"a": c})
    yield "config/not-json", config, f"{{{c}", None
    yield "config/array", config, json.dumps([c]), None
    yield "config/type", config, in_a, {"properties": {"a": {"type": "integer"}}}
    yield "config/pattern", config, in_a, {"properties": {"a": {"pattern": "^x"}}}
    yield "config/const", config, in_a, {"properties": {"a": {"const": "x"}}}
    yield "config/extra-key", config, json.dumps({c: 1}), {"additionalProperties": False}
    yield "config/key-names", config, json.dumps({c: 1}), {"propertyNames": {"maxLength": 3}}
    yield "config/undeclared-key", config, json.dumps({"limits": {c: "x"}}), SCHEMA_OPEN
    yield "config/pattern-key", config, json.dumps({c: "x"}), SCHEMA_PATTERN


CANARY_CASES = list(canary_cases())


@pytest.mark.parametrize(
    ("secret_type", "value", "schema"),
    [case[1:] for case in CANARY_CASES],
    ids=[case[0] for case in CANARY_CASES],
)
def test_error_never_contains_the_value(
    secret_type: SecretType, value: str, schema: dict[str, Any] | None
) -> None:
    assert CANARY in value
    error = rejects(secret_type, value, schema)
    rendered = "".join(traceback.format_exception(error))  # includes any chained exception
    for text in (error.message, str(error), repr(error), json.dumps(error.to_body()), rendered):
        assert CANARY not in text
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


def test_every_type_has_a_canary_case() -> None:
    assert {case[1] for case in CANARY_CASES} == set(SecretType)


def test_facts_never_contain_the_secret(
    rsa_key: rsa.RSAPrivateKey, p256_key: ec.EllipticCurvePrivateKey, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    secret = CANARY * 3
    values = {
        SecretType.API_KEY: secret,
        SecretType.DATABASE_CREDENTIAL: f"postgresql://app:{secret}@db/orders",
        SecretType.JWT_TOKEN: json.dumps({"alg": "HS256", "key": secret}),
        SecretType.TLS_CERTIFICATE: make_cert(p256_key) + pem(p256_key),
        SecretType.SSH_KEY: openssh(ed_key),
        SecretType.OAUTH_TOKEN: json.dumps({"access_token": secret, "client_secret": secret}),
        SecretType.CONFIGURATION: json.dumps({"password": secret}),
    }
    private_fragments = {
        SecretType.TLS_CERTIFICATE: pem(p256_key).splitlines()[1][:32],
        SecretType.SSH_KEY: openssh(ed_key).splitlines()[1][:32],
    }
    for secret_type, value in values.items():
        facts = json.dumps(validate_value(secret_type, value).as_facts())
        assert secret not in facts
        assert private_fragments.get(secret_type, secret) not in facts
    assert validate_value(SecretType.DATABASE_CREDENTIAL, secret).as_facts() == {"format": "password"}
