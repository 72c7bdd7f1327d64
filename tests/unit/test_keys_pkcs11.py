"""The PKCS#11 key provider against a real SoftHSM2 token (initialized in a temporary directory)."""

from __future__ import annotations

import builtins
import logging
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.errors import DecryptionFailed, KeyUnavailable
from chalicelib.vault.encryption import EnvelopeContext, open_envelope, seal
from chalicelib.vault.keys.pkcs11 import Pkcs11KeyProvider, format_kid, main, parse_kid, read_pin
from tests.keys_support import KEY_LABEL, PIN, SoftHsm, softhsm

CONTEXT = {"secret_id": "db", "version": "1", "type": "api_key"}


@pytest.fixture(scope="module")
def hsm() -> SoftHsm:
    return softhsm()


def provider(hsm: SoftHsm, token: str = "vs-unit", pin: str = PIN, **kwargs: Any) -> Pkcs11KeyProvider:
    return Pkcs11KeyProvider(hsm.module, token, KEY_LABEL, pin, **kwargs)


@pytest.fixture(scope="module")
def unit(hsm: SoftHsm) -> Pkcs11KeyProvider:
    p = provider(hsm)
    if not p.key_versions():
        p.create_key_version()
    return p


def test_wraps_inside_the_token_and_names_token_key_and_version(unit: Pkcs11KeyProvider) -> None:
    data_key = unit.generate_data_key(CONTEXT)

    assert data_key.kid == f"pkcs11:vs-unit/{KEY_LABEL}#{unit.key_versions()[-1]}"
    assert len(data_key.plaintext) == 32 and data_key.plaintext not in data_key.wrapped
    assert len(data_key.wrapped) == 12 + 32 + 16
    assert unit.decrypt_data_key(data_key.wrapped, data_key.kid, CONTEXT) == data_key.plaintext


def test_envelope_round_trip_and_context_binding(unit: Pkcs11KeyProvider) -> None:
    context = EnvelopeContext(secret_id="db", version=1, type="api_key")
    envelope = seal(b"s3cr3t-value", context, unit)

    assert open_envelope(envelope, context, unit) == b"s3cr3t-value"
    other = {**CONTEXT, "version": "2"}
    with pytest.raises(DecryptionFailed):
        unit.decrypt_data_key(envelope.edk, envelope.kid, other)
    tampered = envelope.edk[:-1] + bytes([envelope.edk[-1] ^ 1])
    with pytest.raises(DecryptionFailed):
        unit.decrypt_data_key(tampered, envelope.kid, CONTEXT)


def test_master_key_is_sensitive_and_not_extractable(hsm: SoftHsm, unit: Pkcs11KeyProvider) -> None:
    import pkcs11

    with unit._key(unit.key_versions()[-1]) as key:
        assert key[pkcs11.Attribute.SENSITIVE] is True
        assert key[pkcs11.Attribute.EXTRACTABLE] is False
        assert key[pkcs11.Attribute.TOKEN] is True
        with pytest.raises(pkcs11.PKCS11Error):
            key[pkcs11.Attribute.VALUE]


def test_new_version_becomes_the_writer_and_older_ones_stay_readable(hsm: SoftHsm) -> None:
    rotating = provider(hsm, "vs-rotate")
    first = rotating.create_key_version()
    old = rotating.generate_data_key(CONTEXT)

    second = rotating.create_key_version()
    new = rotating.generate_data_key(CONTEXT)

    assert (parse_kid(first)[2], parse_kid(second)[2]) == (1, 2)
    assert (old.kid, new.kid) == (first, second)
    assert rotating.decrypt_data_key(old.wrapped, old.kid, CONTEXT) == old.plaintext
    moved, kid = rotating.rewrap_data_key(old.wrapped, old.kid, CONTEXT)
    assert kid == second and moved != old.wrapped
    assert rotating.decrypt_data_key(moved, kid, CONTEXT) == old.plaintext

    rotating.destroy_key_version(first)
    assert rotating.key_versions() == [2]
    assert not rotating.has_key(first)
    with pytest.raises(KeyUnavailable, match="version 1 is not on token 'vs-rotate'"):
        rotating.decrypt_data_key(old.wrapped, old.kid, CONTEXT)
    assert rotating.decrypt_data_key(moved, kid, CONTEXT) == old.plaintext


def test_another_process_sees_a_new_version_after_its_refresh_interval(hsm: SoftHsm, unit: Pkcs11KeyProvider) -> None:
    now = [0.0]
    reader = provider(hsm, refresh_seconds=30, clock=lambda: now[0])
    before = reader.current_kid()
    created = provider(hsm).create_key_version()

    assert reader.current_kid() == before
    now[0] = 31
    assert reader.current_kid() == created != before


def test_missing_key_is_a_clear_error(hsm: SoftHsm) -> None:
    empty = provider(hsm, "vs-nokey")
    with pytest.raises(KeyUnavailable, match="no AES key labelled 'v-secure-master' on PKCS#11 token 'vs-nokey'"):
        empty.generate_data_key(CONTEXT)
    with pytest.raises(KeyUnavailable, match="no AES key labelled"):
        empty.check_health()


def test_wrong_pin_is_a_clear_error_without_the_pin(hsm: SoftHsm) -> None:
    wrong = "wrong-pin-canary-0c1d"
    with pytest.raises(KeyUnavailable) as caught:
        provider(hsm, "vs-wrongpin", pin=wrong).check_health()

    assert "wrong PIN" in caught.value.message and "vs-wrongpin" in caught.value.message
    assert wrong not in caught.value.message and PIN not in caught.value.message


def test_a_second_provider_with_another_pin_is_refused(hsm: SoftHsm, unit: Pkcs11KeyProvider) -> None:
    unit.check_health()
    with pytest.raises(KeyUnavailable, match="wrong PIN"):
        provider(hsm, pin="not-the-pin-1234").check_health()


def test_missing_module_and_unknown_token_are_clear_errors(hsm: SoftHsm, tmp_path: Path) -> None:
    with pytest.raises(KeyUnavailable, match=r"PKCS#11 module not found: .*nowhere\.so"):
        Pkcs11KeyProvider(str(tmp_path / "nowhere.so"), "vs-unit", KEY_LABEL, PIN).check_health()
    not_a_library = tmp_path / "not-a-library.so"
    not_a_library.write_text("nope")
    with pytest.raises(KeyUnavailable, match="cannot load the PKCS#11 module"):
        Pkcs11KeyProvider(str(not_a_library), "vs-unit", KEY_LABEL, PIN).check_health()
    with pytest.raises(KeyUnavailable, match="no PKCS#11 token labelled 'vs-absent'"):
        provider(hsm, "vs-absent").check_health()


def test_without_python_pkcs11_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                              hsm: SoftHsm) -> None:
    real_import = builtins.__import__

    def no_pkcs11(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pkcs11":
            raise ImportError("No module named 'pkcs11'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pkcs11)
    with pytest.raises(KeyUnavailable, match=r"needs python-pkcs11 \(pip install 'v-secure\[hsm\]'\)"):
        provider(hsm, "vs-absent-2").check_health()


def test_settings_pin_from_file_and_clear_errors(tmp_path: Path, hsm: SoftHsm) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    settings = Settings(pkcs11_module=hsm.module, pkcs11_token_label="vs-unit", pkcs11_pin_file=str(pin_file))

    assert read_pin(settings) == PIN
    assert Pkcs11KeyProvider.from_settings(settings).current_kid().startswith("pkcs11:vs-unit/")
    with pytest.raises(KeyUnavailable, match="no PKCS#11 PIN: set V_SECURE_PKCS11_PIN"):
        read_pin(Settings(pkcs11_module=hsm.module))
    with pytest.raises(KeyUnavailable, match="cannot read the PKCS#11 PIN file"):
        read_pin(Settings(pkcs11_pin_file=str(tmp_path / "absent")))
    with pytest.raises(KeyUnavailable, match="V_SECURE_PKCS11_MODULE is not set"):
        Pkcs11KeyProvider.from_settings(Settings(pkcs11_pin=PIN))


def test_pin_is_not_in_repr_logs_or_settings_repr(hsm: SoftHsm, unit: Pkcs11KeyProvider,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(pkcs11_module=hsm.module, pkcs11_token_label="vs-unit", pkcs11_pin=PIN)
    Pkcs11KeyProvider.from_settings(settings).check_health()

    assert PIN not in repr(unit) and PIN not in repr(settings)
    assert PIN not in caplog.text


def test_kid_format_round_trips_and_refuses_others(unit: Pkcs11KeyProvider) -> None:
    assert parse_kid(format_kid("tok/en", "la#bel", 12)) == ("tok", "en/la#bel", 12)
    for bad in ("kms:arn", "pkcs11:token-only", "pkcs11:t/label#x", "pkcs11:/label#1"):
        with pytest.raises(KeyUnavailable):
            parse_kid(bad)
    with pytest.raises(KeyUnavailable, match="wrapped on PKCS#11 token 'other'"):
        unit.decrypt_data_key(b"\0" * 60, format_kid("other", KEY_LABEL, 1), CONTEXT)


def test_create_key_command(monkeypatch: pytest.MonkeyPatch, hsm: SoftHsm, unit: Pkcs11KeyProvider,
                            capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.config import reset_settings

    for name, value in hsm.env("vs-unit").items():
        if value is not None:
            monkeypatch.setenv(name, value)
    reset_settings()
    try:
        assert main(["create-key"]) == 0
        assert capsys.readouterr().out.strip() == provider(hsm).current_kid()
        assert main(["bogus"]) == 2
        monkeypatch.setenv("V_SECURE_PKCS11_TOKEN_LABEL", "vs-absent")
        reset_settings()
        assert main(["create-key"]) == 1
        assert "no PKCS#11 token labelled 'vs-absent'" in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        reset_settings()
