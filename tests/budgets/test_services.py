"""Budget writes: every rule on limits, subjects and periods; refusals write nothing;
every change is audited and reaches enforcement at once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from budgets.errors import BudgetExists
from budgets.models import Budget, BudgetEvent
from budgets.selectors import budget_rules
from budgets.services import budget_create, budget_delete, budget_update
from credentials.services import credential_disable
from tenants.services import api_token_revoke


def nothing_written():
    return Budget.objects.count() == 0 and BudgetEvent.objects.count() == 0


def test_credential_budget_is_stored_audited_and_enforced_at_once(credential):
    assert not budget_rules(credential_ids=[credential.id])
    budget = budget_create(credential=credential, token_budget=1000, cost_budget=Decimal("2.5"),
                           period="day", soft_threshold_percent=80, requests_per_minute=10,
                           tokens_per_minute=5000, actor="admin:ada")
    assert (budget.scope, budget.credential_id, budget.app_key_id) == ("credential", credential.id, None)
    event = BudgetEvent.objects.get(budget_id=budget.id)
    assert (event.kind, event.actor) == ("created", "admin:ada")
    assert event.details["token_budget"] == 1000 and Decimal(event.details["cost_budget"]) == Decimal("2.5")
    rule = budget_rules(credential_ids=[credential.id]).by_credential[str(credential.id)]
    assert (rule.token_budget, rule.cost_budget, rule.period) == (1000, Decimal("2.5"), "day")
    assert (rule.requests_per_minute, rule.tokens_per_minute, rule.soft_threshold_percent) == (10, 5000, 80)


def test_end_user_budget_is_attached_to_the_app_key(app_key):
    budget = budget_create(app_key=app_key, requests_per_minute=2)
    assert (budget.scope, budget.app_key_id, budget.credential_id) == ("end_user", app_key.id, None)
    assert str(app_key.id) in budget_rules(app_key_id=app_key.id).by_app_key


@pytest.mark.parametrize(("limits", "fragment"), [
    ({"token_budget": 0}, "token_budget: must be greater than 0"),
    ({"token_budget": -5}, "token_budget: must be greater than 0"),
    ({"cost_budget": Decimal("0")}, "cost_budget: must be greater than 0"),
    ({"cost_budget": Decimal("-1.5")}, "cost_budget: must be greater than 0"),
    ({"cost_budget": Decimal("0.000000001")}, "cost_budget: may have at most 7 decimal places"),
    ({"cost_budget": "NaN"}, "cost_budget: must be a number"),
    ({"requests_per_minute": 0}, "requests_per_minute: must be greater than 0"),
    ({"tokens_per_minute": -1}, "tokens_per_minute: must be greater than 0"),
    ({"token_budget": True}, "token_budget: must be a whole number"),
    ({"token_budget": 10, "period": "week"}, "period: must be one of day, month, none"),
    ({"token_budget": 10, "soft_threshold_percent": 0}, "soft_threshold_percent: must be between 1 and 100"),
    ({"token_budget": 10, "soft_threshold_percent": 101}, "soft_threshold_percent: must be between 1 and 100"),
    ({"requests_per_minute": 5, "soft_threshold_percent": 50}, "needs a token_budget or a cost_budget"),
    ({}, "set at least one of"),
    ({"period": "day"}, "set at least one of"),
])
def test_bad_limits_are_refused_and_nothing_is_written(credential, limits, fragment):
    with pytest.raises(Exception) as refused:
        budget_create(credential=credential, **limits)
    assert (refused.value.status, refused.value.code) == (400, "invalid_param")
    assert fragment in refused.value.message
    assert nothing_written()


def test_budget_on_a_disabled_credential_is_refused(credential):
    credential_disable(credential=credential)
    with pytest.raises(Exception) as refused:
        budget_create(credential=credential, token_budget=10)
    assert (refused.value.status, refused.value.code) == (400, "credential_disabled")
    assert str(credential.id) in refused.value.message
    assert nothing_written()


def test_budget_on_a_revoked_app_key_is_refused(app_key):
    api_token_revoke(token=app_key)
    with pytest.raises(Exception) as refused:
        budget_create(app_key=app_key, requests_per_minute=1)
    assert (refused.value.status, refused.value.code) == (400, "key_revoked")
    assert nothing_written()


def test_a_budget_needs_exactly_one_subject(credential, app_key):
    for subjects in ({}, {"credential": credential, "app_key": app_key}):
        with pytest.raises(Exception) as refused:
            budget_create(token_budget=10, **subjects)
        assert refused.value.status == 400
    assert nothing_written()


def test_an_invalid_alert_webhook_is_refused(credential, settings):
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(Exception) as refused:
        budget_create(credential=credential, token_budget=10, alert_webhook_url="http://127.0.0.1/hook")
    assert (refused.value.status, refused.value.code) == (400, "invalid_callback_url")
    with pytest.raises(Exception) as refused:
        budget_create(credential=credential, requests_per_minute=1, alert_webhook_url="https://example.com/")
    assert "alert_webhook_url: needs a token_budget" in refused.value.message
    assert nothing_written()


def test_one_budget_per_credential_and_per_app_key(credential, app_key):
    budget_create(credential=credential, token_budget=10)
    budget_create(app_key=app_key, token_budget=10)
    with pytest.raises(BudgetExists) as refused:
        budget_create(credential=credential, token_budget=99)
    assert refused.value.status == 409
    with pytest.raises(BudgetExists):
        budget_create(app_key=app_key, requests_per_minute=1)
    assert Budget.objects.count() == 2


def test_update_changes_limits_audits_them_and_enforcement_sees_them(credential):
    budget = budget_create(credential=credential, token_budget=10, requests_per_minute=3)
    assert budget_rules(credential_ids=[credential.id]).by_credential[str(credential.id)].token_budget == 10
    budget_update(budget=budget, token_budget=None, cost_budget=Decimal("1.25"), actor="token:kf-abc")
    budget.refresh_from_db()
    assert (budget.token_budget, budget.cost_budget, budget.requests_per_minute) == (None, Decimal("1.25"), 3)
    event = BudgetEvent.objects.filter(budget_id=budget.id, kind="updated").get()
    assert event.actor == "token:kf-abc"
    assert event.details["changed"] == {"token_budget": [10, None], "cost_budget": [None, "1.25"]}
    rule = budget_rules(credential_ids=[credential.id]).by_credential[str(credential.id)]
    assert (rule.token_budget, rule.cost_budget) == (None, Decimal("1.25"))


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"requests_per_minute": None, "token_budget": None}, "set at least one of"),
    ({"requests_per_minute": 0}, "requests_per_minute: must be greater than 0"),
    ({"period": "fortnight"}, "period: must be one of"),
    ({"period": None}, "period: must be one of"),
])
def test_bad_updates_change_nothing(credential, changes, fragment):
    budget = budget_create(credential=credential, token_budget=10, requests_per_minute=3)
    with pytest.raises(Exception) as refused:
        budget_update(budget=budget, **changes)
    assert refused.value.status == 400 and fragment in refused.value.message
    budget.refresh_from_db()
    assert (budget.token_budget, budget.requests_per_minute, budget.period) == (10, 3, "month")
    assert not BudgetEvent.objects.filter(kind="updated").exists()


def test_updating_the_budget_of_a_credential_disabled_since_is_refused(credential):
    budget = budget_create(credential=credential, token_budget=10)
    credential_disable(credential=credential)
    with pytest.raises(Exception) as refused:
        budget_update(budget=budget, token_budget=20)
    assert refused.value.code == "credential_disabled"
    budget.refresh_from_db()
    assert budget.token_budget == 10


def test_delete_is_audited_and_stops_enforcement(credential, app_key):
    budget = budget_create(credential=credential, token_budget=10)
    budget_id = budget.id
    assert budget_rules(credential_ids=[credential.id])
    budget_delete(budget=budget, actor="admin:ada")
    assert not budget_rules(credential_ids=[credential.id])
    assert BudgetEvent.objects.filter(budget_id=budget_id, kind="deleted", actor="admin:ada").exists()


def test_deleting_the_credential_removes_its_budget_from_enforcement(credential):
    from credentials.services import credential_delete

    budget_create(credential=credential, token_budget=10)
    assert budget_rules(credential_ids=[credential.id])
    credential_delete(credential=credential)
    assert not Budget.objects.exists()
    assert not budget_rules(credential_ids=[credential.id])
