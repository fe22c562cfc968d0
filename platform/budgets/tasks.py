"""Celery tasks: ids only, run in the tenant's schema (tenant-schemas-celery), one service each."""

from celery import shared_task

from budgets.alerts import budget_alert_deliver
from budgets.models import BudgetEvent
from webhooks.services import webhook_retry_delay


@shared_task(bind=True, name="budgets.budget_alert_deliver_task", acks_late=True, max_retries=None)
def budget_alert_deliver_task(self, event_id: int) -> None:
    """One attempt at an alert's webhook; retried with the run webhooks' backoff while the
    service keeps it pending."""
    event = budget_alert_deliver(event_id=event_id)
    if event is not None and event.delivery_status == BudgetEvent.Delivery.PENDING:
        raise self.retry(countdown=webhook_retry_delay(event.delivery_attempts))
