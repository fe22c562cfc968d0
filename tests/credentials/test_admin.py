"""The tenant admin for credentials: write-only secrets, adaptive form, audited actions."""

import pytest
from django.test import Client

from credentials.models import Credential, CredentialEvent
from credentials.services import credential_create, credential_secrets
from tests.conftest import canary_key

CHANGELIST = "/admin/credentials/credential/"


@pytest.fixture
def admin_client(admin_client, fake):
    """Alpha's admin, with the fake provider's record reset (its pages call the provider)."""
    return admin_client


def in_alpha(tenant_a):
    from django_tenants.utils import schema_context

    return schema_context(tenant_a.schema_name)


def test_add_form_adapts_to_the_provider(admin_client):
    openai_form = admin_client.get(CHANGELIST + "add/?provider=openai").content.decode()
    azure_form = admin_client.get(CHANGELIST + "add/?provider=azure_openai").content.decode()
    assert 'name="secret__api_key" type="password"' in openai_form or 'type="password" name="secret__api_key"' in openai_form
    assert "config__base_url" in openai_form and "config__endpoint" not in openai_form
    assert "config__endpoint" in azure_form and "config__api_version" in azure_form


def test_add_then_change_never_renders_the_secret(admin_client, tenant_a, fake):
    key = canary_key()
    response = admin_client.post(
        CHANGELIST + "add/?provider=openai",
        {"name": "From admin", "provider": "openai", "owner": "", "secret__api_key": key,
         "config__base_url": fake.url + "/v1"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with in_alpha(tenant_a):
        credential = Credential.objects.get(name="From admin")
        assert credential_secrets(credential)["api_key"] == key
        assert CredentialEvent.objects.filter(credential_id=credential.id, actor="admin:admin@alpha.test").exists()
    pages = [
        admin_client.get(CHANGELIST).content.decode(),
        admin_client.get(f"{CHANGELIST}{credential.id}/change/").content.decode(),
        admin_client.get("/admin/credentials/credentialevent/").content.decode(),
    ]
    assert "…" + key[-4:] in pages[0]
    for page in pages:
        assert key not in page and key[:-4] not in page


def test_empty_secret_on_change_keeps_the_stored_key(admin_client, tenant_a, fake):
    key = canary_key()
    with in_alpha(tenant_a):
        credential = credential_create(provider="openai", name="Keep", secrets={"api_key": key},
                                       config={"base_url": fake.url + "/v1"})
    response = admin_client.post(
        f"{CHANGELIST}{credential.id}/change/",
        {"name": "Kept", "owner": "", "secret__api_key": "", "config__base_url": fake.url + "/v1"},
    )
    assert response.status_code == 302
    with in_alpha(tenant_a):
        credential.refresh_from_db()
        assert credential.name == "Kept"
        assert credential_secrets(credential)["api_key"] == key


def test_bad_input_shows_field_errors_and_writes_nothing(admin_client, tenant_a):
    response = admin_client.post(
        CHANGELIST + "add/?provider=openai",
        {"name": "Bad", "provider": "openai", "secret__api_key": "", "config__base_url": "nope"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "This field is required." in page
    assert "errorlist" in page
    with in_alpha(tenant_a):
        assert not Credential.objects.filter(name="Bad").exists()


def test_actions_validate_set_default_disable(admin_client, tenant_a, fake):
    key = canary_key()
    with in_alpha(tenant_a):
        credential = credential_create(provider="openai", name="Act", secrets={"api_key": key},
                                       config={"base_url": fake.url + "/v1"})
    for action in ("validate_selected", "set_default", "disable_selected"):
        response = admin_client.post(
            CHANGELIST, {"action": action, "_selected_action": [str(credential.id)]}, follow=True
        )
        assert response.status_code == 200
        assert key not in response.content.decode()
    with in_alpha(tenant_a):
        credential.refresh_from_db()
        assert credential.validation_status == "valid"
        assert credential.status == "disabled" and not credential.is_default
        actions = list(CredentialEvent.objects.filter(credential_id=credential.id).values_list("action", flat=True))
        assert {"validated", "set_default", "disabled"} <= set(actions)


def test_management_tokens_are_shown_once(admin_client, tenant_a):
    response = admin_client.post("/admin/tenants/managementtoken/add/", {"name": "ci"}, follow=True)
    page = response.content.decode()
    token = page.split("store it now): ")[1].split("<")[0].strip()
    assert token.startswith("kf-")
    listing = admin_client.get("/admin/tenants/managementtoken/").content.decode()
    assert token not in listing and token[:10] in listing
    api = Client().get("/api/tenant", HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.json()["slug"] == "alpha"
