"""Checks every web and worker process runs before it serves anything."""

from __future__ import annotations

import logging

from django.db import connection

logger = logging.getLogger(__name__)


def process_start_checks() -> None:
    """Raise ImproperlyConfigured if this process must not serve (e.g. wrong encryption key)."""
    from credentials.encryption import encryption_keys_verify

    encryption_keys_verify()
    # Forked children (Celery prefork, gunicorn) must not share the parent's connection.
    connection.close()


def web_process_started() -> None:
    process_start_checks()
