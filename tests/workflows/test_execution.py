"""How a run is stored and told while it executes (in this process, against the fake provider).

Asserts on what others observe: node records and run totals in the database, the events in
the run's Redis stream, the provider's call record, and how many SQL statements a one-step
run costs (a regression guard for the per-run cost measured by `bench/run.py resolution`).
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credentials.services import credential_create
from runevents.streams import stream_key
from tests.conftest import canary_key
from workflows.examples import SUMMARIZER
from workflows.executor import workflow_run_execute
from workflows.models import NodeExecution, WorkflowRun
from workflows.services import (
    app_create,
    app_credential_bind,
    app_delete,
    app_key_issue,
    workflow_run_claim,
    workflow_run_submit,
)


@pytest.fixture
def summarizer(django_db_blocker, tenant_a, fake, monkeypatch):
    """An app of its own in tenant alpha, without a test transaction: the executor hands its
    connection back to the pool as a worker does. Runs are executed here by the test, not
    queued (a session's end-to-end worker would take them)."""
    monkeypatch.setattr("workflows.services.workflow_run_enqueue", lambda run: True)
    with django_db_blocker.unblock():
        connection.set_tenant(tenant_a)
        credential = credential_create(provider="openai", name="Default", secrets={"api_key": canary_key()},
                                       config={"base_url": fake.url + "/v1"})
        app = app_create(name="Summarizer", graph=copy.deepcopy(SUMMARIZER))
        app_credential_bind(app=app, provider="openai", credential=credential)
        token = app_key_issue(tenant=tenant_a, app=app).record
        yield app, token
        connection.set_tenant(tenant_a)
        app_delete(tenant=tenant_a, app=app)
        connection.set_schema_to_public()


def submit(app, token, mode="blocking") -> WorkflowRun:
    return workflow_run_submit(app=app, token=token, inputs={"text": "Hello."}, user="u1",
                               response_mode=mode).run


def events(run) -> list[str]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    entries = client.xrange(stream_key(connection.schema_name, run.pk))
    return [json.loads(fields[b"e"])["event"] for _, fields in entries]


def statements(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries
            if not q["sql"].upper().startswith(("SET ", "BEGIN", "COMMIT"))]


def transactions(captured) -> list[list[str]]:
    """The statements of each commit: a BEGIN … COMMIT block, or one autocommitted statement."""
    blocks, current = [], None
    for sql in (q["sql"] for q in captured.captured_queries):
        if sql == "BEGIN":
            current = []
        elif sql == "COMMIT":
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(sql)
        elif not sql.startswith("SET search_path"):
            blocks.append([sql])
    return blocks


def test_a_one_step_run_costs_few_statements(summarizer, fake):
    app, token = summarizer
    workflow_run_execute(run_id=submit(app, token).pk)  # loads the tenant's budget index once
    with CaptureQueriesContext(connection) as submitted:
        run = submit(app, token)
    with CaptureQueriesContext(connection) as executed:
        workflow_run_execute(run_id=run.pk)
    # Submission: the plan (one query for overrides, the app's bindings and defaults) and
    # the run's INSERT.
    assert len(statements(submitted)) == 2, [s[:80] for s in statements(submitted)]
    # Execution: claim + load, start and LLM records, credential, LLM result, end record,
    # run result; the credential's last_used_at at most once a minute per process.
    assert len(statements(executed)) <= 8, [s[:80] for s in statements(executed)]
    run.refresh_from_db()
    assert run.status == "succeeded" and run.total_steps == 3
    assert len(fake.calls()) == 2


def test_nodes_and_totals_are_all_stored(summarizer, fake):
    app, token = summarizer
    run = submit(app, token)
    workflow_run_execute(run_id=run.pk)
    run.refresh_from_db()
    nodes = list(NodeExecution.objects.filter(run=run).order_by("index"))
    assert [(n.node_id, n.status, n.index) for n in nodes] == [
        ("start", "succeeded", 1), ("summarize", "succeeded", 2), ("end", "succeeded", 3)]
    llm = nodes[1]
    assert llm.total_tokens > 0 and llm.credential_source == "app"
    assert (run.prompt_tokens, run.completion_tokens, run.total_tokens, run.total_price) == (
        llm.prompt_tokens, llm.completion_tokens, llm.total_tokens, llm.total_price)
    assert run.outputs == {"summary": nodes[2].outputs["summary"]} and run.outputs["summary"]


def test_a_blocking_run_publishes_only_its_end_a_streaming_run_everything(summarizer):
    app, token = summarizer
    blocking, streaming = submit(app, token), submit(app, token, mode="streaming")
    workflow_run_execute(run_id=blocking.pk)
    workflow_run_execute(run_id=streaming.pk)
    assert events(blocking) == ["workflow_finished"]
    told = events(streaming)
    assert told[0] == "workflow_started" and told[-1] == "workflow_finished"
    assert told.count("node_started") == told.count("node_finished") == 3
    assert "text_chunk" in told


def test_a_resumed_run_reuses_finished_nodes_and_rewrites_the_interrupted_one(summarizer, fake):
    app, token = summarizer
    run = submit(app, token)
    # A first attempt that stored its start node and died inside the LLM call.
    claimed = workflow_run_claim(run_id=run.pk)
    start = NodeExecution.objects.create(run=claimed, node_id="start", node_type="start", index=1,
                                         status="succeeded", outputs={"text": "Hello."})
    interrupted = NodeExecution.objects.create(run=claimed, node_id="summarize", node_type="llm",
                                               index=2, status="running")
    WorkflowRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.KEYFLOW_RUN_STALE_SECONDS + 5),
        claimed_by="gone-host:1")
    workflow_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.attempts, run.total_steps) == ("succeeded", 2, 3)
    nodes = {n.node_id: n for n in NodeExecution.objects.filter(run=run)}
    assert set(nodes) == {"start", "summarize", "end"}
    assert nodes["start"].id == start.id and nodes["start"].created_at == start.created_at
    assert nodes["summarize"].id == interrupted.id and nodes["summarize"].status == "succeeded"
    assert run.total_tokens == nodes["summarize"].total_tokens > 0
    assert len(fake.calls()) == 1  # the start node is not re-run; one paid call in this attempt


def test_a_blocking_body_built_from_the_final_event_is_the_stored_runs(summarizer):
    """The waiting request answers from the final event instead of reading the run again."""
    from workflows import presenters

    app, token = summarizer
    run = submit(app, token)
    workflow_run_execute(run_id=run.pk)
    client = redis.Redis.from_url(settings.REDIS_URL)
    [(_, fields)] = client.xrange(stream_key(connection.schema_name, run.pk))
    stored = WorkflowRun.objects.get(pk=run.pk)
    assert presenters.run_blocking_body_from_event(json.loads(fields[b"e"])) == presenters.run_blocking_body(stored)
    assert json.loads(fields[b"p"]) == {"provider_time": stored.provider_time} and stored.provider_time > 0


def test_what_was_paid_for_and_the_result_are_committed_durably(summarizer):
    """Progress (the claim, node records before the LLM call) may commit without waiting for
    the disk; the paid step's result and the run's end may not."""
    app, token = summarizer
    run = submit(app, token)
    with CaptureQueriesContext(connection) as executed:
        workflow_run_execute(run_id=run.pk)
    relaxed = [block for block in transactions(executed) if "SET LOCAL synchronous_commit TO OFF" in block]
    durable = [block for block in transactions(executed) if block not in relaxed]
    assert any('UPDATE "workflows_workflowrun" SET "status" = \'running\'' in sql for b in relaxed for sql in b)
    paid = [sql for b in durable for sql in b
            if sql.startswith('UPDATE "workflows_nodeexecution"') and "'succeeded'" in sql and "'llm'" in sql]
    ended = [sql for b in durable for sql in b
             if sql.startswith('UPDATE "workflows_workflowrun" SET "status" = \'succeeded\'')]
    assert len(paid) == 1 and len(ended) == 1
    assert not any("'succeeded'" in sql for b in relaxed for sql in b if "workflows_nodeexecution" in sql
                   and "'llm'" in sql)
