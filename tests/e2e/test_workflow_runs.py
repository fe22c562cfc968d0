"""Workflow runs end to end: real web server, real Celery worker, real Redis and PostgreSQL,
and the fake provider over HTTP, whose own record shows which key really paid."""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest
from django_tenants.utils import tenant_context

from fake_llm.client import key_sha256
from tests.conftest import canary_key
from tests.e2e.conftest import ServiceClient

pytestmark = pytest.mark.e2e


@pytest.fixture
def one(workspaces):
    return workspaces["eone"]


@pytest.fixture
def two(workspaces):
    return workspaces["etwo"]


def client(platform_, workspace, app="summarizer") -> ServiceClient:
    return ServiceClient(platform_.base_url, workspace.app_keys[app])


def chat_calls(fake):
    return [c for c in fake.calls() if c["operation"] == "chat"]


def runs_of(workspace, django_db_blocker):
    from workflows.models import WorkflowRun

    with django_db_blocker.unblock(), tenant_context(workspace.tenant):
        return WorkflowRun.objects.count()


def test_blocking_run_is_paid_by_the_tenant_default(platform_, one, fake_llm):
    response = client(platform_, one).run({"text": "Keyflow routes keys."})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"workflow_run_id", "task_id", "data"}
    data = body["data"]
    assert data["id"] == body["workflow_run_id"]
    assert data["status"] == "succeeded", data
    assert data["outputs"] == {"summary": "Echo: Summarize this text: Keyflow routes keys."}
    assert isinstance(data["created_at"], int) and isinstance(data["finished_at"], int)
    assert isinstance(data["elapsed_time"], float) and data["total_steps"] == 3
    assert data["total_tokens"] > 0
    assert data["metadata"]["credentials"] == [{
        "provider": "openai", "source": "default",
        "credential_id": str(one.credentials["openai_default"].id),
        "fingerprint": one.credentials["openai_default"].fingerprint[:16],
    }]
    assert float(response.headers["X-Keyflow-Platform-Time-Ms"]) >= 0
    assert [c["key_sha256"] for c in chat_calls(fake_llm)] == [key_sha256(one.keys["openai_default"])]


def test_override_pays_instead_of_the_default(platform_, one, fake_llm):
    other = one.credentials["openai_other"]
    response = client(platform_, one).run({"text": "bill the customer"},
                                          credential_overrides={"openai": str(other.id)})
    data = response.json()["data"]
    assert data["status"] == "succeeded"
    assert data["metadata"]["credentials"][0]["source"] == "override"
    assert data["metadata"]["credentials"][0]["credential_id"] == str(other.id)
    hashes = [c["key_sha256"] for c in chat_calls(fake_llm)]
    assert hashes == [key_sha256(one.keys["openai_other"])]
    assert key_sha256(one.keys["openai_default"]) not in hashes


@pytest.mark.parametrize(("language", "provider", "key"), [
    ("fr", "anthropic", "anthropic_default"), ("en", "openai", "openai_other"),
])
def test_two_provider_workflow_uses_the_right_key_for_each_node(platform_, one, fake_llm, language, provider, key):
    response = client(platform_, one, "triage").run(
        {"ticket": "printer broken", "language": language},
        credential_overrides={"openai": str(one.credentials["openai_other"].id)},
    )
    data = response.json()["data"]
    assert data["status"] == "succeeded", data
    calls = chat_calls(fake_llm)
    assert [(c["provider"], c["key_sha256"]) for c in calls] == [(provider, key_sha256(one.keys[key]))]


def test_streaming_relays_dify_events(platform_, one, fake_llm):
    response, events, raw = client(platform_, one).stream({"text": "stream me please"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [e["event"] for e in events]
    assert names[0] == "workflow_started" and names[-1] == "workflow_finished"
    assert names.count("node_started") == names.count("node_finished") == 3
    chunks = [e for e in events if e["event"] == "text_chunk"]
    assert len(chunks) > 1
    assert all(c["data"]["from_variable_selector"] == ["summarize", "text"] for c in chunks)
    text = "".join(c["data"]["text"] for c in chunks)
    finished = events[-1]["data"]
    assert finished["status"] == "succeeded"
    assert finished["outputs"]["summary"] == text
    run_id = events[0]["workflow_run_id"]
    assert all(e["workflow_run_id"] == run_id and e["task_id"] for e in events)
    llm_done = next(e for e in events if e["event"] == "node_finished" and e["data"]["node_type"] == "llm")
    assert llm_done["data"]["execution_metadata"]["credential_source"] == "default"
    assert all(s.event in ("message", "ping") for s in raw)


def test_async_returns_at_once_and_the_run_can_be_polled(platform_, one):
    service = client(platform_, one)
    response = service.run({"text": "later"}, mode="async")
    assert response.status_code == 202
    run_id = response.json()["workflow_run_id"]
    deadline = time.monotonic() + 30
    while True:
        detail = service.http.get(f"/v1/workflows/run/{run_id}").json()
        if detail["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert detail["status"] == "succeeded"
    assert isinstance(detail["inputs"], str) and "later" in detail["inputs"]
    assert detail["outputs"]["summary"].startswith("Echo:")
    logs = service.http.get("/v1/workflows/logs", params={"limit": 5}).json()
    assert run_id in [item["workflow_run"]["id"] for item in logs["data"]]


def test_tenant_b_cannot_use_tenant_a_credential(platform_, one, two, fake_llm, django_db_blocker):
    foreign = str(one.credentials["openai_other"].id)
    missing = str(uuid.uuid4())
    before = runs_of(two, django_db_blocker)
    answers = [client(platform_, two).run({"text": "steal"}, credential_overrides={"openai": cid})
               for cid in (foreign, missing)]
    assert [a.status_code for a in answers] == [400, 400]
    bodies = [a.json() for a in answers]
    assert bodies[0]["code"] == bodies[1]["code"] == "credential_not_found"
    assert bodies[0]["message"].replace(foreign, "ID") == bodies[1]["message"].replace(missing, "ID")
    assert runs_of(two, django_db_blocker) == before
    assert chat_calls(fake_llm) == []
    # And A's run detail is not reachable with B's key.
    run_id = client(platform_, one).run({"text": "mine"}).json()["workflow_run_id"]
    detail = client(platform_, two).http.get(f"/v1/workflows/run/{run_id}")
    nothing = client(platform_, two).http.get(f"/v1/workflows/run/{uuid.uuid4()}")
    assert (detail.status_code, detail.json()) == (nothing.status_code, nothing.json()) == (
        404, {"status": 404, "code": "not_found", "message": "Workflow run not found."})


def test_inline_key_pays_and_leaves_nothing_behind(platform_, one, fake_llm, django_db_blocker):
    from workflows.models import InlineCredential, WorkflowRun

    inline = canary_key("sk-inline-canary-")
    response = client(platform_, one).run(
        {"text": "my own key"},
        credential_overrides={"openai": {"api_key": inline, "base_url": fake_llm.url + "/v1"}},
    )
    data = response.json()["data"]
    assert data["status"] == "succeeded", data
    assert data["metadata"]["credentials"][0]["source"] == "inline"
    assert data["metadata"]["credentials"][0]["credential_id"] is None
    assert [c["key_sha256"] for c in chat_calls(fake_llm)] == [key_sha256(inline)]
    assert inline not in response.text
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        assert not InlineCredential.objects.filter(run_id=data["id"]).exists()
        run = WorkflowRun.objects.get(pk=data["id"])
        assert inline not in str(run.credential_plan) + str(list(run.node_executions.values()))
    import redis

    store = redis.Redis.from_url(os.environ["REDIS_URL"])
    for key in store.scan_iter(count=1000):
        kind = store.type(key)
        blob = (store.dump(key) or b"") if kind != b"none" else b""
        assert inline.encode() not in blob and inline[-16:].encode() not in blob, key


def test_inline_endpoint_outside_the_allow_list_is_refused(platform_, one, fake_llm):
    response = client(platform_, one).run(
        {"text": "x"}, credential_overrides={"openai": {"api_key": canary_key(), "base_url": "https://evil.example/v1"}})
    assert response.status_code == 403
    assert response.json()["code"] == "endpoint_not_allowed"
    assert chat_calls(fake_llm) == []


def test_provider_401_fails_the_run_naming_the_credential_without_fallback(platform_, one, fake_llm):
    other = one.credentials["openai_other"]
    fake_llm.add_fault(key_sha256=key_sha256(one.keys["openai_other"]), status=401, echo_key=True)
    response = client(platform_, one).run({"text": "x"}, credential_overrides={"openai": str(other.id)})
    data = response.json()["data"]
    assert data["status"] == "failed"
    assert str(other.id) in data["error"] and "401" in data["error"]
    assert one.keys["openai_other"] not in response.text
    assert {c["key_sha256"] for c in chat_calls(fake_llm)} == {key_sha256(one.keys["openai_other"])}


def test_rate_limit_is_retried_after_retry_after(platform_, one, fake_llm):
    fake_llm.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), status=429, retry_after=1, times=1)
    started = time.monotonic()
    data = client(platform_, one).run({"text": "retry"}).json()["data"]
    assert data["status"] == "succeeded"
    assert time.monotonic() - started >= 1.0
    assert [c["status"] for c in chat_calls(fake_llm)] == [429, 200]


def test_idempotency_key_returns_the_first_run(platform_, one, fake_llm):
    service = client(platform_, one)
    key = str(uuid.uuid4())
    first = service.run({"text": "once"}, headers={"Idempotency-Key": key}).json()
    second = service.run({"text": "once"}, headers={"Idempotency-Key": key}).json()
    assert first["workflow_run_id"] == second["workflow_run_id"]
    assert len(chat_calls(fake_llm)) == 1


def test_stop_during_streaming(platform_, one, fake_llm):
    from httpx_sse import connect_sse

    fake_llm.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), latency_ms=3000)
    service = client(platform_, one)
    body = {"inputs": {"text": "slow"}, "response_mode": "streaming", "user": "stopper"}
    events = []
    with connect_sse(service.http, "POST", "/v1/workflows/run", json=body) as source:
        for sse in source.iter_sse():
            if not sse.data:
                continue
            event = httpx.Response(200, content=sse.data).json()
            events.append(event)
            if event["event"] == "node_started" and event["data"]["node_type"] == "llm":
                stop = service.http.post(f"/v1/workflows/tasks/{event['task_id']}/stop", json={"user": "stopper"})
                assert stop.json() == {"result": "success"}
    assert events[-1]["event"] == "workflow_finished"
    assert events[-1]["data"]["status"] == "stopped"


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"inputs": {}, "user": "u"}, 400, "invalid_param"),
    ({"inputs": {"text": 5}, "user": "u"}, 400, "invalid_param"),
    ({"inputs": {"text": "x"}}, 400, "invalid_param"),
    ({"inputs": {"text": "x"}, "user": "u", "response_mode": "sideways"}, 400, "invalid_param"),
    ({"inputs": {"text": "x"}, "user": "u", "credential_overrides": ["openai"]}, 400, "invalid_param"),
    ({"inputs": {"text": "x"}, "user": "u", "credential_overrides": {"nope": "x"}}, 400, "unknown_provider"),
    ({"inputs": {"text": "x"}, "user": "u", "credential_overrides": {"anthropic": str(uuid.uuid4())}}, 400, "provider_not_used"),
])
def test_bad_requests_are_refused_before_anything_is_queued(platform_, one, fake_llm, django_db_blocker, body, status, code):
    before = runs_of(one, django_db_blocker)
    response = client(platform_, one).http.post("/v1/workflows/run", json=body)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert set(response.json()) == {"status", "code", "message"}
    assert runs_of(one, django_db_blocker) == before
    assert chat_calls(fake_llm) == []


def test_unknown_and_revoked_keys_and_disabled_apps(platform_, one, django_db_blocker):
    from tenants.models import ApiToken
    from tenants.services import api_token_revoke
    from workflows.services import app_key_issue, app_update

    unknown = ServiceClient(platform_.base_url, "app-" + "x" * 43).run({"text": "x"})
    assert unknown.status_code == 401 and unknown.json()["code"] == "unauthorized"
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        issued = app_key_issue(tenant=one.tenant, app=one.apps["summarizer"])
        api_token_revoke(token=ApiToken.objects.get(pk=issued.record.pk))
    revoked = ServiceClient(platform_.base_url, issued.token).run({"text": "x"})
    assert revoked.status_code == 401
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        app_update(app=one.apps["summarizer"], enabled=False)
    try:
        disabled = client(platform_, one).run({"text": "x"})
        assert (disabled.status_code, disabled.json()["code"]) == (403, "forbidden")
    finally:
        with django_db_blocker.unblock(), tenant_context(one.tenant):
            app_update(app=one.apps["summarizer"], enabled=True)


def test_a_worker_killed_mid_run_does_not_leave_it_stuck(platform_, one, fake_llm, django_db_blocker):
    from workflows.models import WorkflowRun

    fake_llm.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), latency_ms=2500, times=1)
    service = client(platform_, one)
    run_id = service.run({"text": "survive"}, mode="async").json()["workflow_run_id"]
    deadline = time.monotonic() + 20
    claimed_by = ""
    while time.monotonic() < deadline and not claimed_by:
        with django_db_blocker.unblock(), tenant_context(one.tenant):
            claimed_by = WorkflowRun.objects.get(pk=run_id).claimed_by
        time.sleep(0.05)
    assert claimed_by, "the run was never claimed"
    time.sleep(0.5)  # inside the slow provider call
    os.kill(int(claimed_by.rpartition(":")[2]), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        detail = service.http.get(f"/v1/workflows/run/{run_id}").json()
        if detail["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert detail["status"] == "succeeded", detail
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        run = WorkflowRun.objects.get(pk=run_id)
        assert run.attempts == 2 and run.claimed_by != claimed_by
    completed = [c for c in chat_calls(fake_llm) if c["completed"] and c["status"] == 200]
    assert len(completed) <= 2  # the killed attempt's call may have finished at the provider


def test_a_redelivered_task_for_a_finished_run_does_nothing(platform_, one, fake_llm, django_db_blocker):
    from workflows.models import WorkflowRun
    from workflows.services import workflow_run_enqueue

    run_id = client(platform_, one).run({"text": "exactly once"}).json()["workflow_run_id"]
    assert len(chat_calls(fake_llm)) == 1
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        run = WorkflowRun.objects.get(pk=run_id)
        for _ in range(3):  # the broker hands the same run out again
            assert workflow_run_enqueue(run=run)
    time.sleep(1.5)
    assert len(chat_calls(fake_llm)) == 1
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        assert WorkflowRun.objects.get(pk=run_id).attempts == 1


def test_a_credential_disabled_after_submission_fails_the_run_clearly(platform_, one, fake_llm, django_db_blocker):
    from credentials.models import Credential
    from credentials.services import credential_disable, credential_enable

    other = one.credentials["openai_other"]
    # Hold the run in the queue-to-worker gap: the worker is busy with a slow run first.
    fake_llm.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), latency_ms=1500, times=2)
    service = client(platform_, one)
    busy = [service.run({"text": "busy"}, mode="async") for _ in range(2)]
    late = service.run({"text": "late"}, mode="async", credential_overrides={"openai": str(other.id)})
    assert late.status_code == 202 and all(b.status_code == 202 for b in busy)
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        credential_disable(credential=Credential.objects.get(pk=other.id))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            detail = service.http.get(f"/v1/workflows/run/{late.json()['workflow_run_id']}").json()
            if detail["status"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        assert detail["status"] == "failed"
        assert str(other.id) in detail["error"] and "disabled" in detail["error"]
        assert key_sha256(one.keys["openai_other"]) not in {c["key_sha256"] for c in chat_calls(fake_llm)}
    finally:
        with django_db_blocker.unblock(), tenant_context(one.tenant):
            credential_enable(credential=Credential.objects.get(pk=other.id))
