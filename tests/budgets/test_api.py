"""Management API for budgets: what a client sees, identical 404s for foreign and missing
ids, clear 4xx errors that write nothing, audited resets, current spend."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from budgets.models import Budget, BudgetEvent
from credentials.services import credential_create, credential_disable
from tenants.models import ApiToken
from tenants.services import api_token_issue
from tests.conftest import canary_key


@pytest.fixture
def manager(db, tenant_a):
    return api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT)


@pytest.fixture
def api(manager):
    return Client(HTTP_AUTHORIZATION=f"Bearer {manager.token}", HTTP_HOST="localhost")


@pytest.fixture
def api_b(db, tenant_b):
    token = api_token_issue(tenant=tenant_b, scope=ApiToken.Scope.MANAGEMENT).token
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")


def credential_in(tenant, **values):
    with schema_context(tenant.schema_name):
        return credential_create(**{"provider": "openai", "name": "Key", "secrets": {"api_key": canary_key()},
                                    **values})


def app_key_in(tenant):
    from workflows.examples import SUMMARIZER
    from workflows.models import App

    with schema_context(tenant.schema_name):
        app = App.objects.create(name="App", graph=SUMMARIZER)
    return api_token_issue(tenant=tenant, scope=ApiToken.Scope.APP, app_id=app.id).record


def post(client, path, body=None):
    return client.post(path, body or {}, content_type="application/json")


def patch(client, path, body):
    return client.patch(path, body, content_type="application/json")


def assert_error(response, status: int, code: str, fragment: str = "") -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"status", "code", "message"} and (body["status"], body["code"]) == (status, code), body
    assert fragment in body["message"], body["message"]
    return body


def stored(tenant):
    with schema_context(tenant.schema_name):
        return Budget.objects.count(), BudgetEvent.objects.count()


def test_create_retrieve_update_list_delete(api, tenant_a):
    credential = credential_in(tenant_a)
    created = post(api, "/api/budgets", {"credential_id": str(credential.id), "token_budget": 1000,
                                         "cost_budget": "2.50", "period": "day", "soft_threshold_percent": 80,
                                         "requests_per_minute": 30})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body.pop("webhook_secret").startswith("whsec_")
    assert (body["scope"], body["credential_id"], body["app_key_id"]) == ("credential", str(credential.id), None)
    assert (body["token_budget"], body["cost_budget"], body["currency"]) == (1000, "2.5000000", "USD")
    assert body["spend"]["tokens_used"] == 0 and body["spend"]["state"] == "ok"
    assert body["spend"]["period_end"] is not None
    assert body["created_by"].startswith("token:kf-")
    detail = api.get(f"/api/budgets/{body['id']}").json()
    assert "webhook_secret" not in detail and detail["id"] == body["id"]

    changed = patch(api, f"/api/budgets/{body['id']}", {"token_budget": None, "tokens_per_minute": 500})
    assert changed.status_code == 200, changed.content
    assert (changed.json()["token_budget"], changed.json()["tokens_per_minute"]) == (None, 500)

    key = app_key_in(tenant_a)
    post(api, "/api/budgets", {"app_key_id": str(key.id), "requests_per_minute": 5})
    listed = api.get("/api/budgets").json()
    assert listed["total"] == 2
    end_user = next(row for row in listed["data"] if row["scope"] == "end_user")
    assert (end_user["app_key_id"], end_user["app_id"], end_user["spend"]) == (str(key.id), str(key.app_id), None)
    assert api.get("/api/budgets?scope=credential").json()["total"] == 1
    assert api.get(f"/api/budgets?app_key_id={key.id}").json()["total"] == 1

    assert api.delete(f"/api/budgets/{body['id']}").status_code == 204
    assert api.get(f"/api/budgets/{body['id']}").status_code == 404
    kinds = [e["kind"] for e in api.get(f"/api/budgets/{end_user['id']}/events").json()["data"]]
    assert kinds == ["created"]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"token_budget": 0}, "token_budget"),
    ({"token_budget": -10}, "token_budget"),
    ({"cost_budget": "0"}, "cost_budget"),
    ({"cost_budget": "-1"}, "cost_budget"),
    ({"requests_per_minute": 0}, "requests_per_minute"),
    ({"tokens_per_minute": -1}, "tokens_per_minute"),
    ({"token_budget": 10, "period": "week"}, "period"),
    ({"token_budget": 10, "soft_threshold_percent": 150}, "soft_threshold_percent"),
    ({"token_budget": "lots"}, "token_budget"),
    ({}, "set at least one of"),
    ({"token_budget": 10, "bogus": 1}, "bogus"),
])
def test_bad_input_is_a_400_and_nothing_is_written(api, tenant_a, body, fragment):
    credential = credential_in(tenant_a)
    response = post(api, "/api/budgets", {"credential_id": str(credential.id), **body})
    assert_error(response, 400, "invalid_param", fragment)
    assert stored(tenant_a) == (0, 0)


def test_a_budget_needs_one_subject(api, tenant_a):
    credential = credential_in(tenant_a)
    key = app_key_in(tenant_a)
    assert_error(post(api, "/api/budgets", {"token_budget": 5}), 400, "invalid_param", "exactly one")
    assert_error(post(api, "/api/budgets", {"token_budget": 5, "credential_id": str(credential.id),
                                             "app_key_id": str(key.id)}), 400, "invalid_param", "exactly one")
    assert stored(tenant_a) == (0, 0)


def test_budget_on_a_disabled_credential_is_a_400(api, tenant_a):
    credential = credential_in(tenant_a)
    with schema_context(tenant_a.schema_name):
        credential_disable(credential=credential)
    assert_error(post(api, "/api/budgets", {"credential_id": str(credential.id), "token_budget": 5}),
                 400, "credential_disabled", str(credential.id))
    assert stored(tenant_a) == (0, 0)


def test_a_second_budget_for_the_same_credential_is_a_409(api, tenant_a):
    credential = credential_in(tenant_a)
    post(api, "/api/budgets", {"credential_id": str(credential.id), "token_budget": 5})
    assert_error(post(api, "/api/budgets", {"credential_id": str(credential.id), "token_budget": 9}),
                 409, "budget_exists")


def test_foreign_and_missing_ids_are_the_same_404(api, api_b, tenant_a, tenant_b):
    foreign_credential = credential_in(tenant_b)
    foreign_key = app_key_in(tenant_b)
    missing = str(uuid.uuid4())
    for field, foreign, code in (("credential_id", foreign_credential.id, "credential_not_found"),
                                 ("app_key_id", foreign_key.id, "key_not_found")):
        answers = [post(api, "/api/budgets", {field: value, "token_budget": 5})
                   for value in (str(foreign), missing, "not-a-uuid")]
        assert len({(a.status_code, a.content) for a in answers}) == 1
        assert_error(answers[0], 404, code)
    manager_key = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT).record
    assert_error(post(api, "/api/budgets", {"app_key_id": str(manager_key.id), "token_budget": 5}),
                 404, "key_not_found")

    theirs = post(api_b, "/api/budgets", {"credential_id": str(foreign_credential.id), "token_budget": 5}).json()
    for method, path, body in (("get", "", None), ("patch", "", {"token_budget": 1}), ("delete", "", None),
                               ("post", "/reset", None), ("get", "/spend", None), ("get", "/events", None)):
        answers = []
        for budget_id in (theirs["id"], missing, "nope"):
            url = f"/api/budgets/{budget_id}{path}"
            if method == "patch":
                answers.append(patch(api, url, body))
            elif method == "post":
                answers.append(post(api, url))
            else:
                answers.append(getattr(api, method)(url))
        assert {(a.status_code, a.content) for a in answers} == {
            (404, b'{"status":404,"code":"budget_not_found","message":"Budget not found."}')}, (method, path)
    assert api_b.get(f"/api/budgets/{theirs['id']}").json()["token_budget"] == 5


def test_bad_updates_are_400s_and_change_nothing(api, tenant_a):
    credential = credential_in(tenant_a)
    budget = post(api, "/api/budgets", {"credential_id": str(credential.id), "token_budget": 5}).json()
    assert_error(patch(api, f"/api/budgets/{budget['id']}", {"token_budget": None}), 400, "invalid_param",
                 "set at least one of")
    assert_error(patch(api, f"/api/budgets/{budget['id']}", {"token_budget": 0}), 400, "invalid_param")
    assert_error(patch(api, f"/api/budgets/{budget['id']}", {"period": "year"}), 400, "invalid_param", "period")
    assert api.get(f"/api/budgets/{budget['id']}").json()["token_budget"] == 5
    with schema_context(tenant_a.schema_name):
        assert not BudgetEvent.objects.filter(kind="updated").exists()


def test_reset_is_audited_with_the_actor(api, manager, tenant_a, record_step_in_alpha):
    credential = credential_in(tenant_a)
    budget = post(api, "/api/budgets", {"credential_id": str(credential.id), "token_budget": 100}).json()
    record_step_in_alpha(credential, tokens=150)
    assert api.get(f"/api/budgets/{budget['id']}").json()["spend"]["state"] == "exceeded"
    reset = post(api, f"/api/budgets/{budget['id']}/reset")
    assert reset.status_code == 200 and reset.json()["reset_at"] is not None
    assert reset.json()["spend"]["tokens_used"] == 0
    events = api.get(f"/api/budgets/{budget['id']}/events").json()["data"]
    assert [e["kind"] for e in events] == ["manual_reset", "cap_reached", "created"]
    assert events[0]["actor"] == f"token:{manager.record.hint}"
    assert events[0]["details"]["tokens_used"] == 150


def test_spend_of_each_end_user(api, tenant_a, record_step_in_alpha):
    credential = credential_in(tenant_a)
    key = app_key_in(tenant_a)
    budget = post(api, "/api/budgets", {"app_key_id": str(key.id), "token_budget": 100,
                                        "soft_threshold_percent": 50}).json()
    record_step_in_alpha(credential, tokens=60, user="alice", app_key=key)
    record_step_in_alpha(credential, tokens=10, user="bob", app_key=key)
    rows = api.get(f"/api/budgets/{budget['id']}/spend").json()["data"]
    assert [(r["user"], r["tokens_used"], r["percent"], r["state"]) for r in rows] == [
        ("alice", 60, 60.0, "warning"), ("bob", 10, 10.0, "ok")]
    one = api.get(f"/api/budgets/{budget['id']}/spend?user=carol").json()["data"]
    assert [(r["user"], r["tokens_used"]) for r in one] == [("carol", 0)]


@pytest.fixture
def record_step_in_alpha(tenant_a, record_step):
    from django.db import connection

    def record(*args, **kwargs):
        connection.set_tenant(tenant_a)
        try:
            return record_step(*args, **kwargs)
        finally:
            connection.set_schema_to_public()

    return record
