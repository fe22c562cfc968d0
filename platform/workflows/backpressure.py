"""Admission control of run submissions: a bounded backlog per queue, and a share of it per
tenant.

A run counts in the backlog of its queue (`interactive`: blocking and streaming runs;
`background`: async runs) from its admission, just before it is stored, until a worker takes
it (`workflow_run_claim`), or it is stopped or refused before that. A submission that finds
the backlog full (KEYFLOW_MAX_BACKLOG, KEYFLOW_MAX_BACKLOG_ASYNC), or its tenant's part of it
at the tenant's share (KEYFLOW_BACKLOG_TENANT_SHARE percent), is refused at once with 429
`too_many_requests` and a Retry-After, and nothing is stored. An unbounded queue under
overload makes every waiting client time out; a bounded one keeps the runs it accepts short
of their clients' timeouts, and tells the others when to come back. The share keeps one
tenant's burst from filling the queue for everyone.

In Redis, per queue: a sorted set of the admitted runs' ids scored by admission time, the
same per tenant, and the runs taken in the last DRAIN_WINDOW_SECONDS (the drain rate behind
Retry-After). Admission is one Lua script, so one round trip, and concurrent web processes
cannot overshoot the cap between them. A run that was admitted but never taken (its web
process died before storing it, or its claim could not reach Redis) stops counting at the
run deadline, when the sweeper would fail it anyway.

With Redis unreachable, runs are admitted untracked and submission goes on as before (a
blocking run whose broker is unreachable is then refused with 503; an async one waits for
the sweeper).

The web tier can saturate before the workers do: each request needs database work (its
key, the run) on a thread of its own and a connection from a small pool, and an overloaded
web process queues requests there for seconds before any admission is asked. So there are
two cheaper refusals in front of the backlog's: `SubmissionShed`, an ASGI wrapper, refuses
a submission before Django sees it when this process already has KEYFLOW_WEB_MAX_ADMITTING
submissions on their way to admission (each app key at most its share of them); and after
a backlog refusal the process refuses the same queue for SHED_SECONDS without asking Redis
(`backlog_shed`, called by the views before any database work).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import logging
import math
import time
import uuid

import redis
from django.conf import settings
from django.db import connection

from api.errors import ApiError, error_body
from runevents.redis_client import shared_redis

logger = logging.getLogger(__name__)

# Runs taken by workers over this many seconds give the drain rate.
DRAIN_WINDOW_SECONDS = 10
# Retry-After when no run was taken in the window: the workers are stalled or just started.
RETRY_AFTER_STALLED = 30
# After a refusal, this process refuses the same queue (or tenant's share) for this long
# without asking Redis or the database: under overload, refusals must cost next to nothing.
SHED_SECONDS = 0.5

_ADMIT = """
-- KEYS: the queue's backlog, the tenant's part of it, runs taken recently.
-- ARGV: run id, queue cap, tenant cap, entry lifetime (ms), drain window (ms).
local clock = redis.call("TIME")
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local stale = now - tonumber(ARGV[4])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", stale)
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", stale)
local queued = redis.call("ZCARD", KEYS[1])
local mine = redis.call("ZCARD", KEYS[2])
local verdict = "ok"
if queued >= tonumber(ARGV[2]) then
  verdict = "full"
elseif mine >= tonumber(ARGV[3]) then
  verdict = "share"
end
if verdict == "ok" then
  redis.call("ZADD", KEYS[1], now, ARGV[1])
  redis.call("ZADD", KEYS[2], now, ARGV[1])
  redis.call("PEXPIRE", KEYS[1], ARGV[4])
  redis.call("PEXPIRE", KEYS[2], ARGV[4])
  return {verdict, queued + 1, mine + 1, 0}
end
redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", now - tonumber(ARGV[5]))
return {verdict, queued, mine, redis.call("ZCARD", KEYS[3])}
"""

_RELEASE = """
-- KEYS: per queue, its backlog, the tenant's part of it, runs taken recently.
-- ARGV: run id, drain window (ms).
local clock = redis.call("TIME")
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local window = tonumber(ARGV[2])
local freed = 0
for i = 1, #KEYS, 3 do
  redis.call("ZREM", KEYS[i + 1], ARGV[1])
  if redis.call("ZREM", KEYS[i], ARGV[1]) == 1 then
    freed = freed + 1
    redis.call("ZADD", KEYS[i + 2], now, ARGV[1])
    redis.call("ZREMRANGEBYSCORE", KEYS[i + 2], "-inf", now - window)
    redis.call("PEXPIRE", KEYS[i + 2], window * 2)
  end
end
return freed
"""


class BacklogFull(ApiError):
    """Too many runs are waiting for a worker: refused before anything is stored."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


# (queue, "" for the whole queue or a tenant's schema) -> (until, Retry-After, message).
_refusing: dict[tuple[str, str], tuple[float, int, str]] = {}

_scripts: dict[str, object] = {}


def _script(source: str):
    """A registered script (EVALSHA, falling back to EVAL once per server)."""
    client = shared_redis()
    script = _scripts.get(source)
    if script is None or script.registered_client is not client:
        script = _scripts[source] = client.register_script(source)
    return script


def run_queue(response_mode: str) -> str:
    """The Celery queue a run of this response mode goes to (`workflow_run_enqueue` sends it there)."""
    if response_mode in ("blocking", "streaming"):
        return settings.KEYFLOW_QUEUE_INTERACTIVE
    return settings.KEYFLOW_QUEUE_BACKGROUND


def queue_cap(queue: str) -> int:
    if queue == settings.KEYFLOW_QUEUE_INTERACTIVE:
        return settings.KEYFLOW_MAX_BACKLOG
    return settings.KEYFLOW_MAX_BACKLOG_ASYNC


def tenant_cap(queue: str) -> int:
    return max(1, queue_cap(queue) * settings.KEYFLOW_BACKLOG_TENANT_SHARE // 100)


def _keys(queue: str, schema: str) -> list[str]:
    return [f"kf:backlog:{queue}", f"kf:backlog:{queue}:tenant:{schema}", f"kf:backlog:{queue}:taken"]


def retry_after_seconds(*, queued: int, taken_recently: int) -> int:
    """Seconds until the backlog ahead has drained, at the rate workers took runs lately."""
    if taken_recently <= 0:
        wait = RETRY_AFTER_STALLED
    else:
        wait = queued * DRAIN_WINDOW_SECONDS / taken_recently
    return max(1, min(math.ceil(wait), settings.KEYFLOW_RUN_DEADLINE_SECONDS))


def backlog_admit(*, response_mode: str) -> uuid.UUID:
    """A place in the backlog for a new run of the current tenant: the id to store the run
    under. BacklogFull (429) when the queue, or the tenant's share of it, is full.

    One Redis round trip. The caller gives the place back (`backlog_release`) if it does
    not store the run after all."""
    run_id = uuid.uuid4()
    queue = run_queue(response_mode)
    cap = queue_cap(queue)
    if cap <= 0:
        return run_id
    share = tenant_cap(queue)
    try:
        verdict, queued, mine, taken = _script(_ADMIT)(
            keys=_keys(queue, connection.schema_name),
            args=[str(run_id), cap, share, settings.KEYFLOW_RUN_DEADLINE_SECONDS * 1000,
                  DRAIN_WINDOW_SECONDS * 1000],
        )
    except redis.exceptions.RedisError as exc:
        logger.warning("Backlog not checked for a new run (Redis: %s); admitted", type(exc).__name__)
        return run_id
    verdict = verdict.decode()
    if verdict == "ok":
        return run_id
    retry_after = retry_after_seconds(queued=queued, taken_recently=taken)
    slot = _admission_slot.get()  # SubmissionShed refuses this key's next ones itself a moment
    if verdict == "share":
        message = (f"Too many requests. Please try again later. This workspace already has {mine} "
                   f"runs waiting for a worker, its share of the queue; retry in {retry_after} s.")
        _refusing[(queue, connection.schema_name)] = (time.monotonic() + SHED_SECONDS, retry_after, message)
    else:
        message = ("Too many requests. Please try again later. The platform is at capacity: too many "
                   f"runs are waiting for a worker; retry in {retry_after} s.")
        _refusing[(queue, "")] = (time.monotonic() + SHED_SECONDS, retry_after, message)
    if slot is not None:
        slot.refused = (queue, retry_after, message)
    raise BacklogFull(message, retry_after=retry_after)


def backlog_shed(*, schema: str, response_mode: str) -> None:
    """BacklogFull at once when this process found the run's queue, or this tenant's share of
    it, full less than SHED_SECONDS ago. No Redis, no database: async views call it before
    queueing any work, so an overloaded web process spends almost nothing on the excess."""
    queue = run_queue(response_mode)
    now = time.monotonic()
    for key in ((queue, ""), (queue, schema)):
        refusing = _refusing.get(key)
        if refusing is not None and refusing[0] > now:
            raise BacklogFull(refusing[2], retry_after=refusing[1])


def backlog_release(*, run_id) -> None:
    """The run (of the current tenant) waits for a worker no longer: taken, stopped, refused
    or never stored. Never raises: a place not given back counts until the run deadline."""
    if settings.KEYFLOW_MAX_BACKLOG <= 0 and settings.KEYFLOW_MAX_BACKLOG_ASYNC <= 0:
        return
    schema = connection.schema_name
    keys = [
        *_keys(settings.KEYFLOW_QUEUE_INTERACTIVE, schema),
        *_keys(settings.KEYFLOW_QUEUE_BACKGROUND, schema),
    ]
    try:
        _script(_RELEASE)(keys=keys, args=[str(run_id), DRAIN_WINDOW_SECONDS * 1000])
    except redis.exceptions.RedisError as exc:
        logger.warning("Backlog place of run %s not given back (Redis: %s)", run_id, type(exc).__name__)


# --- the web tier's own refusal ------------------------------------------------------

SUBMIT_PATHS = ("/v1/workflows/run", "/v1/chat-messages", "/v1/completion-messages")
# Submissions of this process on their way to admission: "total", and per Authorization
# header (one app key). Only the event loop's thread changes it.
_admitting: dict = {"total": 0}
_admission_slot: contextvars.ContextVar[_AdmissionSlot | None] = contextvars.ContextVar(
    "admission_slot", default=None)


class _AdmissionSlot:
    def __init__(self, key: bytes):
        self.key = key
        self.open = True
        self.refused: tuple[str, int, str] | None = None  # (queue, retry_after, message)
        _admitting["total"] += 1
        _admitting[key] = _admitting.get(key, 0) + 1

    def passed(self) -> None:
        if not self.open:
            return
        self.open = False
        _admitting["total"] -= 1
        _admitting[self.key] -= 1
        if not _admitting[self.key]:
            del _admitting[self.key]
        _wake_one()


# Submissions waiting for room (futures, oldest first); a freed place wakes the oldest.
_waiting: collections.deque = collections.deque()


def _wake_one() -> None:
    while _waiting:
        waiter = _waiting.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def _wake_all() -> None:
    """Every waiting submission looks again (a queue was just found full: they are refused
    at once rather than when room comes)."""
    while _waiting:
        waiter = _waiting.popleft()
        if not waiter.done():
            waiter.set_result(None)


def _no_room(key: bytes) -> bool:
    limit = settings.KEYFLOW_WEB_MAX_ADMITTING
    share = max(1, limit * settings.KEYFLOW_BACKLOG_TENANT_SHARE // 100)
    mine = _admitting.get(key, 0)
    # The share only matters when other keys want room too: alone, a key may use it all.
    return _admitting["total"] >= limit or (mine >= share and _admitting["total"] > mine)


def _refused_by_memo(memos) -> tuple[int, str] | None:
    now = time.monotonic()
    for memo in memos:
        refusing = _refusing.get(memo)
        if refusing is not None and refusing[0] > now:
            return refusing[1], refusing[2]
    return None


class SubmissionShed:
    """ASGI wrapper of the web application: refuses a run submission at once (429, Dify's
    error body) when this process already has KEYFLOW_WEB_MAX_ADMITTING submissions between
    their arrival and their admission, or the same app key its share of them while other
    keys have some too. Admitted submissions waiting for their run do not count
    (`admission_passed`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        limit = settings.KEYFLOW_WEB_MAX_ADMITTING
        if (limit <= 0 or scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].rstrip("/").endswith(SUBMIT_PATHS)):
            return await self.app(scope, receive, send)
        # A queue this process found full moments ago refuses at once, here, before the
        # request takes a place in Django's queue (a retry with an Idempotency-Key goes on:
        # it must still find its first run).
        headers = dict(scope["headers"])
        key = headers.get(b"authorization", b"")
        memos = ()
        if b"idempotency-key" not in headers:
            messages, mode = await _read_submission(receive)
            receive = _replay(messages, receive)
            memos = ((run_queue(mode), ""), (run_queue(mode), key)) if mode else ()
        # A burst waits a moment for room (on the event loop: no thread, no connection);
        # a queue found full meanwhile refuses at once.
        deadline = time.monotonic() + settings.KEYFLOW_WEB_ADMIT_WAIT_SECONDS
        while True:
            if (refused := _refused_by_memo(memos)) is not None:
                return await _refuse(send, *refused)
            if not _no_room(key):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return await _refuse_busy(send)
            waiter = asyncio.get_running_loop().create_future()
            _waiting.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                continue
            if _no_room(key) and _refused_by_memo(memos) is None:
                _wake_one()  # the place suits another key's submission: pass it on
        slot = _AdmissionSlot(key)
        token = _admission_slot.set(slot)
        try:
            return await self.app(scope, receive, send)
        finally:
            _admission_slot.reset(token)
            slot.passed()
            if slot.refused is not None:  # by the backlog: this key's queue, for a moment
                queue, retry_after, message = slot.refused
                now = time.monotonic()
                if len(_refusing) > 1000:
                    for stale in [k for k, (until, *_) in _refusing.items() if until <= now]:
                        del _refusing[stale]
                _refusing[(queue, key)] = (now + SHED_SECONDS, retry_after, message)
                _wake_all()


def admission_passed() -> None:
    """The submission of this request was admitted or refused: it no longer counts toward
    SubmissionShed's limit (called by the views, on the event loop's thread)."""
    slot = _admission_slot.get()
    if slot is not None:
        slot.passed()


# Submissions are small JSON bodies; a larger one is left to Django's limits unread.
_PEEK_BYTES = 256 * 1024


async def _read_submission(receive) -> tuple[list[dict], str | None]:
    """The request's body messages, and its response_mode ("blocking" if it names none;
    None if the body is not a JSON object small enough to read here)."""
    messages, size = [], 0
    while True:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body") or size > _PEEK_BYTES:
            break
    if size > _PEEK_BYTES or messages[-1].get("more_body"):
        return messages, None
    try:
        data = json.loads(b"".join(m.get("body", b"") for m in messages) or b"{}")
    except (ValueError, RecursionError):  # left to the request limits and the view
        return messages, None
    if not isinstance(data, dict):
        return messages, None
    mode = data.get("response_mode") or "blocking"
    return messages, mode if isinstance(mode, str) else None


def _replay(messages: list[dict], receive):
    """`receive` giving back the messages already read, then the rest."""
    pending = list(messages)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _refuse_busy(send) -> None:
    # Clients of a busy process come back when this process last expected room in the
    # backlog, if it was full lately; else in a second, when its queue has moved on.
    recent = [r for until, r, _ in _refusing.values() if until > time.monotonic() - 5]
    retry_after = max(recent, default=1)
    await _refuse(send, retry_after, "Too many requests. Please try again later. This server is busy "
                  f"taking in other runs; retry in {retry_after} s.")


async def _refuse(send, retry_after: int, message: str) -> None:
    body = json.dumps(error_body(429, "too_many_requests", message)).encode()
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode())]})
    await send({"type": "http.response.body", "body": body})
