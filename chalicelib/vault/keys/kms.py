"""AWS KMS key provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DecryptionFailed, DependencyUnavailable, KeyUnavailable
from chalicelib.ports import DataKey

PREFIX = "kms:"
_KEY_STATE_ERRORS = {"DisabledException", "KMSInvalidStateException", "NotFoundException",
                     "KeyUnavailableException", "AccessDeniedException"}


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
        answer = self._call("Decrypt", self._kms.decrypt, CiphertextBlob=wrapped, KeyId=key_arn,
                            EncryptionContext=dict(context))
        return bytes(answer["Plaintext"])

    def check_health(self) -> None:
        context = {"purpose": "health-check"}
        data_key = self.generate_data_key(context)
        if self.decrypt_data_key(data_key.wrapped, data_key.kid, context) != data_key.plaintext:
            raise KeyUnavailable("KMS returned a different data key on unwrap")

    def _call(self, operation: str, method: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = method(**kwargs)
            return result
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "InvalidCiphertextException":
                raise DecryptionFailed(
                    "KMS refused the wrapped data key (altered, or another context)") from None
            if code in _KEY_STATE_ERRORS:
                raise KeyUnavailable(f"KMS key {self._key_id} unusable for {operation}: {code}") from None
            raise DependencyUnavailable("kms", f"{operation} failed: {code}") from None
        except BotoCoreError as error:
            raise DependencyUnavailable("kms", f"{operation} failed: {type(error).__name__}") from None
