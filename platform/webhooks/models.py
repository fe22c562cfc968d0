"""Webhook deliveries: the final body of a run POSTed to its callback_url (tenant schema)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from django.db import models

from workflows.models import WorkflowRun


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="webhook_deliveries")
    url = models.URLField(max_length=2048)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # One entry per attempt: {"attempt", "at", "status_code", "error", "elapsed_ms"}.
    # Errors are short descriptions (never a secret, a header or the response body).
    history = models.JSONField(default=list, blank=True)
    # The final run body to send, exactly as the receiver gets it (re-serialized compactly).
    body = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"webhook {self.id} ({self.status})"

    @property
    def url_host(self) -> str:
        return urlsplit(self.url).hostname or ""
