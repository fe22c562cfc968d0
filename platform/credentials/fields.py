"""An encrypted text field that refuses to hand back ciphertext.

django-encrypted-model-fields returns the stored ciphertext unchanged when no configured
key can decrypt it. For provider keys that would mean sending ciphertext to a provider as
if it were a key, so this field raises instead.
"""

from __future__ import annotations

import cryptography.fernet
from encrypted_model_fields.fields import EncryptedTextField, decrypt_str


class SecretUndecryptable(RuntimeError):
    """A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEY."""


class StrictEncryptedTextField(EncryptedTextField):
    def from_db_value(self, value, *args, **kwargs):
        if value is None or value == "":
            return value
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        try:
            return decrypt_str(value)
        except cryptography.fernet.InvalidToken:
            raise SecretUndecryptable(
                "A stored credential secret cannot be decrypted with the configured "
                "FIELD_ENCRYPTION_KEY (wrong key, or the key that encrypted it was removed)."
            ) from None
