"""Budget state in Redis: the per-tenant index of budgets, spend counters per counting
window, and the per-minute request and token windows of rate limits.

Every check-and-count is one Lua script, so many web and worker processes count exactly
once between them. Spend counters are a cache of the database: a missing one (Redis
restarted, key evicted or expired) is rebuilt from the LLM steps stored in the tenant's
schema, the numbers usage reports show.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import redis

from runevents.redis_client import shared_redis

# The index of a tenant's budgets is rebuilt from the database at least this often.
INDEX_TTL_SECONDS = 3600
# A counter of a finished window is kept this long after its end (runs created just
# before the end may still be finishing).
WINDOW_GRACE_SECONDS = 3600
# A budget without a period has no end: its counter is rebuilt from the database daily.
OPEN_WINDOW_TTL_SECONDS = 86400
# Remembers that an LLM step was counted, so a run re-executed after a lost worker does
# not count the same step twice.
COUNTED_STEP_TTL_SECONDS = 7200
RATE_WINDOW_MS = 60_000
LOADED = "_loaded"

# Redis unreachable: admission falls back to the database, counting is skipped (logged).
UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

redis_client = shared_redis


def _prefix(schema: str) -> str:
    return f"kf:{schema}:budget"


def subject_token(subject: str) -> str:
    """End-user ids are free text: keys carry a digest of them (fixed length, any bytes)."""
    return hashlib.sha256(subject.encode()).hexdigest()[:32] if subject else "-"


def index_generation_key(schema: str) -> str:
    return f"{_prefix(schema)}s:generation"


def index_key_prefix(schema: str) -> str:
    return f"{_prefix(schema)}s:index:"


def spend_key(schema: str, budget_id: str, subject: str, window_key: str) -> str:
    return f"{_prefix(schema)}:{budget_id}:spend:{subject_token(subject)}:{window_key}"


def rpm_key(schema: str, budget_id: str, subject: str) -> str:
    return f"{_prefix(schema)}:{budget_id}:rpm:{subject_token(subject)}"


def tpm_key(schema: str, budget_id: str, subject: str, minute: int) -> str:
    return f"{_prefix(schema)}:{budget_id}:tpm:{subject_token(subject)}:{minute}"


def counted_step_key(schema: str, execution_id) -> str:
    return f"{_prefix(schema)}:counted:{execution_id}"


def credential_field(credential_id) -> str:
    return f"c:{credential_id}"


def app_key_field(app_key_id) -> str:
    return f"k:{app_key_id}"


# --- the index -------------------------------------------------------------------------------
# Readers look at the hash of the current generation; every change to a budget bumps the
# generation (before and after its commit), so an index loaded from a database snapshot
# older than the change is written under a generation nobody reads any more.

_INDEX_READ = """
local generation = redis.call('GET', KEYS[1]) or '0'
local values = redis.call('HMGET', ARGV[1] .. generation, unpack(ARGV, 2))
return {generation, values}
"""


def index_read(schema: str, fields: Iterable[str]) -> tuple[str, dict[str, bytes] | None]:
    """(generation, {field: value} of the fields present), or (generation, None) when the
    index of that generation is not loaded. One round trip."""
    names = [LOADED, *fields]
    generation, values = _script(_INDEX_READ)(
        keys=[index_generation_key(schema)], args=[index_key_prefix(schema), *names]
    )
    if not values[0]:
        return generation.decode(), None
    return generation.decode(), {
        name: value for name, value in zip(names[1:], values[1:], strict=True) if value
    }


def index_write(schema: str, generation: str, entries: dict[str, str]) -> None:
    key = index_key_prefix(schema) + generation
    pipe = redis_client().pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping={LOADED: "1", **entries})
    pipe.expire(key, INDEX_TTL_SECONDS)
    pipe.execute()


def index_invalidate(schema: str) -> None:
    redis_client().incr(index_generation_key(schema))


# --- admission -------------------------------------------------------------------------------
# KEYS: spend counters (n_spend), then token windows (n_tpm), then request windows (n_rpm).
# ARGV: now_ms, member, n_spend, n_tpm, n_rpm; per spend counter: token cap, cost cap (in
# cost units; -1 when unset), seed tokens, seed cost, seed ttl ('' when no seed); per token
# window: limit, ms until it ends; per request window: limit.
# A missing spend counter is created from its seed, or reported as missing (nothing is
# written then). Requests are reserved only when every check passes.
_ADMIT = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local n_spend, n_tpm, n_rpm = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local arg = 6
local missing = {}
for i = 1, n_spend do
  local base = arg + (i - 1) * 5
  if redis.call('EXISTS', KEYS[i]) == 0 and ARGV[base + 2] == '' then
    table.insert(missing, i)
  end
end
if #missing > 0 then return {'missing', missing} end
for i = 1, n_spend do
  local key = KEYS[i]
  if ARGV[arg + 2] ~= '' and redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'tokens', ARGV[arg + 2], 'cost', ARGV[arg + 3])
    redis.call('EXPIRE', key, tonumber(ARGV[arg + 4]))
  end
  local token_cap, cost_cap = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1])
  arg = arg + 5
  local spent = redis.call('HMGET', key, 'tokens', 'cost')
  local tokens, cost = tonumber(spent[1] or '0'), tonumber(spent[2] or '0')
  if token_cap >= 0 and tokens >= token_cap then return {'tokens', i, tostring(tokens), 0} end
  if cost_cap >= 0 and cost >= cost_cap then return {'cost', i, tostring(cost), 0} end
end
for j = 1, n_tpm do
  local limit, left = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1])
  arg = arg + 2
  local used = tonumber(redis.call('GET', KEYS[n_spend + j]) or '0')
  if used >= limit then return {'tpm', j, tostring(used), left} end
end
for k = 1, n_rpm do
  local key = KEYS[n_spend + n_tpm + k]
  local limit = tonumber(ARGV[arg])
  arg = arg + 1
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 60000)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {'rpm', k, tostring(count), tonumber(oldest[2]) + 60000 - now}
  end
end
for k = 1, n_rpm do
  local key = KEYS[n_spend + n_tpm + k]
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, 61000)
end
return {'ok'}
"""

# KEYS: the counted-step marker, spend counters (n_spend), token windows (n_tpm).
# ARGV: tokens, cost units, marker ttl, n_spend, n_tpm; per spend counter: seed tokens,
# seed cost, seed ttl ('' when no seed). Returns 'counted' with each counter's totals
# after the step, 'missing' with the counters to rebuild (nothing written), or
# 'duplicate' when the step was counted before.
_SPEND = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'duplicate'} end
local tokens, cost = ARGV[1], ARGV[2]
local n_spend, n_tpm = tonumber(ARGV[4]), tonumber(ARGV[5])
local missing = {}
for i = 1, n_spend do
  if redis.call('EXISTS', KEYS[1 + i]) == 0 and ARGV[6 + (i - 1) * 3] == '' then
    table.insert(missing, i)
  end
end
if #missing > 0 then return {'missing', missing} end
local totals = {}
for i = 1, n_spend do
  local key, base = KEYS[1 + i], 6 + (i - 1) * 3
  if ARGV[base] ~= '' and redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'tokens', ARGV[base], 'cost', ARGV[base + 1])
    redis.call('EXPIRE', key, tonumber(ARGV[base + 2]))
  end
  table.insert(totals, tostring(redis.call('HINCRBY', key, 'tokens', tokens)))
  table.insert(totals, tostring(redis.call('HINCRBY', key, 'cost', cost)))
end
for j = 1, n_tpm do
  local key = KEYS[1 + n_spend + j]
  redis.call('INCRBY', key, tokens)
  redis.call('EXPIRE', key, 120)
end
redis.call('SET', KEYS[1], '1', 'EX', tonumber(ARGV[3]))
return {'counted', totals}
"""

# KEYS: spend counters; ARGV: per counter seed tokens, seed cost, ttl. Creates the missing
# ones; returns each counter's tokens and cost.
_READ_SPEND = """
local out = {}
for i = 1, #KEYS do
  local base = (i - 1) * 3 + 1
  if ARGV[base] ~= '' and redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'tokens', ARGV[base], 'cost', ARGV[base + 1])
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[base + 2]))
  end
  local spent = redis.call('HMGET', KEYS[i], 'tokens', 'cost')
  table.insert(out, spent[1] or false)
  table.insert(out, spent[2] or false)
end
return out
"""


_scripts: dict[str, object] = {}


def _script(source: str):
    """A registered script (EVALSHA, falling back to EVAL once per server)."""
    script = _scripts.get(source)
    if script is None or script.registered_client is not redis_client():
        script = _scripts[source] = redis_client().register_script(source)
    return script


def admit_script():
    return _script(_ADMIT)


def spend_script():
    return _script(_SPEND)


def read_spend_script():
    return _script(_READ_SPEND)
