"""Backpressure: a submission that finds too many runs waiting for a worker is refused at
once (429 `too_many_requests`, Retry-After, Dify's error body) and nothing is stored; a run
taken by a worker, stopped or refused gives its place back; one tenant may fill only its
share of the queue; places of runs never taken stop counting at the run deadline.

The first part calls the services in-process (PostgreSQL rolled back after each test); the
second sends requests to a real web server. Both use a Redis database of their own, so the
backlog of other tests' runs does not count here.
"""

from __future__ import annotations

import copy
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from django.db import connection

from tests.budgets.conftest import RoundTrips
from tests.conftest import canary_key
from tests.e2e.conftest import CHAT_CONFIG

BACKLOG_DB = 14


def backlog_redis_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{BACKLOG_DB}"))


@pytest.fixture(autouse=True)
def no_refusal_remembered():
    """A web process remembers its refusals for a moment; tests start without any."""
    from workflows import backpressure

    backpressure._refusing.clear()
    yield
    backpressure._refusing.clear()


@pytest.fixture
def backlog(settings):
    """Backpressure on a Redis database of its own, empty; small caps set per test."""
    from runevents.redis_client import shared_redis

    settings.REDIS_URL = backlog_redis_url(settings.REDIS_URL)
    settings.KEYFLOW_BACKLOG_TENANT_SHARE = 100
    client = shared_redis()
    client.flushdb()
    yield settings
    client.flushdb()


def make_workspace(tenant):
    """A workflow app and a chat app of `tenant`, its default openai key and app keys that
    allow one-off keys. Call in the tenant's schema."""
    from credentials.resolution import OverridePolicy
    from credentials.services import credential_create
    from workflows.examples import SUMMARIZER
    from workflows.services import app_create, app_key_issue

    credential_create(provider="openai", name="default", secrets={"api_key": canary_key()},
                      config={"base_url": "http://127.0.0.1:9/v1"}, is_default=True)
    apps = {
        "workflow": app_create(name="Summarizer", graph=copy.deepcopy(SUMMARIZER)),
        "chat": app_create(name="Chat", mode="chat", model_config=CHAT_CONFIG),
    }
    policy = OverridePolicy(allow_inline=True)
    issued = {name: app_key_issue(tenant=tenant, app=app, policy=policy) for name, app in apps.items()}
    return apps, {name: key.record for name, key in issued.items()}, {name: key.token for name, key in issued.items()}


# --- services, in-process ------------------------------------------------------------------------


@pytest.fixture
def alpha(db, tenant_a, tenant_b):
    """Tenant alpha (current schema) and beta, each with a workflow app and a key."""
    spaces = {}
    for tenant in (tenant_b, tenant_a):
        connection.set_tenant(tenant)
        apps, keys, _ = make_workspace(tenant)
        spaces[tenant.schema_name] = (tenant, apps, keys)
    return spaces


def submit(spaces, schema: str = "alpha", *, mode: str = "async", **extra):
    from workflows.services import workflow_run_submit

    tenant, apps, keys = spaces[schema]
    connection.set_tenant(tenant)
    return workflow_run_submit(app=apps["workflow"], token=keys["workflow"], inputs={"text": "hello"},
                               user="user-1", response_mode=mode, **extra).run


def refused(spaces, schema: str = "alpha", **kwargs):
    from workflows.backpressure import BacklogFull

    with pytest.raises(BacklogFull) as caught:
        submit(spaces, schema, **kwargs)
    return caught.value


def stored():
    from workflows.models import InlineCredential, WorkflowRun

    return WorkflowRun.objects.count(), InlineCredential.objects.count()


def test_with_a_cap_of_n_the_next_run_is_refused_with_retry_after_and_nothing_is_stored(backlog, alpha):
    backlog.KEYFLOW_MAX_BACKLOG_ASYNC = 3
    for _ in range(3):
        submit(alpha)
    before = stored()
    error = refused(alpha, credential_overrides={"openai": {"api_key": canary_key()}})
    assert (error.status, error.code) == (429, "too_many_requests")
    assert error.message.startswith("Too many requests. Please try again later.")
    # Nothing was taken lately (no worker here): come back in 30 s.
    assert error.headers == {"Retry-After": "30"}
    assert stored() == before  # no run, no one-off key


def test_a_run_taken_by_a_worker_gives_its_place_back(backlog, alpha):
    from workflows.services import workflow_run_claim

    backlog.KEYFLOW_MAX_BACKLOG_ASYNC = 2
    first, _ = submit(alpha), submit(alpha)
    refused(alpha)
    assert workflow_run_claim(run_id=first.id).status == "running"
    submit(alpha)
    refused(alpha)


def test_a_run_stopped_in_the_queue_or_refused_unqueued_gives_its_place_back(backlog, alpha):
    from workflows.models import WorkflowRun
    from workflows.services import workflow_run_refuse_unqueued, workflow_run_request_stop

    backlog.KEYFLOW_MAX_BACKLOG = 2
    first, second = submit(alpha, mode="blocking"), submit(alpha, mode="blocking")
    refused(alpha, mode="blocking")
    workflow_run_request_stop(run=first)
    assert WorkflowRun.objects.get(pk=first.pk).status == "stopped"
    submit(alpha, mode="blocking")
    refused(alpha, mode="blocking")
    workflow_run_refuse_unqueued(run_id=second.pk)
    submit(alpha, mode="blocking")


def test_a_retried_submission_with_its_idempotency_key_is_not_refused(backlog, alpha):
    backlog.KEYFLOW_MAX_BACKLOG_ASYNC = 1
    first = submit(alpha, idempotency_key="order-17")
    assert submit(alpha, idempotency_key="order-17").pk == first.pk
    refused(alpha, idempotency_key="order-18")


def test_one_tenant_fills_only_its_share_of_the_queue(backlog, alpha):
    backlog.KEYFLOW_MAX_BACKLOG_ASYNC = 4
    backlog.KEYFLOW_BACKLOG_TENANT_SHARE = 50
    submit(alpha, "alpha"), submit(alpha, "alpha")
    error = refused(alpha, "alpha")
    assert "This workspace already has 2 runs waiting for a worker, its share" in error.message
    # The other tenant still gets in, up to the cap of the whole queue.
    submit(alpha, "beta"), submit(alpha, "beta")
    error = refused(alpha, "beta")
    assert "The platform is at capacity" in error.message
    assert "workspace" not in error.message


def test_interactive_and_async_runs_have_a_backlog_each(backlog, alpha):
    backlog.KEYFLOW_MAX_BACKLOG = 1
    backlog.KEYFLOW_MAX_BACKLOG_ASYNC = 1
    submit(alpha, mode="blocking")
    submit(alpha, mode="async")  # a full interactive queue does not hold up async runs
    refused(alpha, mode="streaming")
    refused(alpha, mode="async")


def test_retry_after_is_the_backlog_over_the_recent_drain_rate(backlog, alpha):
    from workflows.services import workflow_run_claim

    backlog.KEYFLOW_MAX_BACKLOG_ASYNC = 4
    runs = [submit(alpha) for _ in range(4)]
    for run in runs[:2]:
        workflow_run_claim(run_id=run.id)
    submit(alpha), submit(alpha)
    # 4 waiting, 2 taken in the last 10 s: 0.2 runs/s, so 20 s.
    assert refused(alpha).headers["Retry-After"] == "20"


def test_places_of_runs_never_taken_stop_counting_at_the_run_deadline(backlog, alpha):
    backlog.KEYFLOW_MAX_BACKLOG_ASYNC = 2
    backlog.KEYFLOW_RUN_DEADLINE_SECONDS = 1
    submit(alpha)  # never taken (its worker is gone, say)
    time.sleep(0.6)
    submit(alpha)
    assert refused(alpha).headers["Retry-After"] == "1"  # never beyond the deadline
    time.sleep(0.6)
    submit(alpha)  # the first run's place was given up at its deadline; the second's was not
    refused(alpha)


def test_a_chat_message_refused_stores_no_conversation(backlog, alpha):
    from workflows.backpressure import BacklogFull
    from workflows.conversations import chat_message_submit
    from workflows.models import Conversation, Message

    backlog.KEYFLOW_MAX_BACKLOG = 1
    tenant, apps, keys = alpha["alpha"]
    connection.set_tenant(tenant)

    def chat():
        return chat_message_submit(app=apps["chat"], token=keys["chat"], query="Hi", inputs={},
                                   user="user-1", response_mode="blocking")

    chat()
    counts = Conversation.objects.count(), Message.objects.count()
    with pytest.raises(BacklogFull):
        chat()
    assert (Conversation.objects.count(), Message.objects.count()) == counts


def test_a_cap_of_zero_turns_backpressure_off(backlog, alpha):
    backlog.KEYFLOW_MAX_BACKLOG_ASYNC = 0
    for _ in range(5):
        submit(alpha)


def test_admission_is_one_redis_round_trip(backlog, alpha):
    from workflows.backpressure import backlog_admit

    backlog.KEYFLOW_MAX_BACKLOG = 10
    backlog_admit(response_mode="blocking")  # loads the script once
    with RoundTrips() as trips:
        backlog_admit(response_mode="blocking")
    assert trips.count == 1


def test_with_redis_unreachable_runs_are_admitted_as_before(settings, alpha):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    settings.KEYFLOW_MAX_BACKLOG_ASYNC = 1
    started = time.monotonic()
    runs = [submit(alpha) for _ in range(3)]
    assert len({run.pk for run in runs}) == 3
    assert time.monotonic() - started < 2


def test_after_a_refusal_the_process_refuses_the_same_queue_for_a_moment_without_redis(backlog, alpha):
    from workflows.backpressure import SHED_SECONDS, BacklogFull, backlog_shed

    backlog.KEYFLOW_MAX_BACKLOG_ASYNC = 1
    submit(alpha)
    first = refused(alpha)
    backlog.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing to ask: the refusal is remembered
    with pytest.raises(BacklogFull) as again:
        backlog_shed(schema="alpha", response_mode="async")
    assert (again.value.status, again.value.headers) == (429, first.headers)
    backlog_shed(schema="alpha", response_mode="blocking")  # another queue
    time.sleep(SHED_SECONDS)
    backlog_shed(schema="alpha", response_mode="async")


# --- the web process's own limit (ASGI, in-process) ----------------------------------------------


class Submissions:
    """Requests through `SubmissionShed` to an app that holds each request until told:
    `admit(i)` marks request i admitted (it goes on waiting, as a blocking run does),
    `finish(i)` ends it."""

    def __init__(self):
        import asyncio

        from workflows.backpressure import SubmissionShed, admission_passed

        self.events: dict[int, tuple[asyncio.Event, asyncio.Event]] = {}

        async def app(scope, receive, send):
            index = int(dict(scope["headers"])[b"x-index"])
            self.received[index] = (await receive())["body"]
            admitted, finished = self.events[index]
            await admitted.wait()
            admission_passed()
            await finished.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        self.shed = SubmissionShed(app)
        self.received: dict[int, bytes] = {}
        self.tasks: dict[int, object] = {}
        self.answers: dict[int, dict] = {}

    def send(self, index: int, *, key: str = "app-one", path: str = "/v1/workflows/run", method: str = "POST",
             body: bytes = b"{}", headers: tuple = ()):
        import asyncio

        self.events[index] = (asyncio.Event(), asyncio.Event())
        messages: list[dict] = []

        async def send(message):
            messages.append(message)

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "method": method, "path": path,
                 "headers": [(b"authorization", f"Bearer {key}".encode()), (b"x-index", str(index).encode()),
                             *headers]}
        self.answers[index] = messages
        self.tasks[index] = asyncio.ensure_future(self.shed(scope, receive, send))

    def status(self, index: int) -> int | None:
        start = next((m for m in self.answers[index] if m["type"] == "http.response.start"), None)
        return start and start["status"]

    def admit(self, index: int):
        self.events[index][0].set()

    def finish(self, index: int):
        self.admit(index)
        self.events[index][1].set()


def in_loop(body):
    import asyncio

    async def main():
        submissions = Submissions()
        await body(submissions, lambda: asyncio.sleep(0.01))

    asyncio.run(main())


def test_a_web_process_refuses_submissions_beyond_those_it_is_taking_in(settings):
    import json

    settings.KEYFLOW_WEB_MAX_ADMITTING = 2
    settings.KEYFLOW_BACKLOG_TENANT_SHARE = 100
    settings.KEYFLOW_WEB_ADMIT_WAIT_SECONDS = 0

    async def body(s, tick):
        s.send(1), s.send(2), s.send(3)
        await tick()
        assert [s.status(i) for i in (1, 2, 3)] == [None, None, 429]
        start, content = s.answers[3]
        assert dict(start["headers"])[b"retry-after"] == b"1"
        answer = json.loads(content["body"])
        assert (answer["status"], answer["code"]) == (429, "too_many_requests")
        assert set(answer) == {"status", "code", "message"}
        # Other requests are never refused here.
        s.send(4, path="/v1/workflows/run/42", method="GET"), s.send(5, path="/v1/info")
        # An admitted submission waiting for its run no longer counts.
        s.admit(1)
        await tick()
        s.send(6)
        await tick()
        assert s.status(6) is None
        s.send(7)
        await tick()
        assert s.status(7) == 429
        for i in (1, 2, 4, 5, 6):
            s.finish(i)
        await tick()
        assert [s.status(i) for i in (1, 2, 4, 5, 6)] == [200] * 5
        s.send(8)
        s.finish(8)
        await tick()
        assert s.status(8) == 200

    in_loop(body)


def test_one_app_key_takes_only_its_share_of_a_busy_web_process(settings):
    settings.KEYFLOW_WEB_MAX_ADMITTING = 4
    settings.KEYFLOW_BACKLOG_TENANT_SHARE = 50
    settings.KEYFLOW_WEB_ADMIT_WAIT_SECONDS = 0

    async def body(s, tick):
        s.send(1, key="app-one"), s.send(2, key="app-one"), s.send(4, key="app-two")
        s.send(3, key="app-one"), s.send(5, key="app-two"), s.send(6, key="app-three")
        await tick()
        assert [s.status(i) for i in range(1, 7)] == [None, None, 429, None, None, 429]
        for i in (1, 2, 4, 5):
            s.finish(i)
        await tick()

    in_loop(body)


def test_a_lone_app_key_may_use_a_busy_web_process_whole(settings):
    """The share is for fairness between keys: a burst of one key alone is taken in up to
    the process's limit (200 streams opened at once must not be refused for it)."""
    settings.KEYFLOW_WEB_MAX_ADMITTING = 4
    settings.KEYFLOW_BACKLOG_TENANT_SHARE = 50
    settings.KEYFLOW_WEB_ADMIT_WAIT_SECONDS = 0

    async def body(s, tick):
        for i in range(1, 6):
            s.send(i, key="app-one")
        await tick()
        assert [s.status(i) for i in range(1, 6)] == [None, None, None, None, 429]
        for i in range(1, 5):
            s.finish(i)
        await tick()

    in_loop(body)


def test_a_burst_waits_a_moment_for_room_then_is_refused(settings):
    import asyncio

    settings.KEYFLOW_WEB_MAX_ADMITTING = 2
    settings.KEYFLOW_WEB_ADMIT_WAIT_SECONDS = 0.5

    async def body(s, tick):
        s.send(1), s.send(2), s.send(3)
        await tick()
        assert [s.status(i) for i in (1, 2, 3)] == [None, None, None] and 3 not in s.received
        s.admit(1)  # room: the waiting submission goes in
        await tick()
        assert 3 in s.received and s.status(3) is None
        s.send(4)  # no room comes within the wait
        await asyncio.sleep(0.3)
        assert s.status(4) is None
        await asyncio.sleep(0.4)
        assert s.status(4) == 429 and 4 not in s.received
        for i in (1, 2, 3):
            s.finish(i)
        await tick()
        assert [s.status(i) for i in (1, 2, 3)] == [200, 200, 200]

    in_loop(body)


def test_a_queue_found_full_refuses_its_submissions_before_django(settings, monkeypatch):
    """After a backlog refusal, submissions for that queue are refused at the ASGI layer for
    a moment (no thread, no database); other queues' and idempotent retries go on, and the
    body reaches the application whole."""
    import json
    import time

    from workflows import backpressure

    queue = settings.KEYFLOW_QUEUE_INTERACTIVE
    monkeypatch.setitem(backpressure._refusing, (queue, ""), (time.monotonic() + 5, 7, "Queue full."))
    blocking = json.dumps({"inputs": {}, "user": "u", "response_mode": "blocking"}).encode()
    queued = json.dumps({"inputs": {}, "user": "u", "response_mode": "async"}).encode()

    async def body(s, tick):
        s.send(1, body=blocking), s.send(2, body=b'{"user": "u"}'), s.send(3, body=queued)
        s.send(4, body=blocking, headers=((b"idempotency-key", b"k1"),))
        s.send(5, body=b"not json")
        await tick()
        assert [s.status(i) for i in range(1, 6)] == [429, 429, None, None, None]
        start, content = s.answers[1]
        assert dict(start["headers"])[b"retry-after"] == b"7"
        assert json.loads(content["body"])["message"] == "Queue full."
        assert s.received == {3: queued, 4: blocking, 5: b"not json"}
        for i in (3, 4, 5):
            s.finish(i)
        await tick()

    in_loop(body)


# --- through the Service API of a real web server ------------------------------------------------


@pytest.fixture(scope="module")
def served(django_db_setup, django_db_blocker, tmp_path_factory):
    """A web server with caps of 2 runs (interactive and async), a 1 s blocking timeout and no
    worker; a tenant of its own with a workflow and a chat app."""
    from django.conf import settings
    from django_tenants.utils import tenant_context

    from tenants.services import tenant_provision
    from tests.e2e.conftest import free_port, process_env, web_server_start
    from workflows.models import WorkflowRun

    redis_url = backlog_redis_url(settings.REDIS_URL)
    with django_db_blocker.unblock():
        tenant = tenant_provision(name="Backpressure", slug="bpone", admin_email="admin@bpone.test").tenant
        with tenant_context(tenant):
            apps, _, tokens = make_workspace(tenant)
        env = process_env(REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, CELERY_RESULT_BACKEND=redis_url,
                          KEYFLOW_MAX_BACKLOG="2", KEYFLOW_MAX_BACKLOG_ASYNC="2",
                          KEYFLOW_BACKLOG_TENANT_SHARE="100", KEYFLOW_BLOCKING_TIMEOUT="1")
    web, base_url = web_server_start("web-backpressure", free_port(), env,
                                     tmp_path_factory.mktemp("backpressure"))
    yield {"base_url": base_url, "tenant": tenant, "apps": apps, "tokens": tokens}
    web.stop()
    with django_db_blocker.unblock(), tenant_context(tenant):
        WorkflowRun.objects.all().delete()  # queued runs nobody will take


@pytest.fixture
def api(served, settings):
    """Post to the served tenant's apps, on an empty backlog."""
    import redis

    settings.REDIS_URL = backlog_redis_url(settings.REDIS_URL)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()

    def post(app: str, path: str, body: dict) -> httpx.Response:
        return httpx.post(served["base_url"] + path, json=body, timeout=30,
                          headers={"Authorization": f"Bearer {served['tokens'][app]}"})

    return post


def run(api, mode: str, **extra) -> httpx.Response:
    return api("workflow", "/v1/workflows/run",
               {"inputs": {"text": "hello"}, "response_mode": mode, "user": "client-1", **extra})


def in_served_tenant(served, django_db_blocker, fn):
    from django_tenants.utils import tenant_context

    with django_db_blocker.unblock(), tenant_context(served["tenant"]):
        return fn()


def assert_refused_at_once(response: httpx.Response) -> None:
    assert response.status_code == 429, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"status", "code", "message"}
    assert (body["status"], body["code"]) == (429, "too_many_requests")
    assert 1 <= int(response.headers["Retry-After"]) <= 600
    assert response.elapsed.total_seconds() < 1


@pytest.mark.e2e
def test_over_the_cap_the_service_api_answers_429_with_retry_after_and_stores_nothing(
        served, api, django_db_blocker):
    from workflows.models import Conversation, InlineCredential, WorkflowRun

    def counts():
        return (WorkflowRun.objects.count(), InlineCredential.objects.count(), Conversation.objects.count())

    assert [run(api, "async").status_code for _ in range(2)] == [202, 202]
    before = in_served_tenant(served, django_db_blocker, counts)
    assert_refused_at_once(run(api, "async", credential_overrides={"openai": {"api_key": canary_key()}}))
    assert_refused_at_once(api("chat", "/v1/chat-messages",
                               {"query": "Hi", "inputs": {}, "response_mode": "async", "user": "client-1"}))
    # Blocking runs have a queue of their own: two wait (answered `queued` after the 1 s
    # blocking timeout), the third is refused at once.
    waiting = [run(api, "blocking") for _ in range(2)]
    assert [(r.status_code, r.json()["data"]["status"]) for r in waiting] == [(200, "queued")] * 2
    assert_refused_at_once(run(api, "blocking"))
    assert_refused_at_once(run(api, "streaming"))
    after = in_served_tenant(served, django_db_blocker, counts)
    assert after == (before[0] + 2, before[1], before[2])  # only the two blocking runs


@pytest.mark.e2e
def test_a_run_taken_by_a_worker_or_stopped_frees_a_place_for_the_next_request(
        served, api, django_db_blocker):
    from workflows.backpressure import SHED_SECONDS
    from workflows.services import workflow_run_claim

    accepted = [run(api, "async").json() for _ in range(2)]
    assert_refused_at_once(run(api, "async"))
    in_served_tenant(served, django_db_blocker, lambda: workflow_run_claim(run_id=accepted[0]["workflow_run_id"]))
    # For a moment after a refusal the web process refuses without asking.
    assert_refused_at_once(run(api, "async"))
    time.sleep(SHED_SECONDS)
    assert run(api, "async").status_code == 202
    assert_refused_at_once(run(api, "async"))
    stopped = api("workflow", f"/v1/workflows/tasks/{accepted[1]['task_id']}/stop", {"user": "client-1"})
    assert stopped.json() == {"result": "success"}
    time.sleep(SHED_SECONDS)
    assert run(api, "async").status_code == 202
