"""Tenant-level diagnostics that run on the workers."""

import os
import platform

from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import connection


@shared_task(name="tenants.tenant_probe_task")
def tenant_probe_task() -> dict:
    """Report which schema the worker ran this task in and what it sees there."""
    return {
        "schema": connection.schema_name,
        "python": platform.python_version(),
        "pid": os.getpid(),
        "users": sorted(get_user_model().objects.values_list("username", flat=True)),
    }
