"""Public-schema models: tenants, their domains and the index of API tokens."""

from __future__ import annotations

import uuid

from django.db import models
from django_tenants.models import DomainMixin, TenantMixin

from credentials.fields import StrictEncryptedTextField


class Tenant(TenantMixin):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=63, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    suspended_at = models.DateTimeField(null=True, blank=True)

    # Schemas are created by the provisioning service and dropped only by tenant_delete,
    # which asks for an explicit confirmation first.
    auto_create_schema = True
    auto_drop_schema = False

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Domain(DomainMixin):
    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class ApiToken(models.Model):
    """Index of API tokens: the SHA-256 of a token leads to its tenant (and app).

    Only the hash is stored. The token itself is shown once, when it is created.
    """

    class Scope(models.TextChoices):
        APP = "app", "App (Service API)"
        MANAGEMENT = "management", "Tenant management API"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_tokens")
    scope = models.CharField(max_length=16, choices=Scope.choices)
    # The app (in the tenant's schema) an app token belongs to; empty for management tokens.
    app_id = models.UUIDField(null=True, blank=True)
    name = models.CharField(max_length=200, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    # The token's first characters (prefix and a few more), enough to recognise it in a list.
    hint = models.CharField(max_length=16)
    # Policy and limits that travel with the token (e.g. which overrides it may use).
    policy = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "scope"])]

    def __str__(self) -> str:
        return f"{self.hint}… ({self.get_scope_display()})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class EncryptionKeyCheck(models.Model):
    """A known value sealed with the current encryption key.

    Every process opens it at start-up: if no configured key can, the keys are wrong and
    the process refuses to start rather than pass ciphertext off as a provider key.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    sealed = StrictEncryptedTextField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"encryption key check ({self.updated_at:%Y-%m-%d})"
