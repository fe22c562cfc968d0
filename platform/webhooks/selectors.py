"""Webhook reads (current tenant's schema)."""

from __future__ import annotations

from webhooks.models import WebhookDelivery
from workflows.models import WorkflowRun


def webhook_deliveries_for_run(run: WorkflowRun) -> list[dict]:
    """The run's deliveries, oldest first, as shown in run detail responses."""
    return [
        {
            "id": str(delivery.id),
            "url": delivery.url,
            "status": delivery.status,
            "attempts": delivery.attempts,
            "last_status_code": delivery.last_status_code,
            "history": delivery.history,
        }
        for delivery in WebhookDelivery.objects.filter(run=run).order_by("created_at", "id")
    ]
