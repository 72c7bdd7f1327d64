"""``keys rotate``: rotate the master key of the configured (writer) provider.

* KMS: enable automatic rotation of the key (``EnableKeyRotation``, optional period) and, when
  asked, rotate now (``RotateKeyOnDemand``). KMS keeps every earlier key material under the
  same key ARN, so data keys wrapped before stay readable; ``keys rewrap --include-target``
  re-encrypts them under the newest material (``ReEncrypt`` to the same key).
* PKCS#11: generate the next AES-256 key version on the token.
* passphrase: add a key version (a fresh salt, so a new derived key).

For PKCS#11 and passphrase the new version wraps every new data key from now on (other
processes see it within their refresh interval, 30 s), while older versions stay on the token
or in the table and keep unwrapping; ``keys rewrap`` moves existing data keys to the new one.

Example::

    rotation = rotate_master_key(keyring, RotateKeyRequest(on_demand=True))
    print(rotation.kid, rotation.message)
"""

from __future__ import annotations

from chalicelib.errors import InvalidRequest, VSecureError
from chalicelib.ports import KeyProvider
from chalicelib.vault.keys.keyring import Keyring
from chalicelib.vault.keys.models import KeyRotation, RotateKeyRequest


def rotate_master_key(keyring: Keyring, request: RotateKeyRequest) -> KeyRotation:
    """Rotate the writer's master key; see the module docstring for what each provider does."""
    writer = keyring.writer
    if hasattr(writer, "rotate"):
        return _rotate_kms(writer, request)
    if hasattr(writer, "create_key_version"):
        if request.on_demand or request.rotation_period_days is not None:
            raise InvalidRequest(f"onDemand and rotationPeriodDays are KMS options; the {writer.name} provider "
                                 "rotates by creating a new key version")
        return _new_version(writer)
    raise InvalidRequest(f"the {writer.name} provider cannot rotate its master key")


def _rotate_kms(provider: KeyProvider, request: RotateKeyRequest) -> KeyRotation:
    result = provider.rotate(on_demand=request.on_demand,  # type: ignore[attr-defined]
                             period_days=request.rotation_period_days)
    kid = f"kms:{result['key_arn']}"
    period = result.get("rotation_period_days")
    every = f"every {period} days" if period else "on KMS's schedule (365 days unless set)"
    done = "rotated the key material now; " if request.on_demand else ""
    return KeyRotation(
        provider="kms", kid=kid, previous_kid=kid, automatic_rotation=result["automatic_rotation"],
        rotation_period_days=period, rotated_on_demand=request.on_demand,
        message=(f"KMS key {result['key_arn']}: {done}automatic rotation is on, {every}. The key ARN does "
                 "not change and earlier key material keeps decrypting; run `v-secure keys rewrap "
                 "--include-target` to re-encrypt existing data keys under the newest material."))


def _new_version(provider: KeyProvider) -> KeyRotation:
    try:
        previous: str | None = provider.current_kid()  # type: ignore[attr-defined]
    except VSecureError:
        previous = None
    kid: str = provider.create_key_version()  # type: ignore[attr-defined]
    if previous is None:
        message = f"created the first key version {kid}; new data keys are wrapped under it"
    else:
        message = (f"new data keys are wrapped under {kid}; {previous} stays readable. Run "
                   "`v-secure keys rewrap` to move existing data keys to the new version.")
    return KeyRotation(provider=provider.name, kid=kid, previous_kid=previous, new_version=True, message=message)
