"""Writes on tenants: provisioning, suspension, deletion and API tokens."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context, schema_exists

from tenants.models import ApiToken, Domain, Tenant

logger = logging.getLogger(__name__)

# A slug is a DNS label (it becomes <slug>.<base domain>) whose schema name, with hyphens
# turned into underscores, is a valid PostgreSQL identifier well under its 63-byte limit.
SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
TOKEN_PREFIXES = {ApiToken.Scope.APP: "app-", ApiToken.Scope.MANAGEMENT: "kf-"}


class TenantError(Exception):
    """A tenant operation was refused; `field` names the input at fault, when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ProvisionedTenant:
    tenant: Tenant
    domain: Domain
    admin_email: str
    # Shown once to whoever provisioned the tenant; only its hash is stored.
    admin_password: str

    @property
    def admin_url(self) -> str:
        return tenant_admin_url(self.domain.domain)


def tenant_admin_url(domain: str) -> str:
    """Where a tenant's admin signs in, as users reach it (scheme and port from settings)."""
    scheme = settings.KEYFLOW_PUBLIC_SCHEME
    port = settings.KEYFLOW_PUBLIC_PORT
    default_port = {"http": 80, "https": 443}[scheme]
    suffix = f":{port}" if port and port != default_port else ""
    return f"{scheme}://{domain}{suffix}/admin/"


def schema_name_for_slug(slug: str) -> str:
    return slug.replace("-", "_")


def tenant_slug_validate(slug: str) -> str:
    """Return the normalised slug or raise TenantError saying what is wrong with it."""
    slug = (slug or "").strip().lower()
    if not slug:
        raise TenantError("A slug is required.", field="slug")
    if not SLUG_PATTERN.match(slug):
        raise TenantError(
            f"Slug {slug!r} is invalid: use 2-40 lowercase letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen.",
            field="slug",
        )
    schema_name = schema_name_for_slug(slug)
    if (
        slug in settings.KEYFLOW_RESERVED_SLUGS
        or schema_name.startswith("pg_")
        or schema_name in ("information_schema", settings.PUBLIC_SCHEMA_NAME)
    ):
        raise TenantError(f"Slug {slug!r} is reserved; choose another.", field="slug")
    return slug


@dataclass(frozen=True)
class TenantRequest:
    name: str
    slug: str
    admin_email: str

    @property
    def schema_name(self) -> str:
        return schema_name_for_slug(self.slug)

    @property
    def domain_name(self) -> str:
        return f"{self.slug}.{settings.KEYFLOW_BASE_DOMAIN}"


def tenant_provision_check(*, name: str, slug: str, admin_email: str) -> TenantRequest:
    """Validate a provisioning request without writing anything; raise TenantError if bad."""
    name = (name or "").strip()
    if not name:
        raise TenantError("A name is required.", field="name")
    if len(name) > 200:
        raise TenantError("The name is longer than 200 characters.", field="name")
    slug = tenant_slug_validate(slug)
    admin_email = (admin_email or "").strip().lower()
    if not admin_email:
        raise TenantError("An admin email is required.", field="admin_email")
    try:
        validate_email(admin_email)
    except ValidationError:
        raise TenantError(
            f"{admin_email!r} is not a valid email address.", field="admin_email"
        ) from None
    request = TenantRequest(name=name, slug=slug, admin_email=admin_email)
    if Tenant.objects.filter(slug=slug).exists() or Tenant.objects.filter(
        schema_name=request.schema_name
    ).exists():
        raise TenantError(f"A tenant with slug {slug!r} already exists.", field="slug")
    if Domain.objects.filter(domain=request.domain_name).exists():
        raise TenantError(f"The domain {request.domain_name} is already taken.", field="slug")
    if schema_exists(request.schema_name):
        raise TenantError(
            f"A database schema named {request.schema_name!r} already exists.", field="slug"
        )
    return request


def tenant_template_ensure() -> bool:
    """Create the template schema new tenants are cloned from, if it is missing.

    It is a Tenant row (suspended, without domains or users) so that migrate_schemas keeps
    it migrated with every other tenant. Returns True when it was created now.
    """
    base = getattr(settings, "TENANT_BASE_SCHEMA", None)
    if not settings.TENANT_CREATION_FAKES_MIGRATIONS or not base:
        return False
    if Tenant.objects.filter(schema_name=base).exists():
        return False
    try:
        with transaction.atomic():
            Tenant(name="Tenant template", slug=base.replace("_", "-"), schema_name=base,
                   status=Tenant.Status.SUSPENDED).save(verbosity=0)
    except IntegrityError:
        return False  # created meanwhile by another process
    logger.info("Created the tenant template schema %s", base)
    return True


def tenant_provision(*, name: str, slug: str, admin_email: str) -> ProvisionedTenant:
    """Create a tenant: its schema (cloned from the template, or migrated), its domain and
    its first admin user.

    Either all of it exists afterwards or none of it does.
    """
    request = tenant_provision_check(name=name, slug=slug, admin_email=admin_email)
    tenant_template_ensure()
    slug, admin_email = request.slug, request.admin_email
    schema_name, domain_name = request.schema_name, request.domain_name

    password = secrets.token_urlsafe(16)
    tenant = Tenant(name=request.name, slug=slug, schema_name=schema_name)
    try:
        tenant.save(verbosity=0)  # creates and migrates the schema
        with transaction.atomic():
            domain = Domain.objects.create(domain=domain_name, tenant=tenant, is_primary=True)
        with schema_context(schema_name):
            get_user_model().objects.create_superuser(
                username=admin_email, email=admin_email, password=password
            )
    except Exception:
        logger.exception("Provisioning tenant %s failed; removing what was created", slug)
        _tenant_remove_everything(tenant_id=tenant.pk, schema_name=schema_name)
        raise
    logger.info("Provisioned tenant %s (schema %s, domain %s)", slug, schema_name, domain_name)
    return ProvisionedTenant(
        tenant=tenant, domain=domain, admin_email=admin_email, admin_password=password
    )


def _tenant_remove_everything(*, tenant_id, schema_name: str) -> None:
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        # Inside an outer transaction, deferred foreign-key checks on the schema's tables
        # would block the DROP; check them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
    Domain.objects.filter(tenant_id=tenant_id).delete()
    ApiToken.objects.filter(tenant_id=tenant_id).delete()
    Tenant.objects.filter(pk=tenant_id).delete()


@transaction.atomic
def tenant_suspend(*, tenant: Tenant) -> Tenant:
    """Suspend a tenant: its hosts and tokens stop answering; nothing is deleted."""
    tenant.status = Tenant.Status.SUSPENDED
    tenant.suspended_at = timezone.now()
    tenant.save(update_fields=["status", "suspended_at"])
    logger.info("Suspended tenant %s", tenant.slug)
    return tenant


@transaction.atomic
def tenant_resume(*, tenant: Tenant) -> Tenant:
    tenant.status = Tenant.Status.ACTIVE
    tenant.suspended_at = None
    tenant.save(update_fields=["status", "suspended_at"])
    logger.info("Resumed tenant %s", tenant.slug)
    return tenant


def tenant_delete(*, tenant: Tenant, confirm: str) -> None:
    """Delete a tenant and drop its schema, only when `confirm` repeats its slug."""
    if confirm != tenant.slug:
        raise TenantError(
            f"Deleting tenant {tenant.slug!r} drops all of its data; confirm with its slug.",
            field="confirm",
        )
    _tenant_remove_everything(tenant_id=tenant.pk, schema_name=tenant.schema_name)
    logger.info("Deleted tenant %s and dropped schema %s", tenant.slug, tenant.schema_name)


def api_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    record: ApiToken
    # The only time the token exists in clear.
    token: str


@transaction.atomic
def api_token_issue(
    *, tenant: Tenant, scope: str, name: str = "", app_id=None, policy: dict | None = None
) -> IssuedToken:
    """Create an API token; the clear token is returned once and never stored."""
    if scope not in TOKEN_PREFIXES:
        raise TenantError(f"Unknown token scope {scope!r}.", field="scope")
    if scope == ApiToken.Scope.APP and app_id is None:
        raise TenantError("An app token needs an app.", field="app_id")
    token = TOKEN_PREFIXES[scope] + secrets.token_urlsafe(32)
    record = ApiToken.objects.create(
        tenant=tenant,
        scope=scope,
        app_id=app_id,
        name=name,
        token_hash=api_token_hash(token),
        hint=token[:10],
        policy=policy or {},
    )
    return IssuedToken(record=record, token=token)


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token
