"""Admission of runs: budgets and rate limits of credentials and end users refuse a run
before it is queued, with Dify's error body and Retry-After; and admitting costs little."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from budgets.enforcement import budget_admit
from budgets.errors import QuotaExceeded
from budgets.services import budget_create, budget_delete
from tests.budgets.conftest import planned


def admit(credential=None, *, app_key=None, user="user-1", now=None, plan=None):
    return budget_admit(app=None, token=app_key, user=user,
                        plan=plan if plan is not None else planned(credential), now=now)


def refused(credential=None, **kwargs) -> QuotaExceeded:
    with pytest.raises(QuotaExceeded) as caught:
        admit(credential, **kwargs)
    return caught.value


# --- cost of admission -----------------------------------------------------------------------


def test_without_budgets_admission_is_one_round_trip_and_no_query(credential, app_key,
                                                                  django_assert_num_queries,
                                                                  redis_round_trips):
    admit(credential, app_key=app_key)  # loads the tenant's index once
    with django_assert_num_queries(0), redis_round_trips() as trips:
        admit(credential, app_key=app_key)
    assert trips.count == 1


def test_with_budgets_admission_is_two_round_trips_and_no_query(credential, app_key, record_step,
                                                                django_assert_num_queries,
                                                                redis_round_trips):
    budget_create(credential=credential, token_budget=1000, requests_per_minute=100, tokens_per_minute=10**6)
    budget_create(app_key=app_key, token_budget=1000, requests_per_minute=100)
    record_step(credential, tokens=10, app_key=app_key)
    admit(credential, app_key=app_key)
    with django_assert_num_queries(0), redis_round_trips() as trips:
        admit(credential, app_key=app_key)
    assert trips.count == 2


def test_a_budget_added_or_removed_applies_to_the_next_request(credential):
    admit(credential)  # the index is loaded (and cached) without any budget
    budget = budget_create(credential=credential, requests_per_minute=1)
    admit(credential)
    assert refused(credential).code == "too_many_requests"
    budget_delete(budget=budget)
    admit(credential)


# --- spend caps ------------------------------------------------------------------------------


def test_token_budget_serves_runs_until_the_cap_then_refuses(credential, record_step):
    now = timezone.now()
    budget_create(credential=credential, token_budget=100, period="day")
    admit(credential, now=now)
    record_step(credential, tokens=60)
    admit(credential, now=now)  # 60 < 100: admitted, and this run may cross the cap
    record_step(credential, tokens=60)
    error = refused(credential, now=now)
    assert (error.status, error.code) == (429, "quota_exceeded")
    assert str(credential.id) in error.message
    assert "120 of its 100 tokens today (UTC)" in error.message
    tomorrow = datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    assert abs(int(error.headers["Retry-After"]) - (tomorrow - now).total_seconds()) <= 1


def test_cost_budget_refuses_once_spent(credential, record_step):
    budget_create(credential=credential, cost_budget=Decimal("0.01"), period="month")
    record_step(credential, tokens=10, price="0.004")
    admit(credential)
    record_step(credential, tokens=10, price="0.0061")
    error = refused(credential)
    assert error.code == "quota_exceeded"
    assert "0.0101 of its 0.01 USD this month (UTC)" in error.message
    assert int(error.headers["Retry-After"]) > 0


def test_a_budget_without_period_counts_since_it_was_set_and_has_no_retry_after(credential, record_step):
    record_step(credential, tokens=500)  # before the budget: not counted
    budget_create(credential=credential, token_budget=100, period="none")
    admit(credential)
    record_step(credential, tokens=100)
    error = refused(credential)
    assert "100 of its 100 tokens since the budget was set" in error.message
    assert "Retry-After" not in error.headers


def test_period_rollover_lets_runs_through_again(credential, make_credential, record_step):
    now = timezone.now()
    budget_create(credential=credential, token_budget=50, period="day")
    record_step(credential, tokens=80, created_at=now)
    refused(credential, now=now)
    admit(credential, now=now + timedelta(days=1))
    month = datetime(2031, 1, 31, 23, 59, tzinfo=UTC)
    other = make_credential(name="monthly")
    budget_create(credential=other, token_budget=50, period="month")
    record_step(other, tokens=80, created_at=month)
    refused(other, now=month)
    admit(other, now=month + timedelta(minutes=2))  # February: a new month


def test_missing_counters_are_rebuilt_from_the_database(credential, record_step, budget_redis):
    budget_create(credential=credential, token_budget=100)
    record_step(credential, tokens=70, count=False)  # counted by nobody: Redis lost it
    record_step(credential, tokens=40, count=False)
    for key in budget_redis.scan_iter(match="kf:*:budget:*:spend:*"):
        budget_redis.delete(key)
    assert "110 of its 100 tokens" in refused(credential).message


def test_inline_keys_have_no_credential_budget(credential):
    budget_create(credential=credential, requests_per_minute=1)
    for _ in range(3):
        admit(None)


# --- rate limits -----------------------------------------------------------------------------


def test_requests_per_minute_refuse_with_retry_after_until_the_window_moves(credential):
    now = timezone.now()
    budget_create(credential=credential, requests_per_minute=3)
    for offset in (0, 10, 20):
        admit(credential, now=now + timedelta(seconds=offset))
    error = refused(credential, now=now + timedelta(seconds=30))
    assert (error.status, error.code) == (429, "too_many_requests")
    assert str(credential.id) in error.message and "3 requests per minute" in error.message
    assert error.headers["Retry-After"] == "30"  # the first request leaves the window then
    admit(credential, now=now + timedelta(seconds=60, milliseconds=1))
    assert refused(credential, now=now + timedelta(seconds=61)).headers["Retry-After"] == "9"


def test_refused_requests_do_not_use_the_rate(credential, record_step):
    budget_create(credential=credential, token_budget=10, requests_per_minute=2)
    record_step(credential, tokens=10)
    for _ in range(5):
        assert refused(credential).code == "quota_exceeded"
    from budgets.counters import redis_client

    assert not list(redis_client().scan_iter(match="kf:*:budget:*:rpm:*"))


def test_tokens_per_minute(credential, record_step):
    now = timezone.now().replace(second=10, microsecond=0)
    budget_create(credential=credential, tokens_per_minute=100)
    record_step(credential, tokens=60, now=now)
    admit(credential, now=now)
    record_step(credential, tokens=60, now=now)
    error = refused(credential, now=now + timedelta(seconds=5))
    assert error.code == "too_many_requests" and "100 tokens per minute" in error.message
    assert error.headers["Retry-After"] == "45"
    admit(credential, now=now + timedelta(seconds=50))


def test_concurrent_admissions_never_exceed_the_rate(credential, alpha):
    budget_create(credential=credential, requests_per_minute=5)
    admit(credential)  # warms the index, uses one request
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def submit():
        connection.set_tenant(alpha)
        start.wait()
        try:
            admit(credential)
            outcomes.append("ok")
        except QuotaExceeded as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] * 4 + ["too_many_requests"] * 16


# --- end users -------------------------------------------------------------------------------


def test_end_user_limits_apply_to_each_end_user_separately(credential, app_key, record_step):
    budget_create(app_key=app_key, token_budget=100, requests_per_minute=5)
    record_step(credential, tokens=120, user="alice", app_key=app_key)
    error = refused(credential, app_key=app_key, user="alice")
    assert error.code == "quota_exceeded"
    assert "end user 'alice'" in error.message and "each end user of this app key" in error.message
    admit(credential, app_key=app_key, user="bob")
    admit(None, app_key=app_key, user="bob")  # a one-off key: the end user's budget still counts
    assert refused(None, app_key=app_key, user="alice").code == "quota_exceeded"


def test_end_user_rate_limit_refuses_the_burst(credential, app_key):
    now = timezone.now()
    budget_create(app_key=app_key, requests_per_minute=2)
    admit(credential, app_key=app_key, user="alice", now=now)
    admit(credential, app_key=app_key, user="alice", now=now)
    error = refused(credential, app_key=app_key, user="alice", now=now)
    assert error.code == "too_many_requests" and "end user 'alice'" in error.message
    assert error.headers["Retry-After"] == "60"
    admit(credential, app_key=app_key, user="bob", now=now)


def test_the_credential_and_the_end_user_are_both_checked(credential, app_key, record_step):
    budget_create(credential=credential, requests_per_minute=10)
    budget_create(app_key=app_key, requests_per_minute=1)
    admit(credential, app_key=app_key, user="alice")
    assert "end user 'alice'" in refused(credential, app_key=app_key, user="alice").message
    # The refused request reserved nothing on the credential: 9 more are allowed.
    for index in range(9):
        admit(credential, app_key=app_key, user=f"user-{index}")
    assert str(credential.id) in refused(credential, app_key=app_key, user="zed").message


# --- Redis unreachable -----------------------------------------------------------------------


def redis_down(monkeypatch):
    """Budgets' Redis client points at a port nothing listens on."""
    import redis

    from budgets import counters
    from tests.e2e.conftest import free_port

    unreachable = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    monkeypatch.setattr(counters, "redis_client", lambda: unreachable)


def test_without_redis_spend_caps_are_checked_in_the_database(credential, app_key, record_step, monkeypatch):
    budget_create(credential=credential, token_budget=100, requests_per_minute=1)
    budget_create(app_key=app_key, cost_budget=Decimal("1"))
    record_step(credential, tokens=60, user="alice", app_key=app_key, price="1")
    redis_down(monkeypatch)
    for _ in range(3):  # rate limits need Redis: not enforced meanwhile
        admit(credential, app_key=app_key, user="bob")
    assert "end user 'alice'" in refused(credential, app_key=app_key, user="alice").message
    record_step(credential, tokens=60, count=False)  # counting is skipped without Redis …
    error = refused(credential, app_key=app_key, user="bob")
    assert error.code == "quota_exceeded" and "120 of its 100 tokens" in error.message  # … not the steps


def test_without_redis_budget_changes_are_refused_and_counting_does_not_fail(credential, app_key, record_step,
                                                                             monkeypatch):
    from django.db import transaction

    from budgets.models import Budget, BudgetEvent
    from budgets.selectors import budget_spend_get
    from budgets.services import budget_update

    budget = budget_create(credential=credential, token_budget=100)
    redis_down(monkeypatch)
    for change in (lambda: budget_update(budget=budget, token_budget=5),
                   lambda: budget_create(app_key=app_key, requests_per_minute=1)):
        with pytest.raises(Exception) as failed, transaction.atomic():
            change()
        assert (failed.value.status, failed.value.code) == (503, "service_unavailable")
    budget.refresh_from_db()
    assert budget.token_budget == 100 and Budget.objects.count() == 1
    assert list(BudgetEvent.objects.values_list("kind", flat=True)) == ["created"]
    record_step(credential, tokens=30)  # does not raise
    assert budget_spend_get(budget=budget).tokens_used == 30
