"""KMS provider failures and administration calls, with botocore's Stubber (moto ignores key state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from chalicelib.errors import DecryptionFailed, DependencyUnavailable, KeyUnavailable
from chalicelib.vault.keys.kms import KmsKeyProvider

# Alias ARNs (KMS takes them as KeyId), so the IAM policy check can tell which key each call uses.
ARN = "arn:aws:kms:us-east-1:111122223333:alias/v-secure-data"
ARN_B = "arn:aws:kms:us-east-1:111122223333:alias/v-secure-rewrap-data"
CONTEXT = {"secret_id": "db", "version": "1", "type": "api_key"}


@pytest.fixture
def kms() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("kms", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(("code", "says"), [
    ("DisabledException", "is disabled"),
    ("KMSInvalidStateException", "pending deletion"),
    ("NotFoundException", "does not exist"),
    ("KeyUnavailableException", "is unavailable"),
    ("AccessDeniedException", "access denied"),
])
def test_an_unusable_key_is_a_clear_503_on_wrap(kms: tuple[Any, Stubber], code: str, says: str) -> None:
    client, stubber = kms
    stubber.add_client_error("generate_data_key", service_error_code=code, http_status_code=400)

    with pytest.raises(KeyUnavailable) as caught:
        KmsKeyProvider(client, "alias/v-secure-data").generate_data_key(CONTEXT)

    error = caught.value
    assert error.status == 503 and error.code == "key_unavailable"
    assert says in error.message and "alias/v-secure-data" in error.message and "GenerateDataKey" in error.message
    assert error.to_body()["details"] == {"dependency": "key_provider"}


def test_a_disabled_key_names_the_envelopes_key_on_unwrap(kms: tuple[Any, Stubber]) -> None:
    client, stubber = kms
    stubber.add_client_error("decrypt", service_error_code="DisabledException", http_status_code=400,
                             expected_params={"CiphertextBlob": b"wrapped", "KeyId": ARN_B,
                                              "EncryptionContext": CONTEXT})

    with pytest.raises(KeyUnavailable, match=f"KMS key {ARN_B} is disabled: Decrypt refused"):
        KmsKeyProvider(client, "alias/v-secure-data").decrypt_data_key(b"wrapped", f"kms:{ARN_B}", CONTEXT)


def test_health_check_fails_clearly_on_a_deleted_key(kms: tuple[Any, Stubber]) -> None:
    client, stubber = kms
    stubber.add_client_error("generate_data_key", service_error_code="KMSInvalidStateException",
                             http_status_code=400)

    with pytest.raises(KeyUnavailable, match="not usable in its current state"):
        KmsKeyProvider(client, ARN).check_health()


def test_other_failures_keep_their_meaning(kms: tuple[Any, Stubber]) -> None:
    client, stubber = kms
    stubber.add_client_error("decrypt", service_error_code="InvalidCiphertextException", http_status_code=400)
    stubber.add_client_error("decrypt", service_error_code="ThrottlingException", http_status_code=400)
    provider = KmsKeyProvider(client, ARN)

    with pytest.raises(DecryptionFailed):
        provider.decrypt_data_key(b"x", f"kms:{ARN}", CONTEXT)
    with pytest.raises(DependencyUnavailable, match="kms: Decrypt failed: ThrottlingException"):
        provider.decrypt_data_key(b"x", f"kms:{ARN}", CONTEXT)


def test_rewrap_is_one_reencrypt_with_source_and_destination_context(kms: tuple[Any, Stubber]) -> None:
    client, stubber = kms
    stubber.add_response("re_encrypt", {"CiphertextBlob": b"new", "KeyId": ARN_B, "SourceKeyId": ARN}, {
        "CiphertextBlob": b"old", "SourceKeyId": ARN, "SourceEncryptionContext": CONTEXT,
        "DestinationKeyId": ARN_B, "DestinationEncryptionContext": CONTEXT})

    assert KmsKeyProvider(client, ARN).rewrap_data_key(b"old", f"kms:{ARN}", CONTEXT, f"kms:{ARN_B}") == \
        (b"new", f"kms:{ARN_B}")


def test_wrap_an_existing_data_key_with_encrypt(kms: tuple[Any, Stubber]) -> None:
    client, stubber = kms
    stubber.add_response("encrypt", {"CiphertextBlob": b"wrapped", "KeyId": ARN},
                         {"KeyId": "alias/v-secure-data", "Plaintext": b"k" * 32, "EncryptionContext": CONTEXT})

    assert KmsKeyProvider(client, "alias/v-secure-data").wrap_data_key(b"k" * 32, CONTEXT) == \
        (b"wrapped", f"kms:{ARN}")


def test_rotate_enables_rotation_and_rotates_on_demand(kms: tuple[Any, Stubber]) -> None:
    client, stubber = kms
    stubber.add_response("describe_key", {"KeyMetadata": {"KeyId": "1111aaaa", "Arn": ARN}},
                         {"KeyId": "alias/v-secure-data"})
    stubber.add_response("enable_key_rotation", {}, {"KeyId": ARN, "RotationPeriodInDays": 180})
    stubber.add_response("rotate_key_on_demand", {"KeyId": ARN}, {"KeyId": ARN})
    stubber.add_response("get_key_rotation_status", {"KeyRotationEnabled": True, "RotationPeriodInDays": 180},
                         {"KeyId": ARN})

    result = KmsKeyProvider(client, "alias/v-secure-data").rotate(on_demand=True, period_days=180)

    assert result == {"key_arn": ARN, "automatic_rotation": True, "rotation_period_days": 180,
                      "rotated_on_demand": True}


def test_rotate_on_a_disabled_key_is_a_clear_error(kms: tuple[Any, Stubber]) -> None:
    client, stubber = kms
    stubber.add_response("describe_key", {"KeyMetadata": {"KeyId": "1111aaaa", "Arn": ARN}}, {"KeyId": ANY})
    stubber.add_client_error("enable_key_rotation", service_error_code="DisabledException", http_status_code=400)

    with pytest.raises(KeyUnavailable, match="is disabled: EnableKeyRotation refused"):
        KmsKeyProvider(client, "alias/v-secure-data").rotate()
