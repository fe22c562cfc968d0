"""Management API for credentials: secrets write-only, tenant isolation, clear 4xx errors."""

import uuid

import pytest
from django.test import Client

from credentials.models import Credential
from fake_llm.client import key_sha256
from tenants.models import ApiToken
from tenants.services import api_token_issue
from tests.conftest import canary_key


@pytest.fixture
def api(db, tenant_a, fake):
    token = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT).token
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")


@pytest.fixture
def api_b(db, tenant_b):
    token = api_token_issue(tenant=tenant_b, scope=ApiToken.Scope.MANAGEMENT).token
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")


def create(api, fake, key=None, **overrides):
    body = {
        "provider": "openai",
        "name": "Customer key",
        "secrets": {"api_key": key or canary_key()},
        "config": {"base_url": fake.url + "/v1"},
    }
    body.update(overrides)
    return api.post("/api/credentials", body, content_type="application/json")


def test_create_list_retrieve_never_return_the_secret(api, fake, caplog):
    key = canary_key()
    created = create(api, fake, key=key, is_default=True)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["hint"] == "…" + key[-4:]
    assert body["is_default"] is True
    listed = api.get("/api/credentials")
    detail = api.get(f"/api/credentials/{body['id']}")
    validated = api.post(f"/api/credentials/{body['id']}/validate")
    assert validated.json()["ok"] is True
    for response in (created, listed, detail, validated):
        assert response.status_code in (200, 201)
        assert key not in response.content.decode()
        assert key[4:] not in response.content.decode()
    assert key not in caplog.text
    assert listed.json()["total"] == 1 and listed.json()["data"][0]["id"] == body["id"]
    assert [c["key_sha256"] for c in fake.calls()] == [key_sha256(key)]


def test_filters_and_pagination(api, fake):
    for index in range(3):
        create(api, fake, name=f"k{index}", owner="user-9" if index == 0 else "")
    create(api, fake, provider="anthropic", name="claude", config={"base_url": fake.url})
    assert api.get("/api/credentials?provider=anthropic").json()["total"] == 1
    assert api.get("/api/credentials?owner=user-9").json()["total"] == 1
    page = api.get("/api/credentials?limit=2&page=2").json()
    assert (page["total"], len(page["data"]), page["has_more"]) == (4, 2, False)
    assert api.get("/api/credentials?limit=0").status_code == 400
    assert api.get("/api/credentials?status=bogus").status_code == 400


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"provider": "nope"}, "provider"),
        ({"secrets": {}}, "api_key"),
        ({"config": {"base_url": "javascript:alert(1)"}}, "base_url"),
        ({"name": "x" * 300}, "name"),
        ({"secretz": {"api_key": "x"}}, "secretz"),
        ({"secrets": "sk-plain-string"}, "secrets"),
    ],
)
def test_bad_input_is_a_dify_style_400_and_writes_nothing(api, fake, alpha_schema_count, body, fragment):
    response = create(api, fake, **body)
    assert response.status_code == 400
    error = response.json()
    assert set(error) == {"status", "code", "message"}
    assert error["status"] == 400 and error["code"] == "invalid_param"
    assert fragment in error["message"]
    assert alpha_schema_count() == 0


def test_second_default_is_refused(api, fake):
    assert create(api, fake, is_default=True).status_code == 201
    response = create(api, fake, is_default=True, name="again")
    assert response.status_code == 400
    assert "is_default" in response.json()["message"]


def test_invalid_json_is_a_400(api):
    response = api.post("/api/credentials", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_param"


def test_update_rotates_and_actions_work(api, fake):
    body = create(api, fake).json()
    new_key = canary_key()
    patched = api.patch(
        f"/api/credentials/{body['id']}", {"secrets": {"api_key": new_key}}, content_type="application/json"
    )
    assert patched.status_code == 200
    assert patched.json()["id"] == body["id"] and patched.json()["version"] == body["version"] + 1
    assert new_key not in patched.content.decode()
    assert api.post(f"/api/credentials/{body['id']}/set-default").json()["is_default"] is True
    disabled = api.post(f"/api/credentials/{body['id']}/disable").json()
    assert (disabled["status"], disabled["is_default"]) == ("disabled", False)
    assert api.post(f"/api/credentials/{body['id']}/enable").json()["status"] == "active"
    assert api.delete(f"/api/credentials/{body['id']}").status_code == 204
    assert api.get(f"/api/credentials/{body['id']}").status_code == 404


def test_patch_cannot_point_a_stored_key_elsewhere_without_a_valid_url(api, fake):
    body = create(api, fake).json()
    response = api.patch(
        f"/api/credentials/{body['id']}", {"config": {"base_url": "nope"}}, content_type="application/json"
    )
    assert response.status_code == 400


def test_foreign_missing_and_malformed_ids_answer_alike(api, api_b, fake):
    own = create(api, fake).json()["id"]
    answers = []
    for credential_id in (own, str(uuid.uuid4()), "not-a-uuid"):
        for method, path in (
            ("get", f"/api/credentials/{credential_id}"),
            ("patch", f"/api/credentials/{credential_id}"),
            ("delete", f"/api/credentials/{credential_id}"),
            ("post", f"/api/credentials/{credential_id}/validate"),
            ("post", f"/api/credentials/{credential_id}/set-default"),
        ):
            response = getattr(api_b, method)(path, {}, content_type="application/json")
            answers.append((response.status_code, response.json()))
    assert {status for status, _ in answers} == {404}
    assert {str(body) for _, body in answers} == {
        str({"status": 404, "code": "credential_not_found", "message": "Credential not found."})
    }
    assert api_b.get("/api/credentials").json()["total"] == 0
    assert api.get(f"/api/credentials/{own}").status_code == 200


def test_no_token_or_app_token_cannot_manage(db, tenant_a):
    assert Client().get("/api/credentials", HTTP_HOST="localhost").status_code == 401
    app_token = api_token_issue(
        tenant=tenant_a, scope=ApiToken.Scope.APP, app_id=uuid.uuid4()
    ).token
    response = Client().get("/api/credentials", HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {app_token}")
    assert response.status_code == 401


def test_admin_session_can_use_the_api_on_its_host(db, provisioned_tenants, fake):
    alpha = provisioned_tenants["alpha"]
    client = Client(HTTP_HOST="alpha.localhost")
    response = client.post("/admin/login/", {"username": alpha.admin_email, "password": alpha.admin_password})
    assert response.status_code == 302
    assert client.get("/api/credentials").status_code == 200
    # The same session on another tenant's host is nobody.
    assert client.get("/api/credentials", HTTP_HOST="beta.localhost").status_code in (401, 403)


def test_provider_list_describes_fields(api):
    providers = {p["id"]: p for p in api.get("/api/providers").json()["data"]}
    assert {"openai", "azure_openai", "anthropic"} <= set(providers)
    assert providers["openai"]["secret_fields"][0]["name"] == "api_key"


@pytest.fixture
def alpha_schema_count(tenant_a):
    from django_tenants.utils import schema_context

    def count():
        with schema_context(tenant_a.schema_name):
            return Credential.objects.count()

    return count
