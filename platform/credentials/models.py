"""Provider credentials of a tenant (tenant schema)."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from credentials.fields import StrictEncryptedTextField


class Credential(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DISABLED = "disabled", "Disabled"

    class Validation(models.TextChoices):
        UNKNOWN = "unknown", "Not validated"
        VALID = "valid", "Valid"
        INVALID = "invalid", "Invalid"
        ERROR = "error", "Could not validate"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    # JSON object of the provider's secret fields, encrypted at rest (Fernet). Write-only:
    # never rendered, serialized or logged.
    secrets = StrictEncryptedTextField()
    config = models.JSONField(default=dict, blank=True)
    is_default = models.BooleanField(default=False)
    # An end user's own key (BYOK): only requests whose `user` equals owner may use it.
    owner = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Keyed hash of the key, stable and safe to show; the hint is the key's last 4 chars.
    fingerprint = models.CharField(max_length=64)
    hint = models.CharField(max_length=8)
    # Bumped whenever secrets or config change: keys the SDK client cache.
    version = models.PositiveIntegerField(default=1)
    validation_status = models.CharField(
        max_length=16, choices=Validation.choices, default=Validation.UNKNOWN
    )
    validation_message = models.CharField(max_length=1000, blank=True, default="")
    validated_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=255, blank=True, default="")
    updated_by = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider"],
                condition=Q(is_default=True, status="active"),
                name="credential_one_active_default_per_provider",
            ),
            models.CheckConstraint(
                condition=Q(is_default=False) | Q(owner=""),
                name="credential_default_has_no_owner",
            ),
        ]
        indexes = [models.Index(fields=["provider", "status"]), models.Index(fields=["owner"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider} …{self.hint})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def masked(self) -> str:
        return f"…{self.hint}"


class CredentialEvent(models.Model):
    """Audit trail: who did what to which credential, when. Never a secret value."""

    class Action(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        SECRET_ROTATED = "secret_rotated"  # noqa: S105 - an action name
        SET_DEFAULT = "set_default"
        DISABLED = "disabled"
        ENABLED = "enabled"
        VALIDATED = "validated"
        DELETED = "deleted"
        REENCRYPTED = "reencrypted"

    id = models.BigAutoField(primary_key=True)
    # Not a foreign key: the trail outlives a deleted credential.
    credential_id = models.UUIDField(db_index=True)
    credential_name = models.CharField(max_length=200)
    action = models.CharField(max_length=32, choices=Action.choices)
    actor = models.CharField(max_length=255, blank=True, default="")
    # Names of changed fields and non-secret values (status, default, validation result).
    details = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.credential_name} by {self.actor}"
