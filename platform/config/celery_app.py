"""The Celery app. Tasks carry their tenant's schema in a header (tenant-schemas-celery)."""

import logging
import os

from celery.signals import worker_init
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

logger = logging.getLogger(__name__)

app = CeleryApp("keyflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _check_before_consuming(**kwargs):
    from django.core.exceptions import ImproperlyConfigured

    from config.startup import process_start_checks

    try:
        process_start_checks()
    except ImproperlyConfigured as exc:
        logger.critical("Worker refuses to start: %s", exc)
        # SystemExit passes through Celery's signal dispatch, which swallows Exceptions.
        raise SystemExit(1) from None
    # Load the provider SDKs once in the parent, so forked children do not pay for the
    # imports on their first run.
    import importlib

    from credentials.providers.registry import provider_registry

    provider_registry()
    for module in ("openai.resources.chat.completions", "openai.resources.models",
                   "anthropic.resources.messages", "anthropic.resources.models"):
        try:  # the SDKs load these lazily on a client's first call
            importlib.import_module(module)
        except ImportError:
            pass
