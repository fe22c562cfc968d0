"""Per-token rate limits of the Service API (app-…) and the management API (kf-…).

Each token may make `KEYFLOW_API_RATE_LIMIT_PER_MINUTE` requests a minute; a token's own
`policy["rate_limit_per_minute"]` (a positive integer) replaces that default for it. Over
the limit a request answers 429 `too_many_requests` with `Retry-After`, as Dify does.

Counts are fixed one-minute windows in Redis, one atomic INCR per request (with its expiry,
in the same round trip), so every web process sees the same count and concurrent requests
cannot both slip under the limit. Admin sessions using the management API are not limited
here: the limit is per key.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework.throttling import BaseThrottle

from api.auth import ApiClient
from runevents.redis_client import shared_redis

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
POLICY_FIELD = "rate_limit_per_minute"


def token_rate_limit(token) -> int:
    """Requests a minute this token may make: its policy's limit, else the default."""
    policy = token.policy if isinstance(token.policy, dict) else {}
    value = policy.get(POLICY_FIELD)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return settings.KEYFLOW_API_RATE_LIMIT_PER_MINUTE


class ApiTokenRateThrottle(BaseThrottle):
    """DRF throttle keyed by the authenticated token's id (sync: adrf's async views call
    sync throttles too, from the thread their `initial()` runs on)."""

    def allow_request(self, request, view) -> bool:
        user = getattr(request, "user", None)
        if not isinstance(user, ApiClient):
            return True
        limit = token_rate_limit(user.token)
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        self.wait_seconds = (window + 1) * WINDOW_SECONDS - now
        key = f"throttle:token:{user.token.pk}:{window}"
        try:
            # INCR is atomic; the expiry is set by whichever request creates the counter.
            pipe = shared_redis().pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS * 2, nx=True)
            count, _ = pipe.execute()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Redis unreachable: let the request through rather than refuse every client;
            # the log says so.
            logger.warning("Rate limit not checked for token %s…: %s", user.token.hint,
                           type(exc).__name__)
            return True
        return count <= limit

    def wait(self) -> float | None:
        return max(1.0, self.wait_seconds)
