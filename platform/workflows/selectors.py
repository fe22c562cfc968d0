"""Reads on apps and runs (current tenant's schema)."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from workflows.errors import RunNotFound
from workflows.models import App, WorkflowRun


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
