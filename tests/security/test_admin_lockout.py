"""Brute force on the admin sign-in pages (django-axes): a username is locked out from an
address after KEYFLOW_LOGIN_FAILURE_LIMIT failures, on that admin only. Each tenant's admin
(and the operators' platform admin) keeps its own record, as it keeps its own users."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple 42"


@pytest.fixture(scope="module")
def admins(web_server, django_db_blocker):
    """Two tenants of their own, and their hosts."""
    from tenants.services import tenant_provision

    suffix = uuid.uuid4().hex[:6]
    with django_db_blocker.unblock():
        tenants = {side: tenant_provision(name=f"Lockout {side}", slug=f"lock-{side}-{suffix}",
                                          admin_email=f"admin-{side}@lock.test").tenant
                   for side in ("a", "b")}
        for tenant in tenants.values():
            tenant.host = tenant.domains.get().domain
    return tenants


def staff_user(tenant, username: str, django_db_blocker) -> None:
    """A staff user `username` in `tenant`'s schema (None: the platform's public schema)."""
    from django.contrib.auth import get_user_model

    with django_db_blocker.unblock():
        if tenant is None:
            connection.set_schema_to_public()
        else:
            connection.set_tenant(tenant)
        try:
            get_user_model().objects.create_user(username, password=PASSWORD, is_staff=True)
        finally:
            connection.set_schema_to_public()


def host_of(tenant, base_url: str) -> str:
    port = base_url.rsplit(":", 1)[1]
    return f"{tenant.host if tenant else 'localhost'}:{port}"


def sign_in(base_url: str, host: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=base_url, headers={"Host": host}, timeout=30) as browser:
        page = browser.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return browser.post("/admin/login/?next=/admin/", data={
            "csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/",
        })


def fail_until_locked(base_url: str, host: str, username: str) -> list[int]:
    return [sign_in(base_url, host, username, "wrong").status_code
            for _ in range(settings.AXES_FAILURE_LIMIT)]


def locked_out(statuses: list[int]) -> bool:
    return statuses[:-1] == [200] * (len(statuses) - 1) and statuses[-1] == 429


def test_failed_sign_ins_lock_the_username_out_of_that_tenants_admin_only(
    web_server, admins, django_db_blocker
):
    a, b = admins["a"], admins["b"]
    base = web_server.base_url
    for tenant in (a, b, None):
        staff_user(tenant, "ops-lead", django_db_blocker)

    assert locked_out(fail_until_locked(base, host_of(a, base), "ops-lead"))
    # Locked: even the right password is refused now, with axes' 429 page.
    refused = sign_in(base, host_of(a, base), "ops-lead", PASSWORD)
    assert refused.status_code == 429 and "locked" in refused.text.lower()
    # The same username on another tenant's admin, and on the platform admin, signs in.
    assert sign_in(base, host_of(b, base), "ops-lead", PASSWORD).status_code == 302
    assert sign_in(base, host_of(None, base), "ops-lead", PASSWORD).status_code == 302


def test_a_lockout_on_the_platform_admin_does_not_reach_the_tenants(web_server, admins, django_db_blocker):
    base = web_server.base_url
    for tenant in (admins["a"], None):
        staff_user(tenant, "night-shift", django_db_blocker)
    assert locked_out(fail_until_locked(base, host_of(None, base), "night-shift"))
    assert sign_in(base, host_of(None, base), "night-shift", PASSWORD).status_code == 429
    assert sign_in(base, host_of(admins["a"], base), "night-shift", PASSWORD).status_code == 302


def test_failures_below_the_limit_lock_nothing_and_a_success_clears_them(
    web_server, admins, django_db_blocker
):
    base, host = web_server.base_url, host_of(admins["b"], web_server.base_url)
    staff_user(admins["b"], "careful", django_db_blocker)
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert sign_in(base, host, "careful", "wrong").status_code == 200
        assert sign_in(base, host, "careful", PASSWORD).status_code == 302  # resets the count


def test_the_lockout_is_per_username_and_address(db, admins, django_db_blocker):
    """In process, where the client address can be chosen."""
    tenant = admins["b"]
    staff_user(tenant, "shared-desk", django_db_blocker)
    staff_user(tenant, "other-desk", django_db_blocker)
    host = tenant.host

    def attempt(address: str, username: str, password: str) -> int:
        client = Client(HTTP_HOST=host, REMOTE_ADDR=address)
        return client.post("/admin/login/?next=/admin/",
                           {"username": username, "password": password}).status_code

    statuses = [attempt("203.0.113.7", "shared-desk", "wrong") for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert locked_out(statuses)
    assert attempt("203.0.113.7", "shared-desk", PASSWORD) == 429
    # A guesser elsewhere cannot lock the real user out, nor other users from that address.
    assert attempt("198.51.100.23", "shared-desk", PASSWORD) == 302
    assert attempt("203.0.113.7", "other-desk", PASSWORD) == 302
