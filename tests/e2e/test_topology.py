"""Production topology on one machine: separate worker processes per queue, a beat, and a
broker of their own. Slow background runs never delay interactive ones, and a killed
worker's run is finished by another."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from django_tenants.utils import tenant_context

from devservices.embedded import EmbeddedRedis
from fake_llm.client import key_sha256
from tests.e2e.conftest import (
    ManagedProcess,
    ServiceClient,
    free_port,
    process_env,
    web_server_start,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def worker(name: str, queues: str, env, logs, concurrency: int = 1) -> ManagedProcess:
    process = ManagedProcess(
        name,
        [sys.executable, "-m", "celery", "-A", "config.celery_app", "worker", "--loglevel", "INFO",
         "--queues", queues, "--concurrency", str(concurrency), "--pool", "prefork",
         "--hostname", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
        env, logs,
    )
    process.wait_for_log("ready.")
    return process


@pytest.fixture(scope="module")
def topology(django_db_setup, django_db_blocker, tmp_path_factory, fake_llm):
    """Its own Redis (broker and events), web server, an interactive worker, two background
    workers and a beat, sharing the test database."""
    logs = tmp_path_factory.mktemp("topology")
    redis_server = EmbeddedRedis(logs / "redis", persist=False)
    redis_url = redis_server.start()
    with django_db_blocker.unblock():
        env = process_env(REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, CELERY_RESULT_BACKEND=redis_url,
                          KEYFLOW_SWEEP_SECONDS="2", KEYFLOW_RUN_STALE_SECONDS="4")
    web, web.base_url = web_server_start("web", free_port(), env, logs, wait="/readyz")
    processes = {
        "web": web,
        "interactive": worker("interactive", "interactive", env, logs),
        "background-1": worker("background-1", "background", env, logs),
        "background-2": worker("background-2", "background", env, logs),
    }
    beat = ManagedProcess("beat", [sys.executable, "-m", "celery", "-A", "config.celery_app", "beat",
                                   "--loglevel", "INFO", "--schedule", str(logs / "beat-schedule")], env, logs)
    processes["beat"] = beat
    yield processes
    for process in processes.values():
        process.stop()
    redis_server.stop()


def finished_at(workspace, run_ids, django_db_blocker):
    from workflows.models import WorkflowRun

    with django_db_blocker.unblock(), tenant_context(workspace.tenant):
        return {str(r.id): r for r in WorkflowRun.objects.filter(pk__in=run_ids)}


def wait_finished(service, run_ids, timeout=60):
    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    while pending and time.monotonic() < deadline:
        for run_id in list(pending):
            if service.http.get(f"/v1/workflows/run/{run_id}").json()["status"] not in ("queued", "running"):
                pending.discard(run_id)
        time.sleep(0.2)
    assert not pending, f"runs still unfinished: {pending}"


def test_slow_background_runs_do_not_delay_interactive_ones(topology, workspaces, fake_llm, django_db_blocker):
    one = workspaces["eone"]
    service = ServiceClient(topology["web"].base_url, one.app_keys["summarizer"])
    slow = str(one.credentials["openai_other"].id)
    fake_llm.add_fault(key_sha256=key_sha256(one.keys["openai_other"]), latency_ms=1500)
    try:
        background = [service.run({"text": f"slow {i}"}, mode="async", credential_overrides={"openai": slow})
                      .json()["workflow_run_id"] for i in range(4)]
        interactive = []
        for i in range(3):
            response = service.run({"text": f"fast {i}"})
            assert response.json()["data"]["status"] == "succeeded"
            interactive.append(response.json()["workflow_run_id"])
        wait_finished(service, background)
    finally:
        fake_llm.clear_faults()
    runs = finished_at(one, background + interactive, django_db_blocker)
    last_interactive = max(runs[r].finished_at for r in interactive)
    background_done = sorted(runs[r].finished_at for r in background)
    # Two background workers, four 1.5 s runs: the interactive runs were all answered before
    # the background queue drained, instead of waiting behind it.
    assert last_interactive < background_done[-1]
    assert all(runs[r].claimed_by for r in background)


def test_a_killed_worker_loses_nothing(topology, workspaces, fake_llm, django_db_blocker):
    from workflows.models import WorkflowRun

    one = workspaces["eone"]
    service = ServiceClient(topology["web"].base_url, one.app_keys["summarizer"])
    fake_llm.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), latency_ms=2500, times=1)
    run_id = service.run({"text": "survive a dead machine"}, mode="async").json()["workflow_run_id"]
    claimed_by = ""
    deadline = time.monotonic() + 20
    while not claimed_by and time.monotonic() < deadline:
        with django_db_blocker.unblock(), tenant_context(one.tenant):
            claimed_by = WorkflowRun.objects.get(pk=run_id).claimed_by
        time.sleep(0.05)
    pid = int(claimed_by.rpartition(":")[2])
    victim = next(name for name in ("background-1", "background-2")
                  if pid in _children(topology[name].process.pid))
    os.killpg(topology[victim].process.pid, signal.SIGKILL)  # the whole worker, as a lost machine
    topology[victim].process.wait()
    wait_finished(service, [run_id], timeout=60)
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        run = WorkflowRun.objects.get(pk=run_id)
    assert run.status == "succeeded", run.error
    assert run.claimed_by != claimed_by and run.attempts == 2


def _children(parent: int) -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process(parent).children(recursive=True)}
