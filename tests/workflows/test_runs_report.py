from datetime import timedelta

from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from workflows.models import App, WorkflowRun


def test_runs_report_lists_stale_runs(db, tenant_a, capsys):
    connection.set_tenant(tenant_a)
    app = App.objects.create(name="Report", graph={})
    old = timezone.now() - timedelta(minutes=10)
    stuck = WorkflowRun.objects.create(app=app, response_mode="async", end_user="u",
                                       deadline_at=timezone.now() + timedelta(hours=1))
    WorkflowRun.objects.filter(pk=stuck.pk).update(created_at=old)
    WorkflowRun.objects.create(app=app, response_mode="async", end_user="u", status="succeeded",
                               deadline_at=timezone.now())
    connection.set_schema_to_public()
    call_command("runs_report", tenant="alpha")
    out = capsys.readouterr().out
    assert "alpha: queued 1, succeeded 1; stale 1" in out
    assert str(stuck.pk) in out
    assert "1 tenant(s), 1 stale run(s)" in out
