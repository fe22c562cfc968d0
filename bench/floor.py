"""What the building blocks cost before Keyflow does anything: the floor under a run.

Started by `bench/run.py floor`. On the same stack as the other benchmarks, CPU ms per
request (every process: web, worker, PostgreSQL, valkey) of

- `GET /healthz`: uvicorn + Django's handler and the health middleware, nothing else;
- `GET /v1/parameters` with the app key: the whole middleware chain, token lookup, DRF,
  the per-key limit and one tenant query (the cheapest authenticated Service API call);
- a no-op Celery task (`celery.accumulate`) sent to the interactive queue: broker, prefork
  hand-off and Celery's own bookkeeping in the worker;
- a blocking one-step run, for comparison.

A run needs at least one authenticated request and one task, so the first two lines of the
floor bound what any change inside Keyflow's own code can reach on this stack.
"""

from __future__ import annotations

import asyncio
import os
import time

from run import Clients, closed_loop, describe, machine, table
from stack import Stack, say


def _cpu_ms_per(stack: Stack, before: dict, count: int) -> dict[str, float]:
    after = stack.cpu_seconds()
    return {name: 1000 * (after[name] - before[name]) / max(count, 1) for name in after}


def _celery_app(stack: Stack):
    """The Celery app as the web configures it, to send tasks from this process."""
    os.environ.update(stack.env)
    import django

    django.setup()
    from config.celery_app import app

    return app


def _noop_tasks(stack: Stack, count: int) -> tuple[dict[str, float], float]:
    import redis

    app = _celery_app(stack)
    queue = redis.Redis.from_url(stack.env["CELERY_BROKER_URL"] if "CELERY_BROKER_URL" in stack.env
                                 else stack.env["REDIS_URL"])
    before = stack.cpu_seconds()
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task("celery.accumulate", args=[1], queue="interactive", ignore_result=True,
                          producer=producer)
    while queue.llen("interactive"):
        time.sleep(0.05)
    time.sleep(1.0)  # the last tasks finish in the worker
    seconds = time.perf_counter() - started - 1.0
    return _cpu_ms_per(stack, before, count), count / seconds


async def floor(stack: Stack, options) -> None:
    clients = Clients(stack, connections=16)
    level, seconds = 8, options.seconds
    rows = []
    try:
        for _ in range(options.warmup):
            await clients.keyflow_blocking()

        async def healthz():
            response = await clients.keyflow.get("/healthz")
            if response.status_code != 200:
                raise RuntimeError(f"healthz {response.status_code}")

        async def parameters():
            response = await clients.keyflow.get("/v1/parameters")
            if response.status_code != 200:
                raise RuntimeError(f"parameters {response.status_code}: {response.text[:200]}")

        for label, call in (("GET /healthz (Django, no DRF)", healthz),
                            ("GET /v1/parameters (auth, DRF, 1 query)", parameters),
                            ("blocking one-step run", clients.keyflow_blocking)):
            say(f"floor: {label}")
            before = stack.cpu_seconds()
            result = await closed_loop(call, level, seconds)
            rows.append((label, result["rate"], _cpu_ms_per(stack, before, result["ok"]), result["errors"]))
            await asyncio.sleep(1)
    finally:
        await clients.close()
    say("floor: no-op Celery tasks")
    cpu, rate = _noop_tasks(stack, options.tasks)
    rows.insert(2, (f"no-op Celery task x{options.tasks} (broker + prefork)", rate, cpu, 0))

    names = [n for n in rows[0][2] if n != "bench client"]
    print(f"\n## The floor: CPU ms per request or task, by process ({level} clients, {seconds:.0f} s each)")
    print(f"{machine()}\n{describe(options)}\n")
    print(table(["what", "per s", *names, "total", "errors"],
                [[label, rate, *[cpu[n] for n in names], sum(cpu[n] for n in names), errors]
                 for label, rate, cpu, errors in rows]))
    floor_ms = sum(rows[1][2][n] for n in names) + sum(rows[2][2][n] for n in names)
    run_ms = sum(rows[3][2][n] for n in names)
    cores = os.cpu_count() or 1
    print(f"\none authenticated request + one task: {floor_ms:.1f} ms CPU -> at most "
          f"~{cores * 1000 / floor_ms:.0f} runs/s on {cores} CPUs before Keyflow's own work; "
          f"a whole run: {run_ms:.1f} ms -> ~{cores * 1000 / run_ms:.0f} runs/s")
    print(f"240 runs/s on {cores} CPUs needs <= {cores * 1000 / 240:.1f} ms CPU per run in all processes")


def main(options) -> int:
    from run import stack_from

    with stack_from(options) as stack:
        asyncio.run(floor(stack, options))
    return 0

