"""Writes on apps and runs: app management, run submission, claiming and finishing."""

from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from budgets.enforcement import budget_admit
from credentials.models import Credential
from credentials.providers.registry import provider_registry
from credentials.resolution import SOURCE_INLINE, OverridePolicy, credential_plan
from runevents import streams
from tenants.models import ApiToken
from tenants.services import api_token_issue
from workflows.backpressure import backlog_admit, backlog_release, run_queue
from workflows.commits import progress_commit
from workflows.errors import AppDisabled, AppModeMismatch, GraphInvalid, InvalidInput
from workflows.graph import GraphError, InputError, parse_graph, validate_inputs
from workflows.models import App, AppCredentialBinding, InlineCredential, WorkflowRun

logger = logging.getLogger(__name__)


def provider_models() -> dict[str, None]:
    """Providers a graph may name. Any model name is accepted: OpenAI-compatible endpoints
    serve models no list can know."""
    return dict.fromkeys(provider_registry().ids())


def graph_check(graph: object):
    """The parsed graph, or GraphInvalid with every problem, each naming its node."""
    try:
        return parse_graph(graph, providers=provider_models())
    except GraphError as exc:
        raise GraphInvalid(str(exc)) from None


def _app_graph(*, mode: str, graph: dict | None, model_config: dict | None) -> dict:
    """The graph an app runs: a workflow's own (validated), or the one a chat or completion
    app's model configuration compiles into."""
    from workflows.chat import compile_model_config

    if mode == App.Mode.WORKFLOW:
        graph_check(graph or {})
        return graph or {}
    if mode not in App.Mode.values:
        raise InvalidInput(f"mode must be one of {', '.join(App.Mode.values)}.")
    return compile_model_config(mode=mode, config=model_config or {})


@transaction.atomic
def app_create(*, name: str, mode: str = App.Mode.WORKFLOW, description: str = "",
               graph: dict | None = None, model_config: dict | None = None,
               enabled: bool = True) -> App:
    """Create an app; what it runs must validate before it is saved."""
    graph = _app_graph(mode=mode, graph=graph, model_config=model_config)
    return App.objects.create(name=name, mode=mode, description=description, graph=graph,
                              model_config=model_config or {}, enabled=enabled)


@transaction.atomic
def app_update(*, app: App, **changes) -> App:
    for name, value in changes.items():
        setattr(app, name, value)
    if {"graph", "model_config", "mode"} & set(changes):
        app.graph = _app_graph(mode=app.mode, graph=app.graph, model_config=app.model_config)
    app.save()
    return app


@transaction.atomic
def app_credential_bind(*, app: App, provider: str, credential: Credential | None) -> None:
    """Bind (or with None, unbind) the credential the app uses for a provider."""
    AppCredentialBinding.objects.filter(app=app, provider=provider).delete()
    if credential is not None:
        if credential.provider != provider:
            raise InvalidInput(f"Credential {credential.id} is not a {provider} credential.")
        AppCredentialBinding.objects.create(app=app, provider=provider, credential=credential)


@transaction.atomic
def app_delete(*, tenant, app: App) -> None:
    """Retire the app: its keys are revoked and it stops serving, while its runs stay for
    usage and billing reports."""
    from tenants.services import api_token_revoke

    for token in ApiToken.objects.filter(tenant=tenant, scope=ApiToken.Scope.APP, app_id=app.id,
                                         revoked_at__isnull=True):
        api_token_revoke(token=token)
    app.enabled = False
    app.deleted_at = timezone.now()
    app.save(update_fields=["enabled", "deleted_at", "updated_at"])


@transaction.atomic
def app_webhook_secret_rotate(*, app: App) -> str:
    """A new webhook secret for the app, returned once; deliveries sign with it from now on."""
    from workflows.models import new_webhook_secret

    app.webhook_secret = new_webhook_secret()
    app.save(update_fields=["webhook_secret", "updated_at"])
    return app.webhook_secret


def app_key_issue(*, tenant, app: App, name: str = "", policy: OverridePolicy | None = None):
    """An app-… Service API key for this app of `tenant` (shown once)."""
    return api_token_issue(
        tenant=tenant, scope=ApiToken.Scope.APP, app_id=app.id, name=name,
        policy=(policy or OverridePolicy()).to_dict(),
    )


@dataclass(frozen=True)
class Submission:
    run: WorkflowRun
    created: bool


def workflow_run_submit(
    *,
    app: App,
    token: ApiToken,
    inputs: object,
    user: str,
    response_mode: str,
    credential_overrides: object = None,
    idempotency_key: str = "",
    expected_mode: str = App.Mode.WORKFLOW,
    conversation=None,
    callback_url: str = "",
    on_created=None,
) -> Submission:
    """Validate a run request completely, store the run (queued) and queue it on commit.

    Nothing is stored or queued when anything is wrong with the request.
    """
    if not app.enabled:
        raise AppDisabled()
    if app.mode != expected_mode:
        raise AppModeMismatch()
    if idempotency_key:
        existing = WorkflowRun.objects.filter(
            app=app, api_token_id=token.id, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            return Submission(run=existing, created=False)
    if callback_url:
        from webhooks.services import callback_url_check

        callback_url = callback_url_check(callback_url)
    graph = graph_check(app.graph)
    try:
        clean_inputs = validate_inputs(graph, inputs)
    except InputError as exc:
        raise InvalidInput(str(exc)) from None
    if len(json.dumps(clean_inputs)) > settings.KEYFLOW_MAX_INPUT_BYTES:
        raise InvalidInput(f"inputs are larger than {settings.KEYFLOW_MAX_INPUT_BYTES} bytes.")
    plan = credential_plan(
        providers_used=graph.providers_used(),
        overrides=credential_overrides,
        user=user,
        policy=OverridePolicy.from_dict(token.policy),
        app_id=app.id,
    )
    budget_admit(app=app, token=token, user=user, plan=plan)
    run_id = backlog_admit(response_mode=response_mode)  # 429 when too many runs wait
    deadline = timezone.now() + timedelta(seconds=settings.KEYFLOW_RUN_DEADLINE_SECONDS)
    # One-off keys get their ids first, so the run is stored complete in one INSERT.
    inlines = {
        provider: InlineCredential(
            provider=provider, secrets=json.dumps(dict(planned.inline.secrets)),
            config=dict(planned.inline.config), fingerprint=planned.fingerprint,
            expires_at=deadline,
        )
        for provider, planned in plan.items() if planned.source == SOURCE_INLINE
    }
    # A plain run is one INSERT (autocommit, queued at once); anything stored beside it
    # goes in one transaction with it and is queued on commit.
    several_writes = bool(inlines) or conversation is not None or on_created is not None
    try:
        with transaction.atomic() if several_writes else nullcontext():
            if conversation is not None and conversation._state.adding:
                conversation.save()
            run = WorkflowRun.objects.create(
                id=run_id, app=app, graph=app.graph, response_mode=response_mode, end_user=user,
                inputs=clean_inputs, api_token_id=token.id, idempotency_key=idempotency_key,
                deadline_at=deadline, conversation=conversation, callback_url=callback_url,
                credential_plan={
                    provider: planned.to_plan(str(inlines[provider].id) if provider in inlines else None)
                    for provider, planned in plan.items()
                },
            )
            for inline in inlines.values():
                inline.run = run
            InlineCredential.objects.bulk_create(inlines.values())
            if on_created is not None:
                on_created(run)
            # The view reads run.enqueued: a blocking or streaming client whose run could
            # not be queued is refused (503) rather than left waiting on it.
            run.enqueued = None
            transaction.on_commit(lambda: setattr(run, "enqueued", workflow_run_enqueue(run=run)))
    except IntegrityError:
        backlog_release(run_id=run_id)
        existing = WorkflowRun.objects.filter(
            app=app, api_token_id=token.id, idempotency_key=idempotency_key
        ).first()
        if idempotency_key and existing is not None:
            return Submission(run=existing, created=False)
        raise
    return Submission(run=run, created=True)


def workflow_run_enqueue(*, run: WorkflowRun) -> bool:
    """Hand the run to the workers. If the broker is down the run stays queued and the
    sweeper queues it again later: it is accepted, never lost."""
    from workflows.tasks import workflow_run_execute_task

    queue = run_queue(run.response_mode)
    try:
        workflow_run_execute_task.apply_async(
            args=[str(run.id)],
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
        return True
    except Exception:  # broker unreachable: the sweeper retries
        logger.exception("Could not queue run %s now; the sweeper will queue it again", run.id)
        return False


def workflow_run_refuse_unqueued(*, run_id) -> None:
    """Fail a run the broker could not take, whose client is told so (503): it must not run
    later behind that client's back. Touches only the database (Redis may be down)."""
    from workflows.models import Message

    now = timezone.now()
    updated = WorkflowRun.objects.filter(pk=run_id, status=WorkflowRun.Status.QUEUED).update(
        status=WorkflowRun.Status.FAILED, error="Not queued: the broker was unreachable.",
        error_code="not_queued", finished_at=now,
    )
    if updated:
        Message.objects.filter(run_id=run_id).update(status=WorkflowRun.Status.FAILED,
                                                     error="Not queued: the broker was unreachable.")
        inline_credentials_destroy(run_id=run_id)
        backlog_release(run_id=run_id)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _claimed_process_is_gone(claimed_by: str) -> bool:
    host, _, pid = claimed_by.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not os.path.exists(f"/proc/{pid}")


def workflow_run_claim(*, run_id) -> WorkflowRun | None:
    """Take the run for this worker process, atomically. None when there is nothing to do:
    the run is finished, or another live worker has it.

    A run left `running` by a worker that died (re-delivered after a crash) is claimed
    again when its process is known to be gone or it stopped reporting for
    KEYFLOW_RUN_STALE_SECONDS; the executor then resumes after its finished nodes.
    """
    now = timezone.now()
    me = worker_identity()
    with progress_commit():  # made durable by the run's first durable write
        claimed = WorkflowRun.objects.filter(pk=run_id, status=WorkflowRun.Status.QUEUED).update(
            status=WorkflowRun.Status.RUNNING, claimed_by=me, heartbeat_at=now, started_at=now,
            attempts=F("attempts") + 1,
        )
    backlog_release(run_id=run_id)
    if not claimed:
        run = WorkflowRun.objects.filter(pk=run_id).first()
        if run is None or run.status != WorkflowRun.Status.RUNNING:
            return None
        stale = run.heartbeat_at is None or (
            now - run.heartbeat_at > timedelta(seconds=settings.KEYFLOW_RUN_STALE_SECONDS)
        )
        if not (stale or _claimed_process_is_gone(run.claimed_by)):
            return None
        claimed = WorkflowRun.objects.filter(
            pk=run_id, status=WorkflowRun.Status.RUNNING, claimed_by=run.claimed_by
        ).update(claimed_by=me, heartbeat_at=now, attempts=F("attempts") + 1)
        if not claimed:
            return None
        logger.warning("Run %s taken over from lost worker %s", run_id, run.claimed_by)
    return WorkflowRun.objects.select_related("app").get(pk=run_id)


def workflow_run_heartbeat(*, run: WorkflowRun) -> None:
    WorkflowRun.objects.filter(pk=run.pk, claimed_by=run.claimed_by).update(heartbeat_at=timezone.now())


def workflow_run_request_stop(*, run: WorkflowRun) -> None:
    """Ask the run to stop; the worker stops at its next node or stream chunk."""
    if run.is_finished:
        return
    from workflows.events import events_for
    from workflows.executor import run_ended

    WorkflowRun.objects.filter(pk=run.pk).update(stop_requested=True)
    streams.request_stop(connection.schema_name, run.pk)
    # A run still waiting in the queue stops at once.
    if WorkflowRun.objects.filter(pk=run.pk, status=WorkflowRun.Status.QUEUED).update(
        status=WorkflowRun.Status.STOPPED, finished_at=timezone.now(), error="Stopped before it started."
    ):
        run.refresh_from_db()
        run_ended(run, events_for(run))
        inline_credentials_destroy(run_id=run.pk)
        backlog_release(run_id=run.pk)


def inline_credentials_destroy(*, run_id) -> int:
    deleted, _ = InlineCredential.objects.filter(run_id=run_id).delete()
    return deleted
