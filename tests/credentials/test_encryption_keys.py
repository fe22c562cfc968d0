"""Key rotation and wrong keys, in real processes (each reads FIELD_ENCRYPTION_KEY at start)."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django_tenants.utils import schema_context

from credentials.models import Credential
from credentials.services import credential_create
from tests.conftest import canary_key

REPO_ROOT = Path(__file__).resolve().parents[2]
READ_SECRET = (
    "import hashlib, json\n"
    "from django_tenants.utils import schema_context\n"
    "from credentials.models import Credential\n"
    "with schema_context('alpha'):\n"
    "    c = Credential.objects.get(pk='{id}')\n"
    "print(hashlib.sha256(json.loads(c.secrets)['api_key'].encode()).hexdigest())\n"
)


def manage(*args: str, keys: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    parts = urlsplit(env["DATABASE_URL"])
    env["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
    env["FIELD_ENCRYPTION_KEY"] = keys
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )


@pytest.fixture
def committed_credential(django_db_setup, django_db_blocker, tenant_a):
    key = canary_key()
    with django_db_blocker.unblock():
        with schema_context(tenant_a.schema_name):
            credential = credential_create(
                provider="openai", name="rotation", secrets={"api_key": key},
                config={"base_url": "http://127.0.0.1:9/v1"},
            )
        yield credential, key
        with schema_context(tenant_a.schema_name):
            Credential.objects.filter(pk=credential.pk).delete()


def test_reencrypt_leaves_every_credential_readable_with_only_the_new_key(committed_credential):
    credential, key = committed_credential
    old = os.environ["FIELD_ENCRYPTION_KEY"]
    new = Fernet.generate_key().decode()
    expected = hashlib.sha256(key.encode()).hexdigest()
    try:
        rotated = manage("credentials_reencrypt", keys=f"{new},{old}")
        assert rotated.returncode == 0, rotated.stderr
        assert "alpha: " in rotated.stdout and "re-encrypted" in rotated.stdout
        # Run again: nothing left to do (resumable, idempotent).
        again = manage("credentials_reencrypt", keys=f"{new},{old}")
        assert "0 credential(s) re-encrypted" in again.stdout

        only_new = manage("shell", "-c", READ_SECRET.format(id=credential.id), keys=new)
        assert only_new.returncode == 0, only_new.stderr
        assert only_new.stdout.strip().splitlines()[-1] == expected

        only_old = manage("shell", "-c", READ_SECRET.format(id=credential.id), keys=old)
        assert only_old.returncode != 0
        assert "cannot be decrypted" in only_old.stderr
        assert key not in only_old.stderr + only_old.stdout
    finally:
        # Seal everything under the test session's key again for the tests that follow.
        restored = manage("credentials_reencrypt", keys=f"{old},{new}")
        assert restored.returncode == 0, restored.stderr


def test_a_wrong_key_stops_start_up_loudly(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        ok = manage("check_encryption_keys", keys=os.environ["FIELD_ENCRYPTION_KEY"])
    assert ok.returncode == 0, ok.stderr
    wrong = manage("check_encryption_keys", keys=Fernet.generate_key().decode())
    assert wrong.returncode != 0
    assert "Refusing to start" in wrong.stderr


@pytest.mark.parametrize("keys", ["", "not-a-fernet-key", "short,"])
def test_a_malformed_key_stops_start_up_with_a_clear_message(keys):
    result = manage("check", keys=keys)
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY" in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]
