"""Liveness (/healthz) and readiness (/readyz), answered on every host before tenant routing.

They sit in front of routing so that a load balancer can probe any host, including one that
serves no tenant, without credentials. Bodies name each dependency and its state, never a
connection string.
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from kombu import Connection as BrokerConnection

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_broker() -> None:
    with BrokerConnection(
        settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT_SECONDS
    ) as broker:
        broker.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


def _check_redis() -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    finally:
        client.close()


READINESS_CHECKS = {
    "database": _check_database,
    "broker": _check_broker,
    "redis": _check_redis,
}


def readiness() -> tuple[bool, dict[str, dict]]:
    results: dict[str, dict] = {}
    ready = True
    for name, check in READINESS_CHECKS.items():
        started = time.monotonic()
        try:
            check()
            results[name] = {"status": "ok"}
        except Exception as exc:  # any failure means not ready; the log says why
            logger.warning("Readiness check %s failed: %s", name, type(exc).__name__)
            results[name] = {"status": "unavailable", "error": type(exc).__name__}
            ready = False
        results[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    return ready, results


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz":
            return JsonResponse({"status": "ok"})
        if request.path == "/readyz":
            ready, checks = readiness()
            return JsonResponse(
                {"status": "ok" if ready else "unavailable", "checks": checks},
                status=200 if ready else 503,
            )
        return self.get_response(request)
