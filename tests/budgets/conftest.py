"""Budget fixtures: tenant alpha, fresh budget state in Redis, and recorded LLM steps."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import canary_key


@pytest.fixture(autouse=True)
def budget_redis():
    """No budget counters or index left over from another test (the database rolls back,
    Redis does not)."""
    from budgets.counters import redis_client

    client = redis_client()
    for key in client.scan_iter(match="kf:*:budget*", count=1000):
        client.delete(key)
    return client


@pytest.fixture
def alpha(db, tenant_a):
    connection.set_tenant(tenant_a)
    yield tenant_a
    connection.set_schema_to_public()


@pytest.fixture
def make_credential(alpha):
    from credentials.services import credential_create

    def make(**values):
        values = {"provider": "openai", "name": "Team key", "secrets": {"api_key": canary_key()},
                  "config": {"base_url": "http://127.0.0.1:9/v1"}, **values}
        return credential_create(**values)

    return make


@pytest.fixture
def credential(make_credential):
    return make_credential()


@pytest.fixture
def app(alpha):
    from workflows.examples import SUMMARIZER
    from workflows.models import App

    return App.objects.create(name="Summarizer", graph=copy.deepcopy(SUMMARIZER))


@pytest.fixture
def app_key(alpha, app):
    from tenants.models import ApiToken
    from tenants.services import api_token_issue

    return api_token_issue(tenant=alpha, scope=ApiToken.Scope.APP, app_id=app.id).record


def planned(credential=None, *, source="default"):
    """A credential plan as credential_plan makes it (for one openai step)."""
    from credentials.resolution import PlannedCredential

    if credential is None:
        return {"openai": PlannedCredential(provider="openai", source="inline", credential_id=None,
                                            fingerprint="f" * 64)}
    return {"openai": PlannedCredential(provider="openai", source=source,
                                        credential_id=str(credential.id),
                                        fingerprint=credential.fingerprint)}


@pytest.fixture
def record_step(alpha, app):
    """Store a run with one LLM step paid by `credential` (None: a one-off key), as the
    executor does, and count it toward budgets. Returns the NodeExecution."""
    from budgets.accounting import budget_spend
    from workflows.models import NodeExecution, WorkflowRun

    def record(credential, *, tokens: int, price: str = "0", user: str = "user-1", app_key=None,
               created_at: datetime | None = None, count: bool = True, now: datetime | None = None):
        created_at = created_at or timezone.now()
        run = WorkflowRun.objects.create(
            app=app, response_mode="blocking", end_user=user, status="succeeded",
            deadline_at=created_at + timedelta(minutes=5), api_token_id=app_key.id if app_key else None,
        )
        WorkflowRun.objects.filter(pk=run.pk).update(created_at=created_at)
        run.refresh_from_db()
        prompt = tokens // 2
        execution = NodeExecution.objects.create(
            run=run, node_id="summarize", node_type="llm", index=2, status="succeeded",
            provider="openai", model="gpt-4o-mini",
            credential_id=credential.id if credential else None,
            credential_source="default" if credential else "inline",
            credential_fingerprint=credential.fingerprint if credential else "f" * 64,
            prompt_tokens=prompt, completion_tokens=tokens - prompt, total_tokens=tokens,
            total_price=Decimal(price),
        )
        if count:
            budget_spend(run=run, execution=execution, now=now)
        return execution

    return record


class RoundTrips:
    """Counts Redis round trips (a pipeline is one) and what they sent."""

    def __init__(self):
        self.count = 0

    def __enter__(self):
        import redis.connection

        self._original = redis.connection.AbstractConnection.send_packed_command
        counter = self

        def counting(connection, command, check_health=True):
            counter.count += 1
            return counter._original(connection, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counting
        return self

    def __exit__(self, *exc):
        import redis.connection

        redis.connection.AbstractConnection.send_packed_command = self._original


@pytest.fixture
def redis_round_trips():
    return RoundTrips
