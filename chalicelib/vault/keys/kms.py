"""AWS KMS key provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DecryptionFailed, DependencyUnavailable, KeyUnavailable
from chalicelib.ports import DataKey, check_round_trip

PREFIX = "kms:"
_KEY_STATE_ERRORS = {
    "DisabledException": "is disabled",
    "KMSInvalidStateException": "is not usable in its current state (pending deletion, pending import or "
                                "unavailable)",
    "NotFoundException": "does not exist",
    "KeyUnavailableException": "is unavailable",
    "AccessDeniedException": "is not usable with these credentials (access denied)",
}


class KmsKeyProvider:
    """Data keys from KMS ``GenerateDataKey``; ``kid`` is ``kms:<key arn>``.

    Example::

        provider = KmsKeyProvider(client("kms"), "alias/v-secure-data")
    """

    name = "kms"

    def __init__(self, kms: Any, key_id: str) -> None:
        self._kms = kms
        self._key_id = key_id

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        answer = self._call("GenerateDataKey", self._kms.generate_data_key, KeyId=self._key_id,
                            KeySpec="AES_256", EncryptionContext=dict(context))
        return DataKey(answer["Plaintext"], answer["CiphertextBlob"], PREFIX + answer["KeyId"])

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        key_arn = kid.removeprefix(PREFIX)
        answer = self._call("Decrypt", self._kms.decrypt, key_name=key_arn, CiphertextBlob=wrapped, KeyId=key_arn,
                            EncryptionContext=dict(context))
        return bytes(answer["Plaintext"])

    def check_health(self) -> None:
        check_round_trip(self, "KMS returned a different data key on unwrap")

    # --- key administration (rewrap, rotation, status) ---------------------------------------

    def wrap_data_key(self, plaintext: bytes, context: Mapping[str, str],
                      kid: str | None = None) -> tuple[bytes, str]:
        """KMS ``Encrypt`` of an existing data key under ``kid`` (default: the configured key)."""
        key_id = kid.removeprefix(PREFIX) if kid else self._key_id
        answer = self._call("Encrypt", self._kms.encrypt, key_name=key_id, KeyId=key_id, Plaintext=plaintext,
                            EncryptionContext=dict(context))
        return bytes(answer["CiphertextBlob"]), PREFIX + answer["KeyId"]

    def rewrap_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str],
                        target_kid: str | None = None) -> tuple[bytes, str]:
        """KMS ``ReEncrypt``: the data key is never returned to v-secure."""
        target = target_kid.removeprefix(PREFIX) if target_kid else self._key_id
        answer = self._call("ReEncrypt", self._kms.re_encrypt, key_name=kid.removeprefix(PREFIX),
                            CiphertextBlob=wrapped, SourceKeyId=kid.removeprefix(PREFIX),
                            SourceEncryptionContext=dict(context), DestinationKeyId=target,
                            DestinationEncryptionContext=dict(context))
        return bytes(answer["CiphertextBlob"]), PREFIX + answer["KeyId"]

    def current_kid(self) -> str:
        return self.resolve_kid(self._key_id)

    def resolve_kid(self, key_id: str) -> str:
        """``kms:<key ARN>`` for a key id, ARN or alias (``DescribeKey``)."""
        key_id = key_id.removeprefix(PREFIX)
        metadata = self._call("DescribeKey", self._kms.describe_key, key_name=key_id, KeyId=key_id)["KeyMetadata"]
        return PREFIX + metadata["Arn"]

    def key_state(self, kid: str) -> str:
        """``Enabled``, ``Disabled``, ``PendingDeletion``... as KMS reports it."""
        key_id = kid.removeprefix(PREFIX)
        metadata = self._call("DescribeKey", self._kms.describe_key, key_name=key_id, KeyId=key_id)["KeyMetadata"]
        return str(metadata.get("KeyState", "Unknown"))

    def rotate(self, *, on_demand: bool = False, period_days: int | None = None) -> dict[str, Any]:
        """Turn on automatic rotation of the configured key and, with ``on_demand``, rotate it now.

        KMS keeps every earlier key material: data keys wrapped before stay readable, and a
        rewrap (``ReEncrypt`` to the same key) moves them to the newest material.
        """
        arn = self.current_kid().removeprefix(PREFIX)
        enable: dict[str, Any] = {"KeyId": arn}
        if period_days is not None:
            enable["RotationPeriodInDays"] = period_days
        self._call("EnableKeyRotation", self._kms.enable_key_rotation, key_name=arn, **enable)
        if on_demand:
            self._call("RotateKeyOnDemand", self._kms.rotate_key_on_demand, key_name=arn, KeyId=arn)
        status = self._call("GetKeyRotationStatus", self._kms.get_key_rotation_status, key_name=arn, KeyId=arn)
        return {"key_arn": arn, "automatic_rotation": bool(status.get("KeyRotationEnabled")),
                "rotation_period_days": status.get("RotationPeriodInDays"), "rotated_on_demand": on_demand}

    def _call(self, operation: str, method: Any, *, key_name: str | None = None, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = method(**kwargs)
            return result
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "InvalidCiphertextException":
                raise DecryptionFailed(
                    "KMS refused the wrapped data key (altered, or another context)") from None
            if code in _KEY_STATE_ERRORS:
                raise KeyUnavailable(f"KMS key {key_name or self._key_id} {_KEY_STATE_ERRORS[code]}: "
                                     f"{operation} refused ({code})") from None
            raise DependencyUnavailable("kms", f"{operation} failed: {code}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("kms", f"{operation} failed: {type(error).__name__}") from None
