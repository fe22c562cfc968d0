"""Budget alerts: a soft threshold crossed or a cap reached is recorded once per counting
window and, when the budget has an alert webhook, POSTed there signed like run webhooks
(`X-Keyflow-Signature`, HMAC-SHA256 with the budget's webhook secret)."""

from __future__ import annotations

import json
import logging
import time

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction

from budgets.models import Budget, BudgetEvent
from webhooks.services import InvalidCallbackUrl, callback_target
from webhooks.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    USER_AGENT,
    body_encode,
    signature_header,
)
from workflows.pricing import CURRENCY

logger = logging.getLogger(__name__)

EVENT_PREFIX = "budget."
MAX_ADDRESSES_TRIED = 3


def _details(crossing) -> dict:
    rule, window = crossing.rule, crossing.window
    return {
        "measure": crossing.measure,
        "tokens_used": crossing.tokens_used,
        "token_budget": rule.token_budget,
        "cost_used": str(crossing.cost_used),
        "cost_budget": str(rule.cost_budget) if rule.cost_budget is not None else None,
        "currency": CURRENCY,
        "soft_threshold_percent": rule.soft_threshold_percent,
        "period": rule.period,
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat() if window.end else None,
        "credential_id": rule.credential_id,
        "app_key_id": rule.app_key_id,
    }


def budget_alert_raise(*, crossing) -> BudgetEvent | None:
    """Record the alert unless this window already has one of its kind (for this end user);
    queue its webhook on commit. None when it was raised before."""
    rule = crossing.rule
    try:
        with transaction.atomic():
            event = BudgetEvent.objects.create(
                budget_id=rule.id, kind=crossing.kind, subject=crossing.subject,
                period_key=crossing.window.key, details=_details(crossing),
                delivery_status=BudgetEvent.Delivery.PENDING if rule.alerts_webhook else BudgetEvent.Delivery.NONE,
            )
    except IntegrityError:
        return None  # raised once already in this window
    logger.warning("Budget %s: %s (%s) for %s", rule.id, crossing.kind, crossing.measure,
                   crossing.subject or rule.credential_id)
    if rule.alerts_webhook:
        transaction.on_commit(lambda: budget_alert_enqueue(event=event))
    return event


def budget_alert_enqueue(*, event: BudgetEvent) -> bool:
    from budgets.tasks import budget_alert_deliver_task

    try:
        budget_alert_deliver_task.apply_async(
            args=[event.pk], retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
        return True
    except Exception:  # broker unreachable: the alert stays recorded, its delivery pending
        logger.exception("Could not queue the webhook of budget alert %s", event.pk)
        return False


def alert_body(event: BudgetEvent) -> dict:
    return {
        "event": EVENT_PREFIX + event.kind,
        "id": event.pk,
        "budget_id": str(event.budget_id),
        "user": event.subject or None,
        "window": event.period_key,
        "at": event.at,
        **event.details,
    }


def _post(url: str, *, secret: str, event: BudgetEvent) -> tuple[int | None, str | None]:
    """One POST to an address checked now (as run webhooks do); (status code, error)."""
    try:
        target = callback_target(url)
    except InvalidCallbackUrl as exc:
        return None, f"refused: {exc.message}"
    content = body_encode(json.loads(json.dumps(alert_body(event), cls=DjangoJSONEncoder)))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": target.host_header,
        EVENT_HEADER: EVENT_PREFIX + event.kind,
        DELIVERY_HEADER: f"budget-event-{event.pk}",
        SIGNATURE_HEADER: signature_header(secret, int(time.time()), content),
    }
    extensions = {"sni_hostname": target.sni_hostname} if target.url.scheme == "https" else {}
    error = "no address to connect to"
    with httpx.Client(timeout=settings.KEYFLOW_WEBHOOK_TIMEOUT, follow_redirects=False,
                      trust_env=False) as client:
        for address in target.addresses[:MAX_ADDRESSES_TRIED]:
            try:
                with client.stream("POST", target.url_for(address), content=content, headers=headers,
                                   extensions=extensions) as response:
                    return response.status_code, None
            except httpx.ConnectError as exc:
                error = f"connection failed: {exc}"[:160]
            except (httpx.HTTPError, OSError) as exc:
                return None, f"{type(exc).__name__}: {exc}"[:160]
    return None, error


def budget_alert_deliver(*, event_id) -> BudgetEvent | None:
    """One attempt at an alert's webhook; the event records the outcome. Pending after a
    failure until KEYFLOW_WEBHOOK_MAX_ATTEMPTS, then failed."""
    event = BudgetEvent.objects.filter(pk=event_id).first()
    if event is None or event.delivery_status != BudgetEvent.Delivery.PENDING:
        return event
    budget = Budget.objects.filter(pk=event.budget_id).first()
    if budget is None or not budget.alert_webhook_url:
        BudgetEvent.objects.filter(pk=event.pk).update(delivery_status=BudgetEvent.Delivery.NONE)
        event.refresh_from_db()
        return event
    status_code, error = _post(budget.alert_webhook_url, secret=budget.webhook_secret, event=event)
    delivered = status_code is not None and 200 <= status_code < 300
    attempts = event.delivery_attempts + 1
    if delivered:
        outcome = BudgetEvent.Delivery.DELIVERED
    elif attempts >= max(1, settings.KEYFLOW_WEBHOOK_MAX_ATTEMPTS):
        outcome = BudgetEvent.Delivery.FAILED
    else:
        outcome = BudgetEvent.Delivery.PENDING
    BudgetEvent.objects.filter(pk=event.pk).update(
        delivery_status=outcome, delivery_attempts=attempts, delivery_status_code=status_code,
    )
    logger.info("Budget alert %s webhook attempt %s: %s %s", event.pk, attempts,
                status_code if status_code is not None else "none", error or outcome)
    event.refresh_from_db()
    return event
