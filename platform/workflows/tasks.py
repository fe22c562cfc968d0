"""Celery tasks: take ids only, run in the tenant's schema (tenant-schemas-celery), call
one service each."""

from celery import shared_task

from workflows.executor import workflow_run_execute
from workflows.maintenance import runs_sweep


@shared_task(name="workflows.workflow_run_execute_task", acks_late=True, ignore_result=True)
def workflow_run_execute_task(run_id: str) -> None:
    workflow_run_execute(run_id=run_id)


@shared_task(name="workflows.runs_sweep_task")
def runs_sweep_task() -> dict:
    """Across all tenants: re-queue runs stuck in the queue, fail runs whose worker was lost,
    destroy expired one-off keys. Two beat processes started by mistake sweep once: the
    sweep holds a lock in Redis."""
    from django.conf import settings

    from runevents.locks import once_per, single_flight

    # Once per schedule interval, and never two at once however many beats fire it.
    if not once_per("runs-sweep", seconds=max(1, settings.KEYFLOW_SWEEP_SECONDS - 1)):
        return {"skipped": "already swept in this interval"}
    with single_flight("runs-sweep", ttl=120) as acquired:
        if not acquired:
            return {"skipped": "another sweep is running"}
        return runs_sweep()
