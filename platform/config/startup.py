"""Checks every web and worker process runs before it serves anything."""

from __future__ import annotations

import logging

from django.db import connection

logger = logging.getLogger(__name__)


def process_start_checks() -> None:
    """Raise ImproperlyConfigured if this process must not serve (e.g. wrong encryption key)."""
    from credentials.encryption import encryption_keys_verify

    encryption_keys_verify()
    # Forked children (Celery prefork) must not share the parent's connections or pool.
    connection.close()
    connection.close_pool()


def web_process_started() -> None:
    process_start_checks()
    # Import every view now rather than on the first request (Django resolves URL confs
    # lazily, and the API modules pull in DRF, the schema generator and the SDKs).
    from django.conf import settings
    from django.urls import get_resolver

    for urlconf in (settings.ROOT_URLCONF, settings.PUBLIC_SCHEMA_URLCONF):
        get_resolver(urlconf).url_patterns  # noqa: B018 - the import is the point
    # The provider plugins (and their SDKs) too: the first run would otherwise wait ~1 s.
    from credentials.providers.registry import provider_registry

    provider_registry()
