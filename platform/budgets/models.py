"""Budgets and rate limits of credentials and of app keys' end users (tenant schema)."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from credentials.fields import StrictEncryptedTextField
from credentials.models import Credential
from workflows.models import new_webhook_secret

COST_DIGITS = 18
COST_DECIMALS = 7


class Budget(models.Model):
    """Limits on one credential, or on each end user (`user`) of one app key.

    Every limit is optional, but a budget holds at least one; a limit that is set is
    positive. Spend is counted per period (UTC day, UTC month, or since the budget was set)
    from the LLM steps of runs created in that period, the numbers usage reports show.
    """

    class Scope(models.TextChoices):
        CREDENTIAL = "credential", "Credential"
        END_USER = "end_user", "Each end user of an app key"

    class Period(models.TextChoices):
        DAY = "day", "Day (UTC)"
        MONTH = "month", "Month (UTC)"
        NONE = "none", "No period (since the budget was set)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    credential = models.ForeignKey(
        Credential, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    # An app key (tenants.ApiToken) lives in the public schema, so it is named by id; its
    # limits apply to each end user of the key separately.
    app_key_id = models.UUIDField(null=True, blank=True)
    token_budget = models.PositiveBigIntegerField(null=True, blank=True)
    cost_budget = models.DecimalField(
        max_digits=COST_DIGITS, decimal_places=COST_DECIMALS, null=True, blank=True
    )
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    soft_threshold_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    # Where alerts (threshold crossed, cap reached) are POSTed, signed with webhook_secret.
    alert_webhook_url = models.URLField(max_length=2048, blank=True, default="")
    webhook_secret = StrictEncryptedTextField(default=new_webhook_secret)
    # A manual reset: spend counts from here when it is later than the period's start.
    reset_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=255, blank=True, default="")
    updated_by = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["credential"], condition=Q(credential__isnull=False),
                name="budget_one_per_credential",
            ),
            models.UniqueConstraint(
                fields=["app_key_id"], condition=Q(app_key_id__isnull=False),
                name="budget_one_per_app_key",
            ),
            models.CheckConstraint(
                condition=(
                    Q(scope="credential", credential__isnull=False, app_key_id__isnull=True)
                    | Q(scope="end_user", credential__isnull=True, app_key_id__isnull=False)
                ),
                name="budget_has_one_subject",
            ),
            models.CheckConstraint(
                condition=(
                    Q(token_budget__isnull=False) | Q(cost_budget__isnull=False)
                    | Q(requests_per_minute__isnull=False) | Q(tokens_per_minute__isnull=False)
                ),
                name="budget_has_a_limit",
            ),
            models.CheckConstraint(
                condition=(
                    (Q(token_budget__isnull=True) | Q(token_budget__gt=0))
                    & (Q(cost_budget__isnull=True) | Q(cost_budget__gt=0))
                    & (Q(requests_per_minute__isnull=True) | Q(requests_per_minute__gt=0))
                    & (Q(tokens_per_minute__isnull=True) | Q(tokens_per_minute__gt=0))
                ),
                name="budget_limits_positive",
            ),
            models.CheckConstraint(
                condition=Q(soft_threshold_percent__isnull=True)
                | Q(soft_threshold_percent__gte=1, soft_threshold_percent__lte=100),
                name="budget_threshold_is_a_percent",
            ),
            models.CheckConstraint(
                condition=Q(period__in=["day", "month", "none"]), name="budget_period_known"
            ),
        ]

    def __str__(self) -> str:
        if self.scope == self.Scope.CREDENTIAL:
            return f"budget of credential {self.credential_id}"
        return f"budget of each end user of app key {self.app_key_id}"

    @property
    def has_spend_cap(self) -> bool:
        return self.token_budget is not None or self.cost_budget is not None


class BudgetEvent(models.Model):
    """Audit trail and alerts of a budget. Alerts are recorded once per counting window."""

    class Kind(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        DELETED = "deleted"
        MANUAL_RESET = "manual_reset"
        THRESHOLD_CROSSED = "threshold_crossed"
        CAP_REACHED = "cap_reached"

    ALERTS = (Kind.THRESHOLD_CROSSED, Kind.CAP_REACHED)

    class Delivery(models.TextChoices):
        NONE = "", "No webhook"
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    # Not a foreign key: the trail outlives a deleted budget.
    budget_id = models.UUIDField(db_index=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # The end user an end-user budget's alert is about; empty otherwise.
    subject = models.CharField(max_length=255, blank=True, default="")
    # The counting window (period, and the reset that started it) an alert belongs to.
    period_key = models.CharField(max_length=64, blank=True, default="")
    actor = models.CharField(max_length=255, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    delivery_status = models.CharField(
        max_length=16, choices=Delivery.choices, blank=True, default=Delivery.NONE
    )
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    delivery_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget_id", "kind", "subject", "period_key"],
                condition=Q(kind__in=["threshold_crossed", "cap_reached"]),
                name="budget_alert_once_per_window",
            )
        ]

    def __str__(self) -> str:
        who = f" by {self.actor}" if self.actor else ""
        return f"{self.at:%Y-%m-%d %H:%M} {self.kind} of budget {self.budget_id}{who}"
