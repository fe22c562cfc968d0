"""Usage sums per credential, end user, app, day and model: exact, filtered, isolated per
tenant, in one query; the same numbers on the tenant admin's usage page."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from credentials.services import credential_create
from tenants.models import ApiToken
from tenants.services import api_token_issue
from tests.conftest import canary_key
from workflows.examples import SUMMARIZER
from workflows.models import App, NodeExecution, WorkflowRun
from workflows.usage import usage_report, usage_summary


def day_at_noon(days_ago: int) -> datetime:
    return datetime.combine(timezone.localdate() - timedelta(days=days_ago), time(12), tzinfo=UTC)


def record_run(app: App, *, user: str, created_at: datetime, steps=(), status="succeeded") -> WorkflowRun:
    """A finished run as the executor stores it, with its node executions.

    `steps` holds dicts of NodeExecution fields (node_type defaults to llm)."""
    run = WorkflowRun.objects.create(
        app=app, response_mode="blocking", end_user=user, status=status,
        deadline_at=created_at + timedelta(minutes=5),
        credential_plan={
            step["provider"]: {
                "source": step["credential_source"],
                "credential_id": str(step["credential_id"]) if step.get("credential_id") else None,
                "fingerprint": step.get("credential_fingerprint", ""),
            }
            for step in steps if step.get("provider")
        },
    )
    WorkflowRun.objects.filter(pk=run.pk).update(created_at=created_at)
    for index, step in enumerate(steps):
        values = {"node_id": f"n{index}", "node_type": "llm", "status": "succeeded", "index": index}
        values.update(step)
        NodeExecution.objects.create(run=run, **values)
    run.refresh_from_db()
    return run


def llm(credential, source: str, model: str, prompt: int, completion: int, price: str, provider=None):
    return {
        "provider": provider or (credential.provider if credential else "openai"),
        "model": model,
        "credential_id": credential.id if credential else None,
        "credential_source": source,
        "credential_fingerprint": credential.fingerprint if credential else "f" * 64,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "total_price": Decimal(price),
    }


def make_app(name: str) -> App:
    return App.objects.create(name=name, graph=copy.deepcopy(SUMMARIZER))


@dataclass
class Ledger:
    team: object
    customer: object
    summarizer: App
    triage: App
    runs: dict


@pytest.fixture
def ledger(db, tenant_a, tenant_b) -> Ledger:
    """Known usage in tenant alpha (and noise in tenant beta that must never show)."""
    with schema_context(tenant_b.schema_name):
        other = credential_create(provider="openai", name="Beta key", secrets={"api_key": canary_key()})
        record_run(make_app("Beta app"), user="user-1", created_at=day_at_noon(1),
                   steps=[llm(other, "default", "gpt-4o-mini", 90000, 90000, "9.9000000")])
    with schema_context(tenant_a.schema_name):
        team = credential_create(provider="openai", name="Team key", secrets={"api_key": canary_key()})
        customer = credential_create(
            provider="anthropic", name="Customer 7 key", secrets={"api_key": canary_key()}, owner="user-7"
        )
        summarizer, triage = make_app("Summarizer"), make_app("Triage")
        runs = {
            "r1": record_run(summarizer, user="user-1", created_at=day_at_noon(2), steps=[
                llm(team, "default", "gpt-4o-mini", 100, 50, "0.0000450"),
                {"node_id": "fmt", "node_type": "template"},
            ]),
            "r2": record_run(summarizer, user="user-7", created_at=day_at_noon(1), status="failed", steps=[
                llm(customer, "override", "claude-3-5-haiku", 200, 100, "0.0006000"),
                llm(None, "inline", "gpt-4o-mini", 10, 5, "0.0000045", provider="openai"),
            ]),
            "r3": record_run(triage, user="user-1", created_at=day_at_noon(0), steps=[
                llm(team, "app", "gpt-4o", 1000, 500, "0.0045000"),
                llm(team, "app", "gpt-4o", 1, 1, "0.0000010"),
            ]),
            "old": record_run(triage, user="user-1", created_at=day_at_noon(40), steps=[
                llm(team, "default", "gpt-4o-mini", 7, 7, "0.0000070"),
            ]),
        }
    return Ledger(team=team, customer=customer, summarizer=summarizer, triage=triage, runs=runs)


@pytest.fixture
def api(db, tenant_a):
    token = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT).token
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")


@pytest.fixture
def api_b(db, tenant_b):
    token = api_token_issue(tenant=tenant_b, scope=ApiToken.Scope.MANAGEMENT).token
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")


def sums(runs, steps, prompt, completion, cost):
    return {"runs": runs, "steps": steps, "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "cost": cost, "currency": "USD"}


def usage(api, **params):
    response = api.get("/api/usage", params)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["group_by"] == params["group_by"] and body["currency"] == "USD"
    return body["data"]


def test_by_credential_names_the_credential_and_how_it_was_chosen(api, ledger):
    assert usage(api, group_by="credential") == [
        {"credential_id": str(ledger.team.id), "credential_name": "Team key",
         "source": "mixed", "sources": ["app", "default"], **sums(3, 4, 1108, 558, "0.0045530")},
        {"credential_id": str(ledger.customer.id), "credential_name": "Customer 7 key",
         "source": "override", "sources": ["override"], **sums(1, 1, 200, 100, "0.0006000")},
        {"credential_id": None, "credential_name": None, "source": "inline", "sources": ["inline"],
         **sums(1, 1, 10, 5, "0.0000045")},
    ]


def test_by_user_app_day_and_model(api, ledger):
    assert usage(api, group_by="user") == [
        {"user": "user-1", **sums(3, 4, 1108, 558, "0.0045530")},
        {"user": "user-7", **sums(1, 2, 210, 105, "0.0006045")},
    ]
    assert usage(api, group_by="app") == [
        {"app_id": str(ledger.triage.id), "app_name": "Triage", **sums(2, 3, 1008, 508, "0.0045080")},
        {"app_id": str(ledger.summarizer.id), "app_name": "Summarizer", **sums(2, 3, 310, 155, "0.0006495")},
    ]
    day = [str(timezone.localdate() - timedelta(days=n)) for n in (40, 2, 1, 0)]
    assert usage(api, group_by="day") == [
        {"day": day[0], **sums(1, 1, 7, 7, "0.0000070")},
        {"day": day[1], **sums(1, 1, 100, 50, "0.0000450")},
        {"day": day[2], **sums(1, 2, 210, 105, "0.0006045")},
        {"day": day[3], **sums(1, 2, 1001, 501, "0.0045010")},
    ]
    assert usage(api, group_by="model") == [
        {"provider": "openai", "model": "gpt-4o", **sums(1, 2, 1001, 501, "0.0045010")},
        {"provider": "anthropic", "model": "claude-3-5-haiku", **sums(1, 1, 200, 100, "0.0006000")},
        {"provider": "openai", "model": "gpt-4o-mini", **sums(3, 3, 117, 62, "0.0000565")},
    ]


def test_filters_narrow_the_sums(api, ledger):
    by_credential = usage(api, group_by="credential", app_id=str(ledger.summarizer.id))
    assert [(row["credential_name"], row["total_tokens"], row["cost"]) for row in by_credential] == [
        ("Customer 7 key", 300, "0.0006000"), ("Team key", 150, "0.0000450"), (None, 15, "0.0000045"),
    ]
    assert usage(api, group_by="user", credential_id=str(ledger.team.id)) == [
        {"user": "user-1", **sums(3, 4, 1108, 558, "0.0045530")},
    ]
    assert [row["model"] for row in usage(api, group_by="model", user="user-7")] == [
        "claude-3-5-haiku", "gpt-4o-mini",
    ]
    two_days = usage(
        api, group_by="day",
        start=str(timezone.localdate() - timedelta(days=2)), end=str(timezone.localdate() - timedelta(days=1)),
    )
    assert [(row["runs"], row["total_tokens"]) for row in two_days] == [(1, 150), (1, 315)]
    since = (day_at_noon(1) - timedelta(hours=1)).isoformat()
    assert [row["total_tokens"] for row in usage(api, group_by="user", start=since)] == [1502, 315]
    assert usage(api, group_by="app", user="nobody") == []


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"group_by": "week"}, "group_by"),
        ({}, "group_by"),
        ({"group_by": "day", "start": "2024-13-01"}, "start"),
        ({"group_by": "day", "end": "yesterday"}, "end"),
        ({"group_by": "day", "end": "9999-12-31"}, "end"),
        ({"group_by": "day", "start": "2024-05-02", "end": "2024-05-01"}, "end"),
        ({"group_by": "app", "app_id": "not-a-uuid"}, "app_id"),
        ({"group_by": "app", "credential_id": "42"}, "credential_id"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(api, params, parameter):
    response = api.get("/api/usage", params)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"status", "code", "message"} and body["code"] == "invalid_param"
    assert body["message"].startswith(f"{parameter}: ")


def test_tenants_see_only_their_own_usage(api_b, ledger):
    assert usage(api_b, group_by="user") == [{"user": "user-1", **sums(1, 1, 90000, 90000, "9.9000000")}]
    assert usage(api_b, group_by="app", app_id=str(ledger.summarizer.id)) == []


def test_usage_summary_is_one_query(ledger, tenant_a, django_assert_num_queries):
    with schema_context(tenant_a.schema_name):
        App.objects.exists()  # the connection sets its search_path on its first query here
        for group_by in ("credential", "user", "app", "day", "model"):
            with django_assert_num_queries(1):
                rows = usage_summary(group_by=group_by)
            assert sum(row["steps"] for row in rows) == 6
            assert sum(row["cost"] for row in rows) == Decimal("0.0051575")


def test_usage_report_covers_the_last_30_days(ledger, tenant_a):
    with schema_context(tenant_a.schema_name):
        report = usage_report()
    assert len(report["chart"]) == 30 and report["chart_measure"] == "cost"
    assert report["chart"][-1] == {"day": timezone.localdate(), "value": Decimal("0.0045010"),
                                   "percent": Decimal("100.0")}
    assert [bar["percent"] for bar in report["chart"][-3:-1]] == [Decimal("1.0"), Decimal("13.4")]
    assert sum(bar["value"] for bar in report["chart"]) == Decimal("0.0051505")  # not the old run
    sections = {section["group"]: section["rows"] for section in report["sections"]}
    assert [row["total_tokens"] for row in sections["credential"]] == [1652, 300, 15]
    assert [row["user"] for row in sections["user"]] == ["user-1", "user-7"]


def test_admin_usage_page_shows_the_sums(admin_client, ledger):
    index = admin_client.get("/admin/")
    assert index.status_code == 200
    assert 'href="/admin/usage/"' in index.content.decode()
    page = admin_client.get("/admin/usage/")
    assert page.status_code == 200
    html = page.content.decode()
    for text in ("Team key", "Customer 7 key", "One-off keys", "user-7", "Summarizer", "Triage",
                 "0.0045460", "1652", "0.0006045", "315", "0.0045010", "mixed", 'class="kf-bar"'):
        assert text in html, text
    assert "0.0000070" not in html  # 40 days old: outside the page's 30 days
    assert "Beta key" not in html and "9.9000000" not in html
    assert "<script" not in html.split('id="content-main"')[1]


def test_admin_usage_page_is_for_staff_only(db, provisioned_tenants, tenant_a):
    anonymous = Client(HTTP_HOST="alpha.localhost").get("/admin/usage/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    from django.contrib.auth import get_user_model

    client = Client(HTTP_HOST="alpha.localhost")
    with schema_context(tenant_a.schema_name):
        viewer = get_user_model().objects.create_user(username="viewer", password="pw-12345-long")
        # force_login: django-axes refuses authenticate() calls that carry no request.
        client.force_login(viewer)  # signed in, not staff
    response = client.get("/admin/usage/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
