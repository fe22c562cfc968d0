"""Celery tasks: take ids only (the app's webhook secret is read in the worker), run in the
tenant's schema (tenant-schemas-celery), call one service each."""

from celery import shared_task
from django.utils import timezone

from webhooks.models import WebhookDelivery
from webhooks.services import webhook_deliver, webhook_deliveries_resume


@shared_task(bind=True, name="webhooks.webhook_deliver_task", acks_late=True, max_retries=None, ignore_result=True)
def webhook_deliver_task(self, delivery_id: str) -> None:
    """One attempt; while the delivery stays pending, retry after its backoff (the service
    decides when it gives up, so the task retries without limit of its own)."""
    delivery = webhook_deliver(delivery_id=delivery_id)
    if delivery is not None and delivery.status == WebhookDelivery.Status.PENDING:
        countdown = (delivery.next_attempt_at - timezone.now()).total_seconds()
        raise self.retry(countdown=max(0.0, countdown))


@shared_task(name="webhooks.webhook_deliveries_resume_task")
def webhook_deliveries_resume_task() -> dict:
    """Across all tenants: queue again pending deliveries whose task message was lost."""
    return webhook_deliveries_resume()
