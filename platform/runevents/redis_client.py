"""The process-wide Redis client for Keyflow's own keys: run events, stop flags, budget
counters, rate limits, cooldowns, locks.

One connection pool per process, made once: a client made per request (as Django's cache
is, once per request thread under ASGI) pays a new connection and its handshake each time.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

_client: redis.Redis | None = None
_client_url = ""
_lock = threading.Lock()


def shared_redis() -> redis.Redis:
    global _client, _client_url
    if _client is None or _client_url != settings.REDIS_URL:
        with _lock:
            if _client is None or _client_url != settings.REDIS_URL:
                # One immediate retry replaces a pooled connection that died with a Redis
                # restart; an unreachable Redis fails fast instead of holding up the caller.
                _client = redis.Redis.from_url(
                    settings.REDIS_URL, health_check_interval=30, socket_connect_timeout=2,
                    socket_timeout=5, retry=Retry(NoBackoff(), 1),
                )
                _client_url = settings.REDIS_URL
    return _client
