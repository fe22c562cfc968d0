"""The tenant admin for budgets: a spend bar toward the cap, forms that refuse bad limits,
an audited reset action, a read-only event trail."""

from __future__ import annotations

import pytest
from django.db import connection

from budgets.models import Budget, BudgetEvent
from budgets.services import budget_create

CHANGELIST = "/admin/budgets/budget/"


@pytest.fixture
def admin_name(provisioned_tenants):
    return provisioned_tenants["alpha"].admin_email


def in_alpha(tenant_a, fn, *args, **kwargs):
    connection.set_tenant(tenant_a)
    try:
        return fn(*args, **kwargs)
    finally:
        connection.set_schema_to_public()


def test_changelist_shows_a_spend_bar(admin_client, tenant_a, credential, app_key, record_step):
    in_alpha(tenant_a, budget_create, credential=credential, token_budget=200, soft_threshold_percent=50)
    in_alpha(tenant_a, budget_create, app_key=app_key, token_budget=100)
    in_alpha(tenant_a, record_step, credential, tokens=150)
    in_alpha(tenant_a, record_step, None, tokens=30, user="alice", app_key=app_key)
    page = admin_client.get(CHANGELIST).content.decode()
    assert 'class="kf-spend"' in page
    assert "width:75.0%" in page and "#b26b00" in page  # 150 of 200: past the 50 % threshold
    assert "alice" in page and "width:30.0%" in page


def test_change_page_lists_spend_and_the_audit_trail(admin_client, tenant_a, app_key, record_step):
    budget = in_alpha(tenant_a, budget_create, app_key=app_key, token_budget=100, actor="admin:ada")
    in_alpha(tenant_a, record_step, None, tokens=120, user="bob", app_key=app_key)
    page = admin_client.get(f"{CHANGELIST}{budget.pk}/change/").content.decode()
    assert "bob" in page and "120 / 100" in page and "#ba2121" in page
    assert "cap_reached · bob" in page and "created · admin:ada" in page


def test_add_form_creates_through_the_service_and_refuses_bad_limits(admin_client, tenant_a, credential,
                                                                     admin_name):
    form = {"credential": str(credential.id), "app_key": "", "period": "day", "token_budget": "0",
            "cost_budget": "", "soft_threshold_percent": "", "requests_per_minute": "",
            "tokens_per_minute": "", "alert_webhook_url": ""}
    refused = admin_client.post(CHANGELIST + "add/", form)
    assert refused.status_code == 200 and "token_budget: must be greater than 0" in refused.content.decode()
    assert in_alpha(tenant_a, Budget.objects.count) == 0
    refused = admin_client.post(CHANGELIST + "add/", {**form, "token_budget": "10", "period": "week"})
    assert refused.status_code == 200
    assert in_alpha(tenant_a, Budget.objects.count) == 0
    created = admin_client.post(CHANGELIST + "add/", {**form, "token_budget": "500"})
    assert created.status_code == 302, created.content.decode()[-2000:]
    budget = in_alpha(tenant_a, Budget.objects.get)
    assert (budget.token_budget, budget.period, budget.created_by) == (500, "day", f"admin:{admin_name}")
    event = in_alpha(tenant_a, BudgetEvent.objects.get)
    assert (event.kind, event.actor) == ("created", f"admin:{admin_name}")


def test_reset_action_is_audited(admin_client, tenant_a, credential, record_step, admin_name):
    budget = in_alpha(tenant_a, budget_create, credential=credential, token_budget=100)
    in_alpha(tenant_a, record_step, credential, tokens=150)
    response = admin_client.post(CHANGELIST, {"action": "reset_selected", "_selected_action": [str(budget.pk)]})
    assert response.status_code == 302
    event = in_alpha(tenant_a, BudgetEvent.objects.get, kind="manual_reset")
    assert event.actor == f"admin:{admin_name}" and event.details["tokens_used"] == 150
    budget = in_alpha(tenant_a, Budget.objects.get)
    assert budget.reset_at is not None


def test_event_trail_renders_and_is_read_only(admin_client, tenant_a, credential):
    in_alpha(tenant_a, budget_create, credential=credential, token_budget=100)
    assert admin_client.get("/admin/budgets/budgetevent/").status_code == 200
    assert admin_client.get("/admin/budgets/budgetevent/add/").status_code == 403


def test_change_form_updates_through_the_service(admin_client, tenant_a, credential, admin_name):
    budget = in_alpha(tenant_a, budget_create, credential=credential, token_budget=100)
    form = {"period": "month", "token_budget": "250", "cost_budget": "", "soft_threshold_percent": "90",
            "requests_per_minute": "", "tokens_per_minute": "", "alert_webhook_url": ""}
    response = admin_client.post(f"{CHANGELIST}{budget.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    budget = in_alpha(tenant_a, Budget.objects.get)
    assert (budget.token_budget, budget.soft_threshold_percent, budget.updated_by) == (250, 90, f"admin:{admin_name}")
    event = in_alpha(tenant_a, BudgetEvent.objects.get, kind="updated")
    assert event.details["changed"] == {"token_budget": [100, 250], "soft_threshold_percent": [None, 90]}
