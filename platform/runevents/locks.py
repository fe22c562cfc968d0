"""A Redis lock for periodic work that must not run twice at once (two beats, say)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from runevents.redis_client import shared_redis

_RELEASE = """
if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) end
return 0
"""


def once_per(name: str, *, seconds: int) -> bool:
    """True for the first caller in each `seconds`-long window, False for the others: a
    schedule fired by two beat processes by mistake does its work once."""
    return bool(shared_redis().set(f"kf:once:{name}", "1", nx=True, ex=max(1, seconds)))


@contextmanager
def single_flight(name: str, *, ttl: int) -> Iterator[bool]:
    """Yield True for the one holder of `name` (for at most `ttl` seconds), else False."""
    client = shared_redis()
    key, token = f"kf:lock:{name}", secrets.token_hex(16)
    acquired = bool(client.set(key, token, nx=True, ex=ttl))
    try:
        yield acquired
    finally:
        if acquired:
            client.eval(_RELEASE, 1, key, token)
