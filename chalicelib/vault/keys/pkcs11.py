"""PKCS#11 key provider: data keys wrapped inside an HSM (or SoftHSM2) with AES-256-GCM.

The master key is an AES-256 token object that never leaves the token (``CKA_SENSITIVE``,
not extractable). Each *key version* is one such object with the configured label
(``V_SECURE_PKCS11_KEY_LABEL``) and the version number as its ``CKA_ID`` (``"1"``, ``"2"``,
...); the highest version wraps new data keys, every version present on the token unwraps.

A data key is wrapped by ``C_Encrypt`` with ``CKM_AES_GCM`` inside the token, with a fresh
96-bit nonce and the canonical JSON of the envelope context as additional authenticated
data, so a wrapped key moved to another secret or version fails to unwrap. Stored form:
``nonce || ciphertext || tag``; ``kid`` is ``pkcs11:<token label>/<key label>#<version>``.

The PIN comes from ``V_SECURE_PKCS11_PIN`` or the file named by ``V_SECURE_PKCS11_PIN_FILE``;
it is never logged, put in an error message or shown by ``repr``. ``python-pkcs11`` is
imported on first use (``pip install 'v-secure[hsm]'``).

Example::

    provider = Pkcs11KeyProvider.from_settings(get_settings())
    data_key = provider.generate_data_key({"secret_id": "db", "version": "1", "type": "api_key"})

Create the first key version on a fresh token::

    python -m chalicelib.vault.keys.pkcs11 create-key
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chalicelib.config import Settings, get_settings
from chalicelib.errors import DecryptionFailed, KeyUnavailable
from chalicelib.ports import DataKey, check_round_trip

PREFIX = "pkcs11:"
NONCE_BYTES = 12
TAG_BITS = 128
DATA_KEY_BYTES = 32
WRAPPED_BYTES = NONCE_BYTES + DATA_KEY_BYTES + TAG_BITS // 8
_PIN_DIGEST_KEY = os.urandom(32)


def format_kid(token_label: str, key_label: str, version: int) -> str:
    """``pkcs11:<token>/<label>#<version>``.

    Example::

        format_kid("v-secure", "v-secure-master", 2)  # "pkcs11:v-secure/v-secure-master#2"
    """
    return f"{PREFIX}{token_label}/{key_label}#{version}"


def parse_kid(kid: str) -> tuple[str, str, int]:
    """The (token label, key label, version) a ``kid`` names; KeyUnavailable if it is not one."""
    body = kid.removeprefix(PREFIX)
    token, slash, rest = body.partition("/")
    label, hash_sign, version = rest.rpartition("#")
    if not kid.startswith(PREFIX) or not slash or not hash_sign or not token or not label \
            or not version.isdigit():
        raise KeyUnavailable(f"'{kid}' is not a PKCS#11 key id (pkcs11:<token>/<label>#<version>)")
    return token, label, int(version)


def read_pin(settings: Settings) -> str:
    """The user PIN from ``V_SECURE_PKCS11_PIN`` or ``V_SECURE_PKCS11_PIN_FILE`` (first line)."""
    if settings.pkcs11_pin:
        return settings.pkcs11_pin
    if settings.pkcs11_pin_file:
        try:
            text = Path(settings.pkcs11_pin_file).read_text(encoding="utf-8")
        except OSError as error:
            raise KeyUnavailable(f"cannot read the PKCS#11 PIN file {settings.pkcs11_pin_file}: "
                                 f"{error.strerror or type(error).__name__}") from None
        pin = text.splitlines()[0].strip() if text.strip() else ""
        if pin:
            return pin
        raise KeyUnavailable(f"the PKCS#11 PIN file {settings.pkcs11_pin_file} is empty")
    raise KeyUnavailable("no PKCS#11 PIN: set V_SECURE_PKCS11_PIN or V_SECURE_PKCS11_PIN_FILE")


def _canonical(context: Mapping[str, str]) -> bytes:
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


def _pin_digest(pin: str) -> bytes:
    return hmac.new(_PIN_DIGEST_KEY, pin.encode(), hashlib.sha256).digest()


def _library() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise KeyUnavailable("the PKCS#11 key provider needs python-pkcs11 "
                             "(pip install 'v-secure[hsm]')") from None
    return pkcs11


class _TokenSession:
    """One logged-in R/W session per (module, token) and process, used under a lock.

    PKCS#11 logins are per application: a second ``C_Login`` answers "already logged in"
    without checking the PIN, so every provider of the process shares this one session and
    a provider presenting another PIN than the one that logged in is refused.
    """

    def __init__(self, session: Any, pin_digest: bytes) -> None:
        self.session = session
        self.pin_digest = pin_digest
        self.lock = threading.RLock()


_sessions: dict[tuple[str, str], _TokenSession] = {}
_sessions_lock = threading.Lock()


def _open_session(module: str, token_label: str, pin: str) -> _TokenSession:
    key = (module, token_label)
    with _sessions_lock:
        found = _sessions.get(key)
        if found is not None:
            if not hmac.compare_digest(found.pin_digest, _pin_digest(pin)):
                raise KeyUnavailable(f"PKCS#11 login to token '{token_label}' failed: wrong PIN")
            return found
        pkcs11 = _library()
        if not Path(module).is_file():
            raise KeyUnavailable(f"PKCS#11 module not found: {module} (V_SECURE_PKCS11_MODULE)")
        try:
            library = pkcs11.lib(module)
        except pkcs11.PKCS11Error as error:
            raise KeyUnavailable(f"cannot load the PKCS#11 module {module}: {error}") from None
        try:
            token = library.get_token(token_label=token_label)
            session = token.open(rw=True, user_pin=pin)
        except pkcs11.PKCS11Error as error:
            raise _login_error(pkcs11, error, module, token_label) from None
        opened = _TokenSession(session, _pin_digest(pin))
        _sessions[key] = opened
        return opened


def _forget_session(module: str, token_label: str, opened: _TokenSession) -> None:
    with _sessions_lock:
        if _sessions.get((module, token_label)) is opened:
            del _sessions[(module, token_label)]


def _login_error(pkcs11: Any, error: Exception, module: str, token_label: str) -> KeyUnavailable:
    if isinstance(error, pkcs11.PinIncorrect):
        return KeyUnavailable(f"PKCS#11 login to token '{token_label}' failed: wrong PIN")
    if isinstance(error, pkcs11.PinLocked):
        return KeyUnavailable(f"PKCS#11 login to token '{token_label}' failed: the user PIN is locked")
    if isinstance(error, pkcs11.PinExpired | pkcs11.PinInvalid | pkcs11.PinLenRange):
        return KeyUnavailable(f"PKCS#11 login to token '{token_label}' failed: the PIN is not valid "
                              f"({type(error).__name__})")
    if isinstance(error, pkcs11.NoSuchToken | pkcs11.TokenNotPresent | pkcs11.TokenNotRecognised):
        return KeyUnavailable(f"no PKCS#11 token labelled '{token_label}' in {module} "
                              "(V_SECURE_PKCS11_TOKEN_LABEL)")
    if isinstance(error, pkcs11.UserPinNotInitialized):
        return KeyUnavailable(f"PKCS#11 token '{token_label}' has no user PIN set (initialize the token)")
    return KeyUnavailable(f"PKCS#11 login to token '{token_label}' failed: {type(error).__name__}")


class Pkcs11KeyProvider:
    """Wraps data keys with AES-256-GCM inside a PKCS#11 token.

    Example::

        provider = Pkcs11KeyProvider("/usr/lib/softhsm/libsofthsm2.so", "v-secure", "v-secure-master",
                                     pin="1234")
        kid = provider.create_key_version()   # "pkcs11:v-secure/v-secure-master#1"
    """

    name = "pkcs11"

    def __init__(self, module: str, token_label: str, key_label: str, pin: str, *,
                 refresh_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.module = module
        self.token_label = token_label
        self.key_label = key_label
        self._pin = pin
        self._refresh = refresh_seconds
        self._clock = clock
        self._keys: dict[int, Any] = {}
        self._writer: tuple[float, int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Pkcs11KeyProvider:
        if not settings.pkcs11_module:
            raise KeyUnavailable("V_SECURE_PKCS11_MODULE is not set (path of the PKCS#11 library, "
                                 "e.g. libsofthsm2.so)")
        return cls(settings.pkcs11_module, settings.pkcs11_token_label, settings.pkcs11_key_label,
                   read_pin(settings))

    def __repr__(self) -> str:
        return f"Pkcs11KeyProvider(token={self.token_label!r}, key={self.key_label!r})"

    # --- KeyProvider ---------------------------------------------------------------------

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        plaintext = os.urandom(DATA_KEY_BYTES)
        wrapped, kid = self.wrap_data_key(plaintext, context)
        return DataKey(plaintext, wrapped, kid)

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        version = self._own_version(kid)
        if len(wrapped) != WRAPPED_BYTES:
            raise DecryptionFailed("wrapped data key has the wrong length")
        nonce, sealed = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        with self._key(version) as key:
            pkcs11 = _library()
            try:
                return bytes(key.decrypt(sealed, mechanism=pkcs11.Mechanism.AES_GCM,
                                         mechanism_param=pkcs11.GCMParams(nonce, _canonical(context), TAG_BITS)))
            except (pkcs11.EncryptedDataInvalid, pkcs11.EncryptedDataLenRange, pkcs11.DataInvalid,
                    pkcs11.DataLenRange, pkcs11.GeneralError, pkcs11.FunctionFailed):
                # SoftHSM2 reports a failed GCM tag as CKR_GENERAL_ERROR.
                raise DecryptionFailed("wrapped data key failed authentication") from None

    def check_health(self) -> None:
        check_round_trip(self, "the PKCS#11 token returned a different data key on unwrap")

    # --- key administration ----------------------------------------------------------------

    def wrap_data_key(self, plaintext: bytes, context: Mapping[str, str],
                      kid: str | None = None) -> tuple[bytes, str]:
        """Wrap an existing data key under ``kid`` (default: the newest version)."""
        version = self._own_version(kid) if kid else self._writer_version()
        nonce = os.urandom(NONCE_BYTES)
        with self._key(version) as key:
            pkcs11 = _library()
            sealed = key.encrypt(plaintext, mechanism=pkcs11.Mechanism.AES_GCM,
                                 mechanism_param=pkcs11.GCMParams(nonce, _canonical(context), TAG_BITS))
        return nonce + bytes(sealed), format_kid(self.token_label, self.key_label, version)

    def rewrap_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str],
                        target_kid: str | None = None) -> tuple[bytes, str]:
        """Unwrap with the old version and wrap with ``target_kid``, both inside the token."""
        plaintext = self.decrypt_data_key(wrapped, kid, context)
        return self.wrap_data_key(plaintext, context, target_kid)

    def current_kid(self) -> str:
        return format_kid(self.token_label, self.key_label, self._writer_version())

    def key_versions(self) -> list[int]:
        """Versions of the master key present on the token, oldest first."""
        with self._session() as session:
            pkcs11 = _library()
            found = session.get_objects({
                pkcs11.Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY,
                pkcs11.Attribute.KEY_TYPE: pkcs11.KeyType.AES,
                pkcs11.Attribute.LABEL: self.key_label,
            })
            ids = [bytes(obj[pkcs11.Attribute.ID] or b"") for obj in found]
        return sorted({int(i) for i in ids if i.isdigit()})

    def has_key(self, kid: str) -> bool:
        try:
            return self._own_version(kid) in self.key_versions()
        except KeyUnavailable:
            return False

    def create_key_version(self) -> str:
        """Generate the next AES-256 key version on the token; it wraps new data keys from now on."""
        with self._session() as session:
            pkcs11 = _library()
            version = max(self.key_versions(), default=0) + 1
            attribute = pkcs11.Attribute
            session.generate_key(
                pkcs11.KeyType.AES, 256, label=self.key_label, id=str(version).encode(), store=True,
                capabilities=pkcs11.MechanismFlag.ENCRYPT | pkcs11.MechanismFlag.DECRYPT,
                template={attribute.SENSITIVE: True, attribute.EXTRACTABLE: False, attribute.PRIVATE: True,
                          attribute.WRAP: False, attribute.UNWRAP: False})
        with self._lock:
            self._writer = (self._clock(), version)
        return format_kid(self.token_label, self.key_label, version)

    def destroy_key_version(self, kid: str) -> None:
        """Remove a key version from the token (envelopes still under it become unreadable)."""
        version = self._own_version(kid)
        with self._key(version) as key:
            key.destroy()
        with self._lock:
            self._keys.pop(version, None)
            self._writer = None

    # --- plumbing ----------------------------------------------------------------------------

    def _own_version(self, kid: str) -> int:
        token, label, version = parse_kid(kid)
        if token != self.token_label:
            raise KeyUnavailable(f"data key was wrapped on PKCS#11 token '{token}', this vault uses "
                                 f"token '{self.token_label}'")
        if label != self.key_label:
            raise KeyUnavailable(f"data key was wrapped by PKCS#11 key '{label}', this vault uses "
                                 f"'{self.key_label}'")
        return version

    def _writer_version(self) -> int:
        with self._lock:
            cached = self._writer
        if cached is not None and self._clock() - cached[0] < self._refresh:
            return cached[1]
        versions = self.key_versions()
        if not versions:
            raise KeyUnavailable(f"no AES key labelled '{self.key_label}' on PKCS#11 token "
                                 f"'{self.token_label}' (create one: v-secure keys rotate)")
        with self._lock:
            self._writer = (self._clock(), versions[-1])
        return versions[-1]

    @contextmanager
    def _session(self) -> Iterator[Any]:
        opened = _open_session(self.module, self.token_label, self._pin)
        pkcs11 = _library()
        with opened.lock:
            try:
                yield opened.session
            except (pkcs11.SessionClosed, pkcs11.SessionHandleInvalid, pkcs11.DeviceRemoved,
                    pkcs11.TokenNotPresent, pkcs11.UserNotLoggedIn) as error:
                _forget_session(self.module, self.token_label, opened)
                with self._lock:
                    self._keys.clear()
                raise KeyUnavailable(f"PKCS#11 session to token '{self.token_label}' was lost "
                                     f"({type(error).__name__}); it is reopened on the next call") from None

    @contextmanager
    def _key(self, version: int) -> Iterator[Any]:
        """The token object of ``version``, under the session lock."""
        with self._session() as session:
            pkcs11 = _library()
            key = self._keys.get(version)
            if key is None:
                key = self._find_key(session, version)
            try:
                yield key
            except (pkcs11.ObjectHandleInvalid, pkcs11.KeyHandleInvalid):
                self._keys.pop(version, None)
                raise KeyUnavailable(f"PKCS#11 key '{self.key_label}' version {version} is no longer on "
                                     f"token '{self.token_label}'") from None
            except (pkcs11.MechanismInvalid, pkcs11.KeyTypeInconsistent) as error:
                raise KeyUnavailable(f"PKCS#11 key '{self.key_label}' version {version} cannot do AES-GCM "
                                     f"({type(error).__name__})") from None

    def _find_key(self, session: Any, version: int) -> Any:
        pkcs11 = _library()
        try:
            key = session.get_key(object_class=pkcs11.ObjectClass.SECRET_KEY, key_type=pkcs11.KeyType.AES,
                                  label=self.key_label, id=str(version).encode())
        except pkcs11.NoSuchKey:
            raise KeyUnavailable(f"PKCS#11 key '{self.key_label}' version {version} is not on token "
                                 f"'{self.token_label}'") from None
        except pkcs11.MultipleObjectsReturned:
            raise KeyUnavailable(f"PKCS#11 token '{self.token_label}' holds two keys '{self.key_label}' "
                                 f"with version {version}; remove one") from None
        self._keys[version] = key
        return key


def main(argv: list[str] | None = None) -> int:
    """``python -m chalicelib.vault.keys.pkcs11 create-key``: the first key version, if none exists."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["create-key"]:
        print("usage: python -m chalicelib.vault.keys.pkcs11 create-key", file=sys.stderr)
        return 2
    try:
        provider = Pkcs11KeyProvider.from_settings(get_settings())
        versions = provider.key_versions()
        kid = provider.current_kid() if versions else provider.create_key_version()
    except KeyUnavailable as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    print(kid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
