"""Publishing and reading run events (Redis Streams), and the stop flag of a run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping

import redis.asyncio as aredis
from django.conf import settings

from runevents.redis_client import shared_redis

STREAM_MAXLEN = 10_000
FINAL_EVENTS = frozenset({"workflow_finished", "message_end", "error"})

_async_clients: dict[int, aredis.Redis] = {}
_client = shared_redis


def _async_client() -> aredis.Redis:
    import asyncio

    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        # Every waiting client (blocking run, stream) holds one connection in XREAD BLOCK;
        # beyond the cap, waiters queue for a connection instead of failing.
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=settings.KEYFLOW_REDIS_WAITERS_MAX, timeout=30,
            health_check_interval=30,
        )
        client = aredis.Redis(connection_pool=pool)
        _async_clients[loop_id] = client
    return client


def stream_key(schema: str, run_id) -> str:
    return f"kf:{schema}:run:{run_id}:events"


def stop_key(schema: str, run_id) -> str:
    return f"kf:{schema}:run:{run_id}:stop"


def publish(schema: str, run_id, event: Mapping, *, first: bool = True, final: bool = True,
            private: Mapping | None = None) -> None:
    """Append an event to the run's stream, kept KEYFLOW_RUN_EVENTS_TTL after the run's
    first and its final event (the TTL outlasts any run, so the events in between, e.g. text
    chunks, skip the EXPIRE: one Redis command each). `private` travels beside the event
    for Keyflow's own readers (`follow(..., private=True)`) and is never relayed."""
    key = stream_key(schema, run_id)
    data = {"e": json.dumps(event, default=str)}
    if private:
        data["p"] = json.dumps(private, default=str)
    if not (first or final):
        _client().xadd(key, data, maxlen=STREAM_MAXLEN, approximate=True)
        return
    pipe = _client().pipeline(transaction=False)
    pipe.xadd(key, data, maxlen=STREAM_MAXLEN, approximate=True)
    pipe.expire(key, settings.KEYFLOW_RUN_EVENTS_TTL)
    pipe.execute()


def request_stop(schema: str, run_id) -> None:
    _client().set(stop_key(schema, run_id), "1", ex=settings.KEYFLOW_RUN_EVENTS_TTL)


def stop_requested(schema: str, run_id) -> bool:
    return bool(_client().exists(stop_key(schema, run_id)))


def delete(schema: str, run_id) -> None:
    _client().delete(stream_key(schema, run_id), stop_key(schema, run_id))


async def follow(
    schema: str, run_id, *, block_ms: int, last_id: str = "0", private: bool = False
) -> AsyncIterator[dict | tuple[dict, dict] | None]:
    """Yield the run's events from the start (with `private`, as (event, private fields));
    yield None after each idle `block_ms` (the caller sends a ping or gives up). Ends after
    a final event."""
    key = stream_key(schema, run_id)
    client = _async_client()
    while True:
        answer = await client.xread({key: last_id}, block=block_ms, count=100)
        if not answer:
            yield None
            continue
        for entry_id, fields in answer[0][1]:
            last_id = entry_id
            event = json.loads(fields[b"e"])
            yield (event, json.loads(fields.get(b"p") or b"{}")) if private else event
            if event.get("event") in FINAL_EVENTS and event.get("final", True):
                return
