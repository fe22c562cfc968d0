"""Counting spend from each LLM step: the same numbers as usage reports, rebuilt from the
database when Redis loses them, counted once per step, reset by an admin (audited), and
alerts once per window, signed, to the budget's webhook."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from budgets.accounting import budget_spend
from budgets.models import BudgetEvent
from budgets.selectors import budget_spend_get, budget_spend_list
from budgets.services import budget_create, budget_reset
from tests.webhooks.conftest import Receiver
from webhooks.signing import verify
from workflows.usage import usage_summary


def spend_keys(client):
    return list(client.scan_iter(match="kf:*:budget:*:spend:*"))


def test_spend_is_what_usage_reports_show(credential, app_key, record_step, make_credential):
    budget = budget_create(credential=credential, token_budget=10**6, cost_budget=Decimal("100"))
    other = make_credential(name="Other")
    for tokens, price in ((120, "0.0012345"), (75, "0.0000007"), (33, "0")):
        record_step(credential, tokens=tokens, price=price, app_key=app_key)
    record_step(other, tokens=999, price="1")
    record_step(None, tokens=999, price="1")
    spend = budget_spend_get(budget=budget)
    [row] = usage_summary(group_by="credential", credential_id=credential.id)
    assert (spend.tokens_used, spend.cost_used) == (row["total_tokens"], row["cost"]) == (228, Decimal("0.0012352"))


def test_end_user_spend_is_per_user_of_the_key(credential, app_key, record_step):
    budget = budget_create(app_key=app_key, token_budget=1000)
    record_step(credential, tokens=100, user="alice", app_key=app_key)
    record_step(credential, tokens=50, user="alice", app_key=app_key)
    record_step(None, tokens=30, user="bob", app_key=app_key)
    record_step(credential, tokens=999, user="alice")  # another key: not this budget's
    rows = budget_spend_list(budget=budget)
    assert [(row.user, row.tokens_used, row.percent) for row in rows] == [("alice", 150, 15.0), ("bob", 30, 3.0)]
    assert budget_spend_get(budget=budget, user="alice").tokens_used == 150


def test_counters_lost_in_redis_are_rebuilt_from_the_database(credential, record_step, budget_redis):
    budget = budget_create(credential=credential, token_budget=1000)
    record_step(credential, tokens=100)
    record_step(credential, tokens=50)
    assert spend_keys(budget_redis)
    for key in spend_keys(budget_redis):
        budget_redis.delete(key)
    # The next step finds no counter: it is rebuilt from the stored steps, then counted once.
    record_step(credential, tokens=7)
    assert budget_spend_get(budget=budget).tokens_used == 157
    for key in spend_keys(budget_redis):
        budget_redis.delete(key)
    assert budget_spend_get(budget=budget).tokens_used == 157


def test_a_step_is_counted_once_even_if_reported_twice(credential, record_step, alpha):
    budget = budget_create(credential=credential, token_budget=1000)
    execution = record_step(credential, tokens=40)
    budget_spend(run=execution.run, execution=execution)  # a re-delivered run reports it again
    assert budget_spend_get(budget=budget).tokens_used == 40


def test_spend_counts_in_the_window_of_the_run_creation(credential, record_step):
    budget = budget_create(credential=credential, token_budget=1000, period="day")
    now = timezone.now()
    yesterday = now - timedelta(days=1)
    record_step(credential, tokens=300, created_at=yesterday)
    record_step(credential, tokens=20, created_at=now)
    assert budget_spend_get(budget=budget, now=now).tokens_used == 20
    assert budget_spend_get(budget=budget, now=yesterday).tokens_used == 300
    assert budget_spend_get(budget=budget, now=now + timedelta(days=1)).tokens_used == 0


def test_spend_view_reports_percent_state_and_period(credential, record_step):
    budget = budget_create(credential=credential, token_budget=200, cost_budget=Decimal("1"),
                           soft_threshold_percent=50, period="month")
    now = datetime(2031, 3, 14, 15, 9, tzinfo=UTC)
    record_step(credential, tokens=120, price="0.25", created_at=now)
    spend = budget_spend_get(budget=budget, now=now).as_dict()
    assert (spend["tokens_used"], spend["token_percent"], spend["cost_percent"]) == (120, 60.0, 25.0)
    assert (spend["percent"], spend["state"]) == (60.0, "warning")
    assert spend["period_start"] == datetime(2031, 3, 1, tzinfo=UTC)
    assert spend["period_end"] == datetime(2031, 4, 1, tzinfo=UTC)


def test_manual_reset_is_audited_and_counts_from_then(credential, record_step):
    budget = budget_create(credential=credential, token_budget=100, period="month")
    record_step(credential, tokens=150)
    assert budget_spend_get(budget=budget).state == "exceeded"
    budget_reset(budget=budget, actor="admin:ada")
    event = BudgetEvent.objects.get(budget_id=budget.id, kind="manual_reset")
    assert event.actor == "admin:ada"
    assert (event.details["tokens_used"], event.details["credential_id"]) == (150, str(credential.id))
    budget.refresh_from_db()
    spend = budget_spend_get(budget=budget)
    assert (spend.tokens_used, spend.window.start) == (0, budget.reset_at)
    record_step(credential, tokens=30)
    assert budget_spend_get(budget=budget).tokens_used == 30


def test_a_run_created_before_the_reset_is_not_counted_after_it(credential, record_step):
    budget = budget_create(credential=credential, token_budget=100)
    before = timezone.now()
    budget_reset(budget=budget, now=before + timedelta(seconds=1))
    record_step(credential, tokens=80, created_at=before)
    budget.refresh_from_db()
    assert budget_spend_get(budget=budget).tokens_used == 0


# --- alerts ----------------------------------------------------------------------------------


def alerts():
    return list(BudgetEvent.objects.filter(kind__in=BudgetEvent.ALERTS).order_by("id")
                .values_list("kind", "subject", "period_key"))


def test_threshold_and_cap_alert_once_per_window(credential, record_step):
    budget = budget_create(credential=credential, token_budget=100, soft_threshold_percent=50, period="day")
    now = timezone.now()
    tomorrow = now + timedelta(days=1)
    steps = [(30, now, []), (30, now, ["threshold_crossed"]), (30, now, []), (30, now, ["cap_reached"]),
             (10, now, []), (100, tomorrow, ["threshold_crossed", "cap_reached"]), (5, tomorrow, [])]
    for tokens, created_at, expected in steps:
        seen = len(alerts())
        record_step(credential, tokens=tokens, created_at=created_at, now=created_at)
        assert [kind for kind, _, _ in alerts()[seen:]] == expected
    day = f"d{now.astimezone(UTC):%Y%m%d}"
    next_day = f"d{tomorrow.astimezone(UTC):%Y%m%d}"
    assert alerts() == [("threshold_crossed", "", day), ("cap_reached", "", day),
                        ("threshold_crossed", "", next_day), ("cap_reached", "", next_day)]
    event = BudgetEvent.objects.filter(kind="cap_reached").order_by("id").first()
    assert event.details["tokens_used"] == 120 and event.details["token_budget"] == 100
    assert event.budget_id == budget.id and event.delivery_status == ""


def test_alerts_of_end_users_are_per_user(credential, app_key, record_step):
    budget_create(app_key=app_key, cost_budget=Decimal("1"))
    record_step(credential, tokens=1, price="1.5", user="alice", app_key=app_key)
    record_step(credential, tokens=1, price="1.5", user="alice", app_key=app_key)
    record_step(credential, tokens=1, price="2", user="bob", app_key=app_key)
    assert [(kind, subject) for kind, subject, _ in alerts()] == [("cap_reached", "alice"), ("cap_reached", "bob")]


def test_a_reset_rearms_the_alerts(credential, record_step):
    budget = budget_create(credential=credential, token_budget=10)
    record_step(credential, tokens=20)
    budget_reset(budget=budget)
    record_step(credential, tokens=20)
    assert [kind for kind, _, _ in alerts()] == ["cap_reached", "cap_reached"]


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def eager(settings):
    from config.celery_app import app

    previous = app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def test_alerts_are_sent_signed_to_the_webhook_once(credential, record_step, receiver, eager, settings,
                                                    django_capture_on_commit_callbacks):
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = True
    budget = budget_create(credential=credential, token_budget=100, soft_threshold_percent=80,
                           alert_webhook_url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        record_step(credential, tokens=85)
        record_step(credential, tokens=5)
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.headers["X-Keyflow-Event"] == "budget.threshold_crossed"
    assert verify(budget.webhook_secret, request.headers["X-Keyflow-Signature"], request.body)
    body = json.loads(request.body)
    assert (body["event"], body["budget_id"], body["credential_id"]) == (
        "budget.threshold_crossed", str(budget.id), str(credential.id))
    assert (body["tokens_used"], body["token_budget"], body["soft_threshold_percent"]) == (85, 100, 80)
    event = BudgetEvent.objects.get(kind="threshold_crossed")
    assert (event.delivery_status, event.delivery_attempts, event.delivery_status_code) == ("delivered", 1, 200)


def test_a_failed_alert_webhook_is_retried(credential, record_step, receiver, eager, settings,
                                           django_capture_on_commit_callbacks):
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = True
    receiver.fail_first = 2
    budget_create(credential=credential, token_budget=10, alert_webhook_url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        record_step(credential, tokens=10)
    assert len(receiver.requests) == 3
    event = BudgetEvent.objects.get(kind="cap_reached")
    assert (event.delivery_status, event.delivery_attempts) == ("delivered", 3)
