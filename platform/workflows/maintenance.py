"""The sweeper: no run stays stuck and no one-off key outlives its run."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context

from workflows.models import InlineCredential, WorkflowRun

logger = logging.getLogger(__name__)

# A queued run not picked up for this long is queued again (its message may be lost).
REQUEUE_AFTER_SECONDS = 30


def runs_sweep_tenant() -> dict:
    """In the current schema."""
    from workflows.executor import workflow_run_fail_lost
    from workflows.services import workflow_run_enqueue

    now = timezone.now()
    report = {"requeued": 0, "failed": 0, "inline_keys_destroyed": 0}
    for run in WorkflowRun.objects.filter(
        status=WorkflowRun.Status.QUEUED, created_at__lt=now - timedelta(seconds=REQUEUE_AFTER_SECONDS)
    ).only("id", "deadline_at", "app_id"):
        if run.deadline_at < now:
            report["failed"] += workflow_run_fail_lost(run_id=run.id, reason="never started before its deadline")
        elif workflow_run_enqueue(run=run):
            report["requeued"] += 1
    stale = now - timedelta(seconds=settings.KEYFLOW_RUN_STALE_SECONDS)
    for run in WorkflowRun.objects.filter(status=WorkflowRun.Status.RUNNING).filter(
        heartbeat_at__lt=stale
    ).only("id", "deadline_at", "app_id"):
        # Its worker is gone: another worker takes it over and resumes after the finished
        # nodes, unless the run is past its deadline.
        if run.deadline_at < now:
            report["failed"] += workflow_run_fail_lost(run_id=run.id, reason="its worker was lost")
        elif workflow_run_enqueue(run=run):
            report["requeued"] += 1
    expired, _ = InlineCredential.objects.filter(expires_at__lt=now).delete()
    report["inline_keys_destroyed"] = expired
    return report


def runs_sweep() -> dict:
    from tenants.selectors import tenant_list

    totals: dict[str, int] = {"tenants": 0}
    for tenant in tenant_list():
        if not tenant.is_active:
            continue
        with schema_context(tenant.schema_name):
            for name, count in runs_sweep_tenant().items():
                totals[name] = totals.get(name, 0) + count
        totals["tenants"] += 1
    if any(v for k, v in totals.items() if k != "tenants"):
        logger.info("Run sweep: %s", totals)
    return totals
