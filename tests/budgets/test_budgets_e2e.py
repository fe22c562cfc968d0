"""Budgets and rate limits end to end: real web servers (several processes), a real Celery
worker, Redis, PostgreSQL and the fake provider, whose record shows which calls happened."""

from __future__ import annotations

import math
import multiprocessing
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import httpx
import pytest
from django_tenants.utils import tenant_context

from tests.budgets import burst
from tests.e2e import conftest as e2e_processes
from tests.e2e.conftest import (
    ServiceClient,
    _make_workspace,
    free_port,
    process_env,
    web_server_start,
    web_server_wait,
)

pytestmark = pytest.mark.e2e

# The real worker and web server of tests/e2e, as fixtures of this module too.
celery_worker = e2e_processes.celery_worker
web_server = e2e_processes.web_server
e2e_logs = e2e_processes.e2e_logs


@pytest.fixture(scope="session")
def ws(django_db_setup, django_db_blocker, fake_llm):
    """A workspace of its own: budgets set here never touch other end-to-end tests."""
    with django_db_blocker.unblock():
        return _make_workspace("ebudgets", fake_llm.url)


@pytest.fixture
def db_access(django_db_blocker, ws):
    """Run `fn` with database access in the workspace's schema (committed at once)."""

    def call(fn, *args, **kwargs):
        with django_db_blocker.unblock(), tenant_context(ws.tenant):
            return fn(*args, **kwargs)

    return call


@pytest.fixture
def platform_(web_server, celery_worker, fake_llm, db_access):
    fake_llm.reset()
    yield web_server
    fake_llm.reset()

    def remove_budgets():
        from budgets.models import Budget
        from budgets.services import budget_delete

        for budget in Budget.objects.all():
            budget_delete(budget=budget, actor="e2e cleanup")

    db_access(remove_budgets)


@pytest.fixture(scope="module")
def web_farm(django_db_setup, django_db_blocker, e2e_logs, ws):
    """Three more web server processes, each on its own port: the base URLs."""
    servers = []
    with django_db_blocker.unblock():
        for index in range(3):
            port = free_port()
            server, server.base_url = web_server_start(f"web-farm-{index}", port, process_env(KEYFLOW_PORT=str(port)),
                                                       e2e_logs, wait=None)
            servers.append(server)
    for server in servers:  # started together, then waited for
        web_server_wait(server, server.base_url)
    # A process's first submission loads the provider SDKs (seconds): do it before the
    # bursts, or they would not be concurrent. Missing inputs: refused, nothing queued.
    def warm(base_url: str) -> int:
        return httpx.post(f"{base_url}/v1/workflows/run", json={"inputs": {}, "user": "warm-up"},
                          headers={"Authorization": f"Bearer {ws.app_keys['summarizer']}"},
                          timeout=30).status_code

    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        assert list(pool.map(warm, [server.base_url for server in servers])) == [400] * len(servers)
    yield [server.base_url for server in servers]
    for server in servers:
        server.stop()


def chat_calls(fake) -> list[dict]:
    return [c for c in fake.calls() if c["operation"] == "chat"]


def app_key_record(token: str):
    from tenants.models import ApiToken
    from tenants.services import api_token_hash

    return ApiToken.objects.get(token_hash=api_token_hash(token))


def management(platform, ws, db_access) -> httpx.Client:
    from tenants.models import ApiToken
    from tenants.services import api_token_issue

    token = db_access(api_token_issue, tenant=ws.tenant, scope=ApiToken.Scope.MANAGEMENT).token
    return httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def runs_count(db_access) -> int:
    from workflows.models import WorkflowRun

    return db_access(WorkflowRun.objects.count)


def wait_for_runs_to_finish(db_access, timeout: float = 30) -> None:
    from workflows.models import WorkflowRun

    deadline = time.monotonic() + timeout
    while db_access(WorkflowRun.objects.filter(status__in=["queued", "running"]).count):
        assert time.monotonic() < deadline, "runs did not finish"
        time.sleep(0.1)


def steps_since(db_access, credential, since) -> int:
    from django.db.models import Sum

    from workflows.models import NodeExecution

    return db_access(lambda: NodeExecution.objects.filter(
        node_type="llm", credential_id=credential.id, run__created_at__gte=since,
    ).aggregate(total=Sum("total_tokens"))["total"] or 0)


def test_token_budget_serves_runs_until_the_cap_then_refuses_before_any_provider_call(
        platform_, ws, fake_llm, db_access):
    from budgets.services import budget_create

    credential = ws.credentials["openai_default"]
    service = ServiceClient(platform_.base_url, ws.app_keys["summarizer"])
    first = service.run({"text": "measure the tokens of one run"})
    tokens = first.json()["data"]["total_tokens"]
    assert first.status_code == 200 and tokens > 0

    budget = db_access(budget_create, credential=credential, token_budget=tokens + tokens // 2,
                       period="none", actor="e2e")
    for _ in range(2):  # the second run starts under the cap and crosses it: it finishes
        answer = service.run({"text": "measure the tokens of one run"})
        assert answer.status_code == 200 and answer.json()["data"]["status"] == "succeeded"
    calls, runs = len(chat_calls(fake_llm)), runs_count(db_access)

    refused = service.run({"text": "measure the tokens of one run"})
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert set(body) == {"status", "code", "message"}
    assert (body["status"], body["code"]) == (429, "quota_exceeded")
    assert str(credential.id) in body["message"]
    assert (len(chat_calls(fake_llm)), runs_count(db_access)) == (calls, runs)  # nothing queued or called

    api = management(platform_, ws, db_access)
    detail = api.get(f"/api/budgets/{budget.id}").json()
    assert detail["spend"]["tokens_used"] == 2 * tokens == steps_since(db_access, credential, budget.created_at)
    assert detail["spend"]["state"] == "exceeded"
    events = [e["kind"] for e in api.get(f"/api/budgets/{budget.id}/events").json()["data"]]
    assert events == ["cap_reached", "created"]

    assert api.post(f"/api/budgets/{budget.id}/reset").status_code == 200
    again = service.run({"text": "measure the tokens of one run"})
    assert again.status_code == 200 and again.json()["data"]["status"] == "succeeded"
    assert len(chat_calls(fake_llm)) == calls + 1
    assert api.get(f"/api/budgets/{budget.id}/events").json()["data"][0]["kind"] == "manual_reset"


def test_requests_from_several_processes_never_exceed_the_rate(platform_, web_farm, ws, fake_llm, db_access):
    from budgets.services import budget_create

    credential = ws.credentials["openai_other"]
    db_access(budget_create, credential=credential, requests_per_minute=4)
    body = {"inputs": {"text": "rate me"}, "response_mode": "async", "user": "crowd",
            "credential_overrides": {"openai": str(credential.id)}}
    start_at = time.time() + 1.5
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=6, mp_context=context) as pool:
        futures = [pool.submit(burst.post_runs, web_farm[index % 3], ws.app_keys["summarizer"], [body, body],
                               start_at) for index in range(6)]
        answers = [answer for future in futures for answer in future.result()]
    statuses = sorted(answer["status"] for answer in answers)
    assert statuses == [202] * 4 + [429] * 8, [a["body"] for a in answers]
    for answer in answers:
        if answer["status"] == 429:
            assert answer["body"]["code"] == "too_many_requests"
            assert str(credential.id) in answer["body"]["message"]
            assert 1 <= int(answer["retry_after"]) <= 60
    wait_for_runs_to_finish(db_access)
    assert len(chat_calls(fake_llm)) == 4


def test_concurrent_runs_overshoot_the_cap_by_at_most_the_runs_in_flight(
        platform_, web_farm, ws, fake_llm, db_access):
    from budgets.selectors import budget_spend_get
    from budgets.services import budget_create
    from fake_llm.client import key_sha256

    credential = ws.credentials["openai_other"]
    key = ws.keys["openai_other"]
    service = ServiceClient(platform_.base_url, ws.app_keys["summarizer"])
    overrides = {"openai": str(credential.id)}
    tokens = service.run({"text": "in flight"}, credential_overrides=overrides).json()["data"]["total_tokens"]
    cap = 3 * tokens - 1  # three runs in a row reach it
    budget = db_access(budget_create, credential=credential, token_budget=cap, period="none")
    fake_llm.add_fault(key_sha256=key_sha256(key), latency_ms=300)
    fake_llm_calls_before = len(chat_calls(fake_llm))

    processes, each = 4, 3
    body = {"inputs": {"text": "in flight"}, "response_mode": "blocking", "user": "crowd",
            "credential_overrides": overrides}
    start_at = time.time() + 1.5
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        futures = [pool.submit(burst.post_runs, web_farm[index % 3], ws.app_keys["summarizer"], [body] * each,
                               start_at) for index in range(processes)]
        per_process = [future.result() for future in futures]
    admitted = sum(answer["status"] == 200 for answers in per_process for answer in answers)
    assert all(answer["status"] in (200, 429) for answers in per_process for answer in answers)
    # Sequentially, ceil(cap / tokens) runs are admitted; concurrently, each other process
    # may have had one run in flight when the cap was crossed.
    assert math.ceil(cap / tokens) <= admitted <= math.ceil(cap / tokens) + processes - 1
    for answers in per_process:  # once refused, refused: the counter only grows
        statuses = [answer["status"] for answer in answers]
        assert statuses == sorted(statuses, key=lambda status: status == 429)
    assert len(chat_calls(fake_llm)) - fake_llm_calls_before == admitted
    # Counted once per step across the worker processes: the counter equals the stored steps.
    spent = db_access(lambda: budget_spend_get(budget=budget).tokens_used)
    assert spent == admitted * tokens == steps_since(db_access, credential, budget.created_at)
    assert service.run({"text": "in flight"}, credential_overrides=overrides).status_code == 429


def test_end_user_rate_limit_refuses_the_burst_with_retry_after(platform_, ws, fake_llm, db_access):
    from budgets.services import budget_create

    key = db_access(app_key_record, ws.app_keys["summarizer"])
    db_access(budget_create, app_key=key, requests_per_minute=3)
    service = ServiceClient(platform_.base_url, ws.app_keys["summarizer"])
    user = f"burst-{uuid.uuid4().hex[:6]}"
    answers = [service.run({"text": "burst"}, mode="async", user=user) for _ in range(6)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429, 429]
    for answer in answers[3:]:
        assert answer.json()["code"] == "too_many_requests"
        assert repr(user) in answer.json()["message"]
        assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert service.run({"text": "calm"}, mode="async", user="someone-else").status_code == 202
    wait_for_runs_to_finish(db_access)
    assert len(chat_calls(fake_llm)) == 4


def test_the_conversation_naming_step_counts_too(platform_, ws, fake_llm, db_access):
    from budgets.services import budget_create
    from workflows.models import Conversation

    credential = ws.credentials["openai_default"]
    budget = db_access(budget_create, credential=credential, token_budget=10**6, period="none")
    chat = ServiceClient(platform_.base_url, ws.app_keys["chat"])
    answer = chat.chat("Name this conversation please", user="namer")
    assert answer.status_code == 200, answer.text
    conversation_id = answer.json()["conversation_id"]
    deadline = time.monotonic() + 20
    while not db_access(lambda: Conversation.objects.get(pk=conversation_id).name):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    api = management(platform_, ws, db_access)
    spent = api.get(f"/api/budgets/{budget.id}").json()["spend"]["tokens_used"]
    assert len(chat_calls(fake_llm)) == 2
    assert spent == steps_since(db_access, credential, budget.created_at) > answer.json()["metadata"]["usage"]["total_tokens"]
