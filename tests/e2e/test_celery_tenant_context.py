"""A task queued in a tenant's schema runs in that schema on a separate worker process."""

import os

import pytest
from django.db import connection

from tenants.tasks import tenant_probe_task

pytestmark = pytest.mark.e2e


def queue_probe_in(tenant):
    connection.set_tenant(tenant)
    try:
        return tenant_probe_task.delay()
    finally:
        connection.set_schema_to_public()


def test_tasks_from_two_tenants_each_see_their_own_schema(
    celery_worker, provisioned_tenants, django_db_blocker
):
    alpha, beta = provisioned_tenants["alpha"], provisioned_tenants["beta"]
    with django_db_blocker.unblock():
        results = {
            "alpha": [queue_probe_in(alpha.tenant) for _ in range(3)],
            "beta": [queue_probe_in(beta.tenant) for _ in range(3)],
        }
    for slug, admin in (("alpha", alpha), ("beta", beta)):
        for result in results[slug]:
            seen = result.get(timeout=30)
            assert seen["schema"] == slug
            assert seen["users"] == [admin.admin_email]
            assert seen["pid"] != os.getpid()


def test_worker_process_sees_the_stdlib_platform_module(celery_worker, provisioned_tenants, django_db_blocker):
    import platform

    with django_db_blocker.unblock():
        result = queue_probe_in(provisioned_tenants["alpha"].tenant)
    assert result.get(timeout=30)["python"] == platform.python_version()


def test_task_queued_in_public_schema_runs_in_public(celery_worker):
    assert tenant_probe_task.delay().get(timeout=30)["schema"] == "public"


def test_web_server_routes_hosts_to_tenants(web_server, provisioned_tenants):
    import httpx

    response = httpx.get(f"{web_server.base_url}/admin/login/", headers={"Host": "alpha.localhost"})
    assert response.status_code == 200
    assert "Tenant alpha" in response.text
    response = httpx.get(f"{web_server.base_url}/admin/login/", headers={"Host": "ghost.localhost"})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
