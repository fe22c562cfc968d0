"""Encryption keys: the start-up check and re-encryption under the first key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import ProgrammingError, connection, transaction
from django_tenants.utils import schema_context

from credentials.fields import SecretUndecryptable

logger = logging.getLogger(__name__)

CHECK_PLAINTEXT = "keyflow-encryption-key-check"


def encryption_keys_verify() -> None:
    """Fail loudly when the configured keys cannot open what the platform encrypted.

    Called by every web and worker process at start-up. The first run seals the check
    value; a later run with wrong keys raises ImproperlyConfigured.
    """
    from tenants.models import EncryptionKeyCheck

    connection.set_schema_to_public()
    try:
        check = EncryptionKeyCheck.objects.filter(pk=1).first()
    except SecretUndecryptable:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY cannot decrypt data this platform encrypted: the key is "
            "wrong or the key in use was removed. Refusing to start (a ciphertext must never "
            "be sent to a provider as a key)."
        ) from None
    except ProgrammingError:
        connection.close()  # the table does not exist yet: migrations have not run
        logger.warning("Encryption key check skipped: run migrations first.")
        return
    if check is None:
        # Several processes start at once (gunicorn workers): the first seal wins, and every
        # process then opens the one that was stored.
        EncryptionKeyCheck.objects.bulk_create(
            [EncryptionKeyCheck(pk=1, sealed=CHECK_PLAINTEXT)], ignore_conflicts=True
        )
        return encryption_keys_verify()
    if check.sealed != CHECK_PLAINTEXT:
        raise ImproperlyConfigured("The encryption key check value is corrupt.")


def _encrypted_under_first_key(token: str) -> bool:
    try:
        Fernet(settings.FIELD_ENCRYPTION_KEY[0]).decrypt(token.encode())
        return True
    except InvalidToken:
        return False


@dataclass
class ReencryptionReport:
    tenants: int = 0
    reencrypted: int = 0
    already_current: int = 0


def credentials_reencrypt(*, progress: Callable[[str], None] = lambda line: None) -> ReencryptionReport:
    """Re-encrypt every tenant's credential secrets with the first key in FIELD_ENCRYPTION_KEY.

    Each credential commits on its own, and rows already under the first key are skipped,
    so an interrupted run is resumed by running it again.
    """
    from credentials.models import Credential
    from tenants.models import EncryptionKeyCheck
    from tenants.selectors import tenant_list

    report = ReencryptionReport()
    tenants = tenant_list()
    for position, tenant in enumerate(tenants, start=1):
        report.tenants += 1
        done = current = 0
        with schema_context(tenant.schema_name):
            with connection.cursor() as cursor:
                cursor.execute("SELECT id, secrets FROM credentials_credential ORDER BY id")
                rows = cursor.fetchall()
            for credential_id, token in rows:
                if _encrypted_under_first_key(token):
                    current += 1
                    continue
                with transaction.atomic():
                    credential = Credential.objects.select_for_update().get(pk=credential_id)
                    # Loading decrypted it with whichever key fits; saving encrypts with the first.
                    credential.save(update_fields=["secrets"])
                done += 1
        report.reencrypted += done
        report.already_current += current
        progress(f"[{position}/{len(tenants)}] {tenant.slug}: {done} re-encrypted, {current} already current")
    connection.set_schema_to_public()
    check = EncryptionKeyCheck.objects.filter(pk=1).first()
    if check is not None:
        check.save(update_fields=["sealed"])
    return report
