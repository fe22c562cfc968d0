import json

import pytest
from django.db import connection

from credentials.errors import CredentialInvalid
from credentials.models import Credential, CredentialEvent
from credentials.services import (
    credential_disable,
    credential_enable,
    credential_fingerprint,
    credential_for_provider,
    credential_secrets,
    credential_set_default,
    credential_update,
    credential_validate,
)
from fake_llm.client import key_sha256
from tests.conftest import canary_key


def raw_column(credential_id) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM credentials_credential WHERE id = %s", [credential_id])
        return cursor.fetchone()[0]


def test_secret_is_encrypted_at_rest_and_masked(make_credential):
    key = canary_key()
    credential = make_credential(secrets={"api_key": key})
    stored = raw_column(credential.id)
    assert key not in stored and key[-12:] not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert credential.hint == key[-4:]
    assert credential.fingerprint == credential_fingerprint(provider="openai", material=key)
    assert key not in credential.fingerprint
    fresh = Credential.objects.get(pk=credential.pk)
    assert credential_secrets(fresh) == {"api_key": key}
    assert key not in repr(credential_for_provider(fresh))


def test_every_change_is_audited_without_secrets(make_credential):
    key, new_key = canary_key(), canary_key()
    credential = make_credential(secrets={"api_key": key})
    credential_update(credential=credential, name="Renamed", secrets={"api_key": new_key}, actor="bob")
    credential_disable(credential=credential, actor="bob")
    credential_enable(credential=credential, actor="bob")
    events = list(CredentialEvent.objects.filter(credential_id=credential.id).order_by("id"))
    assert [e.action for e in events] == ["created", "secret_rotated", "updated", "disabled", "enabled"]
    assert events[1].actor == "bob"
    dump = json.dumps([e.details for e in events]) + "".join(str(e) for e in events)
    assert key not in dump and new_key not in dump


def test_rotation_keeps_the_id_and_changes_fingerprint_and_version(make_credential):
    credential = make_credential()
    before = (credential.id, credential.fingerprint, credential.version)
    new_key = canary_key()
    credential_update(credential=credential, secrets={"api_key": new_key})
    credential.refresh_from_db()
    assert credential.id == before[0]
    assert credential.fingerprint != before[1]
    assert credential.version == before[2] + 1
    assert credential_secrets(credential)["api_key"] == new_key


def test_empty_secret_on_update_keeps_the_stored_one(make_credential):
    key = canary_key()
    credential = make_credential(secrets={"api_key": key})
    credential_update(credential=credential, name="Other", secrets={"api_key": ""})
    credential.refresh_from_db()
    assert credential_secrets(credential)["api_key"] == key
    assert credential.name == "Other"


def test_one_active_default_per_provider_enforced_by_the_database(make_credential):
    make_credential(is_default=True)
    with pytest.raises(CredentialInvalid) as excinfo:
        make_credential(is_default=True, name="Second")
    assert "is_default" in excinfo.value.errors
    assert Credential.objects.filter(name="Second").count() == 0
    # The constraint holds even for writes that skip the services.
    from django.db import IntegrityError, transaction

    other = make_credential(name="Third")
    with pytest.raises(IntegrityError), transaction.atomic():
        Credential.objects.filter(pk=other.pk).update(is_default=True)


def test_set_default_moves_the_flag_and_disabled_defaults_step_down(make_credential):
    first = make_credential(is_default=True, name="First")
    second = make_credential(name="Second")
    credential_set_default(credential=second, actor="t")
    first.refresh_from_db()
    assert (first.is_default, second.is_default) == (False, True)
    credential_disable(credential=second)
    second.refresh_from_db()
    assert not second.is_default
    with pytest.raises(CredentialInvalid):
        credential_set_default(credential=second)


def test_owned_credentials_cannot_be_default(make_credential):
    with pytest.raises(CredentialInvalid):
        make_credential(owner="end-user-1", is_default=True)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"provider": "nope"}, "provider"),
        ({"secrets": {}}, "api_key"),
        ({"config": {"base_url": "not a url"}}, "base_url"),
        ({"config": {"base_url": "ftp://example.com"}}, "base_url"),
        ({"config": {"bogus": "x"}}, "bogus"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"secrets": {"api_key": "k" * 5000}}, "api_key"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(make_credential, overrides, field):
    with pytest.raises(CredentialInvalid) as excinfo:
        make_credential(**overrides)
    assert field in excinfo.value.errors
    assert Credential.objects.count() == 0
    assert CredentialEvent.objects.count() == 0


def test_bad_input_never_echoes_the_secret(make_credential):
    key = "sk-canary-has space" + canary_key()
    with pytest.raises(CredentialInvalid) as excinfo:
        make_credential(secrets={"api_key": key})
    assert key not in str(excinfo.value) and "has space" not in str(excinfo.value)


def test_validate_records_success_with_the_real_key_reaching_the_provider(make_credential, fake):
    key = canary_key()
    credential = make_credential(secrets={"api_key": key})
    result = credential_validate(credential=credential, actor="t")
    assert result.ok
    credential.refresh_from_db()
    assert credential.validation_status == "valid" and credential.validated_at
    calls = fake.calls()
    assert [c["key_sha256"] for c in calls] == [key_sha256(key)]


def test_validate_failure_is_recorded_and_redacted(make_credential, fake):
    key = canary_key()
    credential = make_credential(secrets={"api_key": key})
    fake.add_fault(key_sha256=key_sha256(key), status=401, echo_key=True)
    result = credential_validate(credential=credential)
    assert not result.ok
    credential.refresh_from_db()
    assert credential.validation_status == "invalid"
    assert key not in credential.validation_message
    assert key not in result.message
    assert fake.calls()[0]["status"] == 401
