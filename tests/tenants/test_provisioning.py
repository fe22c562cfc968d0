import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import schema_context, schema_exists

from tenants.models import Domain, Tenant
from tenants.services import TenantError, tenant_delete, tenant_provision


def counts():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.schemata")
        schemas = cursor.fetchone()[0]
    return Tenant.objects.count(), Domain.objects.count(), schemas


def test_provision_creates_schema_domain_and_admin(db):
    provisioned = tenant_provision(name="Gamma Corp", slug="gamma-corp", admin_email="Ops@Gamma.test")

    tenant = provisioned.tenant
    assert tenant.schema_name == "gamma_corp"
    assert schema_exists("gamma_corp")
    assert provisioned.domain.domain == "gamma-corp.localhost"
    assert provisioned.admin_url == "http://gamma-corp.localhost:8000/admin/"
    with schema_context("gamma_corp"):
        admin = get_user_model().objects.get(username="ops@gamma.test")
        assert admin.is_superuser and admin.is_staff
        assert admin.check_password(provisioned.admin_password)
        assert provisioned.admin_password not in admin.password
    # The admin user lives in the tenant's schema only.
    assert not get_user_model().objects.filter(username="ops@gamma.test").exists()


@pytest.mark.parametrize(
    ("slug", "fragment"),
    [
        ("", "required"),
        ("a", "invalid"),
        ("Has Space", "invalid"),
        ("under_score", "invalid"),
        ("-leading", "invalid"),
        ("trailing-", "invalid"),
        ("9starts-with-digit", "invalid"),
        ("x" * 41, "invalid"),
        ("public", "reserved"),
        ("pg-catalog", "reserved"),
        ("pg-anything", "reserved"),
        ("information-schema", "reserved"),
        ("alpha", "already exists"),
    ],
)
def test_provision_refuses_bad_slugs_and_writes_nothing(db, tenant_a, slug, fragment):
    before = counts()
    with pytest.raises(TenantError) as excinfo:
        tenant_provision(name="Bad", slug=slug, admin_email="a@b.test")
    assert excinfo.value.field == "slug"
    assert fragment in excinfo.value.message
    assert counts() == before


@pytest.mark.parametrize("email", ["", "not-an-email", "a@"])
def test_provision_refuses_bad_admin_email(db, email):
    before = counts()
    with pytest.raises(TenantError) as excinfo:
        tenant_provision(name="Delta", slug="delta", admin_email=email)
    assert excinfo.value.field == "admin_email"
    assert counts() == before


def test_failure_after_schema_creation_leaves_nothing_behind(db, monkeypatch):
    before = counts()
    user_model = get_user_model()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(user_model.objects, "create_superuser", fail)
    with pytest.raises(RuntimeError):
        tenant_provision(name="Epsilon", slug="epsilon", admin_email="a@epsilon.test")
    assert not schema_exists("epsilon")
    assert counts() == before


def test_delete_needs_the_slug_as_confirmation(db):
    tenant = tenant_provision(name="Zeta", slug="zeta", admin_email="a@zeta.test").tenant
    with pytest.raises(TenantError):
        tenant_delete(tenant=tenant, confirm="yes")
    assert schema_exists("zeta")
    tenant_delete(tenant=tenant, confirm="zeta")
    assert not schema_exists("zeta")
    assert not Tenant.objects.filter(slug="zeta").exists()
    assert not Domain.objects.filter(domain="zeta.localhost").exists()


def test_tenant_create_command_prints_login_once(db, capsys):
    call_command("tenant_create", name="Eta", slug="eta", admin_email="a@eta.test")
    out = capsys.readouterr().out
    assert "http://eta.localhost:8000/admin/" in out
    assert "a@eta.test" in out
    password = out.split("password: ")[1].split()[0]
    with schema_context("eta"):
        assert get_user_model().objects.get(username="a@eta.test").check_password(password)


def test_tenant_create_command_fails_clearly(db, tenant_a):
    with pytest.raises(CommandError, match="already exists"):
        call_command("tenant_create", name="Alpha", slug="alpha", admin_email="a@alpha.test")
    with pytest.raises(CommandError, match="reserved"):
        call_command("tenant_create", name="P", slug="public", admin_email="a@p.test")


def test_tenant_delete_command_requires_confirm(db):
    tenant_provision(name="Theta", slug="theta", admin_email="a@theta.test")
    with pytest.raises(CommandError, match="confirm"):
        call_command("tenant_delete", "theta")
    assert schema_exists("theta")
    call_command("tenant_delete", "theta", confirm="theta")
    assert not schema_exists("theta")


def test_tenants_are_cloned_from_a_migrated_template_when_asked(db, tenant_a, settings):
    from tenants.selectors import tenant_list
    from tenants.services import tenant_template_ensure

    settings.TENANT_CREATION_FAKES_MIGRATIONS = True  # KEYFLOW_TENANT_FROM_TEMPLATE=true
    tenant_template_ensure()

    template = Tenant.objects.get(schema_name=settings.TENANT_BASE_SCHEMA)
    assert template.status == Tenant.Status.SUSPENDED and not template.domains.exists()
    assert settings.TENANT_BASE_SCHEMA not in [t.schema_name for t in tenant_list()]

    def applied(schema):
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations ORDER BY app, name')
            return cursor.fetchall()

    provisioned = tenant_provision(name="Iota", slug="iota", admin_email="a@iota.test")
    assert applied("iota") == applied(settings.TENANT_BASE_SCHEMA) == applied("alpha")
    with schema_context("iota"):
        assert get_user_model().objects.count() == 1  # only its own admin, nothing of the template
        assert get_user_model().objects.get().check_password(provisioned.admin_password)
