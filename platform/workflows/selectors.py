"""Reads on apps and runs (current tenant's schema)."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, Q, QuerySet

from tenants.models import ApiToken
from workflows.errors import AppKeyNotFound, AppNotFound, RunNotFound
from workflows.models import App, AppCredentialBinding, NodeExecution, WorkflowRun


def _uuid_or_none(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def workflow_run_get(*, app: App, run_id=None, task_id=None, user: str | None = None) -> WorkflowRun:
    """A run of this app by run id or task id; anything else (malformed, another app's,
    another tenant's, another end user's when `user` is given) is the same RunNotFound."""
    key = _uuid_or_none(run_id if run_id is not None else task_id)
    if key is None:
        raise RunNotFound()
    lookup = {"pk": key} if run_id is not None else {"task_id": key}
    queryset = WorkflowRun.objects.filter(app=app, **lookup)
    if user is not None:
        queryset = queryset.filter(end_user=user)
    run = queryset.first()
    if run is None:
        raise RunNotFound()
    return run


def workflow_run_list(
    *, app: App | None = None, status: str | None = None, end_user: str | None = None,
    keyword: str | None = None, credential_id=None,
) -> QuerySet[WorkflowRun]:
    queryset = WorkflowRun.objects.all()
    if app is not None:
        queryset = queryset.filter(app=app)
    if status:
        queryset = queryset.filter(status=status)
    if end_user:
        queryset = queryset.filter(end_user=end_user)
    if keyword:
        queryset = queryset.filter(Q(end_user__icontains=keyword) | Q(error__icontains=keyword))
    if credential_id:
        queryset = queryset.filter(node_executions__credential_id=credential_id).distinct()
    return queryset.order_by("-created_at", "-id")


def _bindings_prefetch() -> Prefetch:
    return Prefetch("credential_bindings", AppCredentialBinding.objects.order_by("provider"))


def app_list(*, mode: str | None = None, enabled: bool | None = None) -> QuerySet[App]:
    """The tenant's apps (deleted ones keep their runs for billing but are not listed)."""
    queryset = App.objects.filter(deleted_at__isnull=True).prefetch_related(_bindings_prefetch())
    if mode:
        queryset = queryset.filter(mode=mode)
    if enabled is not None:
        queryset = queryset.filter(enabled=enabled)
    return queryset.order_by("name", "id")


def app_get(*, app_id) -> App:
    """The app with this id in the current tenant; a malformed, foreign, deleted or missing
    id all raise the same AppNotFound."""
    key = _uuid_or_none(app_id)
    app = app_list().filter(pk=key).first() if key else None
    if app is None:
        raise AppNotFound()
    return app


def app_key_list(*, tenant, app: App) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(tenant=tenant, scope=ApiToken.Scope.APP, app_id=app.id).order_by(
        "-created_at", "-id"
    )


def app_key_get(*, tenant, app: App, key_id) -> ApiToken:
    """One of this app's keys; another app's or another tenant's key is AppKeyNotFound."""
    key = _uuid_or_none(key_id)
    token = app_key_list(tenant=tenant, app=app).filter(pk=key).first() if key else None
    if token is None:
        raise AppKeyNotFound()
    return token


def run_get(*, run_id) -> WorkflowRun:
    """A run of the current tenant with its node executions; malformed, foreign and
    missing ids all raise the same RunNotFound."""
    key = _uuid_or_none(run_id)
    run = (
        WorkflowRun.objects.select_related("app")
        .prefetch_related(Prefetch("node_executions", NodeExecution.objects.order_by("index")))
        .filter(pk=key)
        .first()
        if key
        else None
    )
    if run is None:
        raise RunNotFound()
    return run
