"""Fixtures shared by every test: two provisioned tenants in the test database.

Tenants are provisioned once per session (creating and migrating a schema is the slow part)
and committed, so worker and web processes started by end-to-end tests see them too.
"""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker):
    """Always create the test database, even when only end-to-end tests run: pytest-django
    would skip it when no collected test asks for `db`, yet the processes they start need it."""
    from django.test.utils import setup_databases, teardown_databases

    from tenants.services import tenant_provision

    with django_db_blocker.unblock():
        databases = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        provisioned = {
            slug: tenant_provision(name=f"Tenant {slug}", slug=slug, admin_email=f"admin@{slug}.test")
            for slug in ("alpha", "beta")
        }
    django_db_setup_tenants.update(provisioned)
    yield
    with django_db_blocker.unblock():
        connection.close()
        teardown_databases(databases, verbosity=0)


django_db_setup_tenants: dict = {}


@pytest.fixture
def provisioned_tenants(django_db_setup):
    return django_db_setup_tenants


@pytest.fixture
def tenant_a(provisioned_tenants):
    return provisioned_tenants["alpha"].tenant


@pytest.fixture
def tenant_b(provisioned_tenants):
    return provisioned_tenants["beta"].tenant


@pytest.fixture
def in_tenant(db):
    """Run the test body inside a tenant's schema: `with in_tenant(tenant): ...`."""
    from contextlib import contextmanager

    @contextmanager
    def enter(tenant):
        connection.set_tenant(tenant)
        try:
            yield tenant
        finally:
            connection.set_schema_to_public()

    return enter


@pytest.fixture(scope="session")
def fake_llm():
    """The fake LLM provider: a real HTTP server on loopback (in a thread of this process)."""
    from fake_llm.server import FakeLLMServer

    server = FakeLLMServer(host="127.0.0.1", port=0).start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_llm):
    """The fake provider with a clean call record and no faults."""
    fake_llm.reset()
    yield fake_llm
    fake_llm.reset()


@pytest.fixture
def admin_client(db, provisioned_tenants):
    """Tenant alpha's admin user, logged in to alpha's admin site (pytest-django's own
    admin_client would be a platform superuser)."""
    from django.test import Client

    alpha = provisioned_tenants["alpha"]
    client = Client(HTTP_HOST="alpha.localhost")
    response = client.post("/admin/login/", {"username": alpha.admin_email, "password": alpha.admin_password})
    assert response.status_code == 302
    return client


def canary_key(prefix: str = "sk-canary-") -> str:
    """A unique, recognisable secret: tests look for it everywhere it must not be."""
    import secrets

    return prefix + secrets.token_hex(16)


@pytest.fixture(autouse=True)
def _public_schema_after_each_test():
    """Requests made with the test client leave the connection in their tenant's schema."""
    yield
    connection.set_schema_to_public()
