"""Key providers: wrap and unwrap data keys under a master key that never leaves the provider.

One small interface (:class:`chalicelib.ports.KeyProvider`), several providers, like the AWS
Encryption SDK's keyrings:

* ``kms`` (default): AWS KMS ``GenerateDataKey`` / ``Decrypt`` with the encryption context.
* ``passphrase``: a key derived from ``V_SECURE_ENCRYPTION_KEY`` with PBKDF2-HMAC-SHA256, for
  setups without KMS.

A :class:`Keyring` writes with the configured provider and reads any envelope whose ``kid``
names a provider it knows, so a vault can change providers without re-encrypting first.

Example::

    keyring = get_keyring()
    data_key = keyring.generate_data_key({"secret_id": "db", "version": "1", "type": "api_key"})
"""

from chalicelib.vault.keys.cache import CachingKeyring
from chalicelib.vault.keys.keyring import Keyring, get_keyring, reset_keyring

__all__ = ["CachingKeyring", "Keyring", "get_keyring", "reset_keyring"]
