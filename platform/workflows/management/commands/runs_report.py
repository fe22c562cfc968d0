from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.models import Count
from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.selectors import tenant_list
from workflows.maintenance import REQUEUE_AFTER_SECONDS, runs_sweep
from workflows.models import WorkflowRun


class Command(BaseCommand):
    help = "Runs by status per tenant, and the stale ones (queued too long, worker silent)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant (slug).")
        parser.add_argument("--sweep", action="store_true", help="Also sweep now (re-queue or fail stale runs).")

    def handle(self, *args, tenant=None, sweep=False, **options):
        tenants = [t for t in tenant_list() if tenant in (None, t.slug)]
        now = timezone.now()
        stale_heartbeat = now - timedelta(seconds=settings.KEYFLOW_RUN_STALE_SECONDS)
        stale_queue = now - timedelta(seconds=REQUEUE_AFTER_SECONDS)
        total_stale = 0
        for position, record in enumerate(tenants, start=1):
            with schema_context(record.schema_name):
                counts = dict(WorkflowRun.objects.values_list("status").annotate(n=Count("id")))
                stale = list(
                    WorkflowRun.objects.filter(status=WorkflowRun.Status.QUEUED, created_at__lt=stale_queue)
                    .union(WorkflowRun.objects.filter(status=WorkflowRun.Status.RUNNING,
                                                      heartbeat_at__lt=stale_heartbeat))
                    .values_list("id", "status", "created_at", "claimed_by")
                )
            total_stale += len(stale)
            summary = ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "no runs"
            self.stdout.write(f"[{position}/{len(tenants)}] {record.slug}: {summary}; stale {len(stale)}")
            for run_id, status, created_at, claimed_by in stale:
                self.stdout.write(f"    {run_id} {status} since {created_at:%Y-%m-%d %H:%M:%S} {claimed_by}")
        self.stdout.write(f"{len(tenants)} tenant(s), {total_stale} stale run(s)")
        if sweep:
            self.stdout.write(f"Sweep: {runs_sweep()}")
