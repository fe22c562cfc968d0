"""Requests reach a tenant by token (on any host) or by host; everything else is refused."""

import pytest
from django.test import Client

from tenants.models import ApiToken
from tenants.services import api_token_issue, api_token_revoke, tenant_resume, tenant_suspend


@pytest.fixture
def client():
    return Client()


def test_unknown_host_is_a_json_404(db, client):
    response = client.get("/admin/login/", HTTP_HOST="nobody.localhost")
    assert response.status_code == 404
    assert response.json() == {
        "status": 404,
        "code": "not_found",
        "message": "No tenant is served at nobody.localhost.",
    }


def test_tenant_host_serves_its_own_admin(db, client, tenant_a):
    response = client.get("/admin/login/", HTTP_HOST="alpha.localhost")
    assert response.status_code == 200
    assert b"Tenant alpha" in response.content


def test_platform_host_serves_the_operators_admin(db, client):
    response = client.get("/admin/login/", HTTP_HOST="localhost")
    assert response.status_code == 200
    assert b"Keyflow platform" in response.content


def test_tenant_admin_login_works_and_stays_on_its_tenant(db, provisioned_tenants):
    alpha = provisioned_tenants["alpha"]
    client = Client(HTTP_HOST="alpha.localhost")
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": alpha.admin_email, "password": alpha.admin_password},
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    # The same session cookie means nothing on another tenant's host.
    response = client.get("/admin/", HTTP_HOST="beta.localhost")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_management_token_routes_on_any_host(db, client, tenant_a):
    issued = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT, name="ci")
    for host in ("localhost", "beta.localhost", "127.0.0.1", "alpha.localhost"):
        response = client.get("/api/tenant", HTTP_HOST=host, HTTP_AUTHORIZATION=f"Bearer {issued.token}")
        assert response.status_code == 200, host
        assert response.json()["slug"] == "alpha"
    issued.record.refresh_from_db()
    assert issued.record.last_used_at is not None


@pytest.mark.parametrize("token", ["kf-unknown", "app-unknown", "something-else", ""])
def test_bad_tokens_get_the_same_401(db, client, token):
    response = client.get("/api/tenant", HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_revoked_token_is_refused(db, client, tenant_a):
    issued = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT)
    api_token_revoke(token=issued.record)
    response = client.get("/api/tenant", HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {issued.token}")
    assert response.status_code == 401


def test_only_the_token_hash_is_stored(db, tenant_a):
    issued = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT)
    assert issued.token.startswith("kf-")
    stored = ApiToken.objects.filter(pk=issued.record.pk).values().get()
    assert all(issued.token not in str(value) for value in stored.values())


def test_suspended_tenant_answers_403_on_hosts_and_tokens_and_keeps_its_data(db, client, tenant_a):
    issued = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT)
    tenant_suspend(tenant=tenant_a)
    response = client.get("/admin/login/", HTTP_HOST="alpha.localhost")
    assert response.status_code == 403
    assert response.json()["code"] == "tenant_suspended"
    response = client.get("/api/tenant", HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {issued.token}")
    assert response.status_code == 403
    tenant_resume(tenant=tenant_a)
    response = client.get("/api/tenant", HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {issued.token}")
    assert response.status_code == 200
