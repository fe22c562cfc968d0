#!/usr/bin/env python3
"""Keyflow benchmarks against a direct provider call. One command per benchmark:

    .venv/bin/python bench/run.py overhead     [--pairs 300]
    .venv/bin/python bench/run.py throughput   [--seconds 15] [--levels 1,8,32,128]
    .venv/bin/python bench/run.py streams      [--streams 200]
    .venv/bin/python bench/run.py resolution   (in-process: SQL, SET search_path, CPU per step)
    .venv/bin/python bench/run.py tenants      [--schemas 100]
    .venv/bin/python bench/run.py overload     [--seconds 30] [--rate R]
    .venv/bin/python bench/run.py floor        [--seconds 15] [--tasks 2000]

(`python3 bench/run.py …` re-runs itself inside .venv.) Each starts its own embedded
PostgreSQL + valkey, fake LLM provider, web server and Celery worker, and stops them.
Every figure is paired with the same call made directly with the openai SDK to the same
fake provider, interleaved in the same run. Benchmarks print figures; they assert nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
if Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

sys.path.insert(0, str(REPO_ROOT / "bench"))

import httpx  # noqa: E402
import openai  # noqa: E402
from stack import Stack, say  # noqa: E402

TEXT = ("Keyflow runs LLM workflows for many tenants and lets every request choose whose "
        "provider key pays for it. ") * 4
USER = "bench-user"


# --- statistics --------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99),
            "mean": statistics.fmean(values) if values else float("nan")}


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[h for h in headers]] + [[f"{c:.1f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells[1:]]
    return "\n".join(lines)


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


# --- clients -----------------------------------------------------------------------------------

class Clients:
    """A Keyflow Service API client (httpx) and a direct provider client (openai SDK)."""

    def __init__(self, stack: Stack, connections: int = 16):
        seed = stack.seed
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.keyflow = httpx.AsyncClient(base_url=stack.base_url, timeout=300, limits=limits,
                                         headers={"Authorization": f"Bearer {seed['token']}"})
        self.direct = openai.AsyncOpenAI(
            api_key=seed["api_key"], base_url=seed["base_url"], max_retries=0, timeout=300,
            http_client=httpx.AsyncClient(limits=limits, timeout=300),
        )
        system, user = seed["messages"]
        self.messages = [{"role": system["role"], "content": system["text"]},
                         {"role": "user", "content": user["text"].replace("{{ start.text }}", TEXT)}]
        self.model = seed["model"]
        self.max_tokens = seed["max_tokens"]
        self.marks: list[tuple[str, float, float]] = []  # blocking runs: (run id, sent, received)
        # With BENCH_SPREAD, requests go round the keys of that many tenants.
        self.tokens = itertools.cycle(seed.get("tokens") or [seed["token"]])

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {next(self.tokens)}"}

    async def close(self):
        await self.keyflow.aclose()
        await self.direct.close()

    def body(self, mode: str) -> dict:
        return {"inputs": {"text": TEXT}, "response_mode": mode, "user": USER}

    async def keyflow_blocking(self) -> tuple[float, float | None]:
        """(latency ms, X-Keyflow-Platform-Time-Ms); raises on anything but a succeeded run."""
        sent = time.time()
        started = time.perf_counter()
        response = await self.keyflow.post("/v1/workflows/run", json=self.body("blocking"), headers=self.auth())
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200 or response.json()["data"]["status"] != "succeeded":
            raise RuntimeError(f"keyflow {response.status_code}: {response.text[:300]}")
        platform = response.headers.get("X-Keyflow-Platform-Time-Ms")
        self.marks.append((response.json()["workflow_run_id"], sent, time.time()))
        return elapsed, float(platform) if platform else None

    async def keyflow_async(self) -> float:
        started = time.perf_counter()
        response = await self.keyflow.post("/v1/workflows/run", json=self.body("async"))
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 202:
            raise RuntimeError(f"keyflow async {response.status_code}: {response.text[:300]}")
        self.last_async_id = response.json()["workflow_run_id"]
        return elapsed

    async def keyflow_streaming(self) -> dict:
        """ms to the first SSE event, the first text_chunk, and the end."""
        marks: dict[str, float] = {}
        started = time.perf_counter()
        async with self.keyflow.stream("POST", "/v1/workflows/run", json=self.body("streaming"),
                                       headers=self.auth()) as response:
            if response.status_code != 200:
                raise RuntimeError(f"keyflow stream {response.status_code}: {(await response.aread())[:300]}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                now = (time.perf_counter() - started) * 1000
                marks.setdefault("first_event", now)
                event = json.loads(line[5:])
                if event.get("event") == "text_chunk":
                    marks.setdefault("first_text", now)
                if event.get("event") in ("workflow_finished", "error"):
                    if event.get("event") == "error" or event["data"].get("status") != "succeeded":
                        raise RuntimeError(f"keyflow stream ended with {line[:300]}")
                    marks["end"] = now
                    break
        return marks

    async def direct_blocking(self) -> float:
        started = time.perf_counter()
        await self.direct.chat.completions.create(model=self.model, messages=self.messages,
                                                  max_tokens=self.max_tokens, user=USER)
        return (time.perf_counter() - started) * 1000

    async def direct_streaming(self) -> dict:
        marks: dict[str, float] = {}
        started = time.perf_counter()
        stream = await self.direct.chat.completions.create(
            model=self.model, messages=self.messages, max_tokens=self.max_tokens, user=USER,
            stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            now = (time.perf_counter() - started) * 1000
            marks.setdefault("first_event", now)
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                marks.setdefault("first_text", now)
        marks["end"] = (time.perf_counter() - started) * 1000
        return marks


def machine() -> str:
    import subprocess

    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    head = os.environ.get("BENCH_REV") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "platform"],
                           cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    if dirty:
        head += " + uncommitted changes under platform/"
    return (f"{time.strftime('%Y-%m-%d %H:%M')} | nproc {os.cpu_count()} | RAM {mem_kb / 1024 / 1024:.0f} GiB"
            f" | {head} | Python {sys.version.split()[0]} | load average {os.getloadavg()[0]:.1f}"
            " (other work on the machine shares its CPUs)")


def stack_from(options) -> Stack:
    extra = dict(item.split("=", 1) for item in options.env)
    return Stack(web=options.web, web_workers=options.web_workers, extra_env=extra,
                 worker_concurrency=options.worker_concurrency, worker_pool=options.worker_pool)


def describe(options) -> str:
    web = "uvicorn (1 process)" if options.web == "uvicorn" else f"gunicorn -w {options.web_workers} UvicornWorker"
    env = f"; env: {' '.join(options.env)}" if options.env else ""
    return f"web: {web}; Celery: {options.worker_pool} x{options.worker_concurrency}, queues interactive,background{env}"


def timeline(stack: Stack, marks: list[tuple[str, float, float]]) -> list[list]:
    """Where a blocking run's time goes, from the timestamps Keyflow itself stores (created,
    claimed by the worker, LLM node start/end, finished) and the client's send/receive times."""
    import psycopg

    sent = {run_id: (s, r) for run_id, s, r in marks}
    schema = stack.seed["tenant"]
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        from psycopg import sql as q

        sql = q.SQL(
            "SELECT r.id::text, extract(epoch FROM r.created_at), extract(epoch FROM r.started_at), "
            "extract(epoch FROM n.created_at), extract(epoch FROM n.finished_at), extract(epoch FROM r.finished_at) "
            "FROM {runs} r JOIN {nodes} n ON n.run_id = r.id AND n.node_type = 'llm' WHERE r.id::text = ANY(%s)"
        ).format(runs=q.Identifier(schema, "workflows_workflowrun"), nodes=q.Identifier(schema, "workflows_nodeexecution"))
        rows = conn.execute(sql, [list(sent)]).fetchall()
    phases: dict[str, list[float]] = {k: [] for k in (
        "client send -> run row created (web: auth, validation, plan)",
        "run created -> claimed by worker (commit, enqueue, broker, prefork)",
        "claimed -> LLM node started (graph, start node, events)",
        "LLM node (credential, provider call, save)",
        "LLM node end -> run finished (end node, totals)",
        "run finished -> client received (final event, reload, response)")}
    for run_id, created, claimed, llm_start, llm_end, finished in rows:
        s, r = sent[run_id]
        values = [float(created) - s, float(claimed) - float(created), float(llm_start) - float(claimed),
                  float(llm_end) - float(llm_start), float(finished) - float(llm_end), r - float(finished)]
        for key, value in zip(phases, values, strict=True):
            phases[key].append(value * 1000)
    return [[name, pct(v, 50), pct(v, 95), pct(v, 99)] for name, v in phases.items()]


# --- 1. overhead -------------------------------------------------------------------------------

async def overhead(stack: Stack, options) -> None:
    clients = Clients(stack, connections=4)
    try:
        for _ in range(options.warmup):
            await clients.keyflow_blocking()
            await clients.direct_blocking()
            await clients.keyflow_streaming()
            await clients.direct_streaming()
        added, kf, direct, platform = [], [], [], []
        s_added_first, s_added_text, s_kf_first, s_kf_text, s_direct_text, s_added_end = [], [], [], [], [], []
        for i in range(options.pairs):
            if random.random() < 0.5:
                k, p = await clients.keyflow_blocking()
                d = await clients.direct_blocking()
            else:
                d = await clients.direct_blocking()
                k, p = await clients.keyflow_blocking()
            kf.append(k), direct.append(d), added.append(k - d)
            if p is not None:
                platform.append(p)
            if random.random() < 0.5:
                ks = await clients.keyflow_streaming()
                ds = await clients.direct_streaming()
            else:
                ds = await clients.direct_streaming()
                ks = await clients.keyflow_streaming()
            s_kf_first.append(ks["first_event"]), s_kf_text.append(ks["first_text"])
            s_direct_text.append(ds["first_text"])
            s_added_first.append(ks["first_event"] - ds["first_text"])
            s_added_text.append(ks["first_text"] - ds["first_text"])
            s_added_end.append(ks["end"] - ds["end"])
            if (i + 1) % 100 == 0:
                say(f"overhead: {i + 1}/{options.pairs} pairs")
    finally:
        await clients.close()
    marks = clients.marks[-options.pairs:]
    phases = timeline(stack, marks)

    rows = []
    for name, values in [
        ("blocking: Keyflow latency", kf), ("blocking: direct SDK latency", direct),
        ("blocking: added (Keyflow - direct)", added),
        ("blocking: X-Keyflow-Platform-Time-Ms", platform),
        ("streaming: Keyflow first SSE event", s_kf_first),
        ("streaming: Keyflow first text_chunk", s_kf_text),
        ("streaming: direct first token", s_direct_text),
        ("streaming: added, first event - direct first token", s_added_first),
        ("streaming: added, first text_chunk - direct first token", s_added_text),
        ("streaming: added, end of stream", s_added_end),
    ]:
        s = summary(values)
        rows.append([name, s["n"], s["median"], s["p95"], s["p99"]])
    ratio = pct(kf, 50) / pct(direct, 50)
    print(f"\n## Overhead per run ({options.pairs} interleaved pairs, sequential, fake provider instant)")
    print(f"{machine()}\n{describe(options)}\n")
    print(table(["ms", "n", "median", "p95", "p99"], rows))
    print("\nWhere a blocking run's time goes (Keyflow's own timestamps; ms):\n")
    print(table(["phase", "median", "p95", "p99"], phases))
    a, f = summary(added), summary(s_added_text)
    print(f"\nmedian Keyflow/direct latency ratio: {ratio:.1f}x")
    print(f"target added median <= 15 ms: {a['median']:.1f} ms -> {verdict(a['median'], 15)}")
    print(f"target added p99 <= 50 ms: {a['p99']:.1f} ms -> {verdict(a['p99'], 50)}")
    print(f"target first streamed event median <= 30 ms (added, first event): "
          f"{summary(s_added_first)['median']:.1f} ms -> {verdict(summary(s_added_first)['median'], 30)}")
    print(f"  (first text_chunk, added: median {f['median']:.1f} ms -> {verdict(f['median'], 30)})")


# --- 2. throughput -----------------------------------------------------------------------------

async def closed_loop(call, concurrency: int, seconds: float, stack: Stack | None = None) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    connections: list[int] = []
    deadline = time.perf_counter() + seconds

    async def sample():
        while time.perf_counter() < deadline:
            connections.append(stack.db_connections())
            await asyncio.sleep(1)

    async def client():
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await asyncio.wait_for(call(), timeout=30)
            except Exception as exc:  # counted, shown by type
                key = f"{type(exc).__name__}: {str(exc)[:80]}"
                errors[key] = errors.get(key, 0) + 1
                await asyncio.sleep(0.05)
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)), *([sample()] if stack else []))
    duration = time.perf_counter() - started
    return {"ok": len(latencies), "db_connections": max(connections, default=0), "errors": sum(errors.values()), "error_kinds": errors, "seconds": duration,
            "rate": len(latencies) / duration, **{k: pct(latencies, p) for k, p in
                                                    (("p50", 50), ("p95", 95), ("p99", 99))}}


async def throughput(stack: Stack, options) -> None:
    levels = [int(x) for x in options.levels.split(",")]
    clients = Clients(stack, connections=max(levels) + 8)
    rows, notes, cpu_rows, cpu_names, phase_rows = [], [], [], [], []
    try:
        for _ in range(options.warmup):
            await clients.keyflow_blocking()
        clients.marks.clear()
        for level in levels:
            say(f"throughput: {level} clients, Keyflow blocking")
            cpu_before = stack.cpu_seconds()
            kf = await closed_loop(lambda: clients.keyflow_blocking(), level, options.seconds, stack)
            cpu_after = stack.cpu_seconds()
            cpu_rows.append([level] + [1000 * (cpu_after[k] - cpu_before[k]) / max(kf["ok"], 1) for k in cpu_after]
                            + [sum(cpu_after[k] - cpu_before[k] for k in cpu_after) / kf["seconds"]])
            cpu_names = list(cpu_after)
            phase_rows.append((level, timeline(stack, clients.marks)))
            clients.marks.clear()
            say(f"throughput: {level} clients, direct SDK")
            direct = await closed_loop(clients.direct_blocking, level, min(options.seconds, 5))
            rows.append([level, kf["rate"], kf["errors"], kf["db_connections"], kf["p50"], kf["p95"], kf["p99"],
                         direct["rate"], direct["p50"], direct["p99"], f"{direct['rate'] / max(kf['rate'], 1e-9):.0f}x"])
            if kf["error_kinds"]:
                notes.append(f"{level} clients errors: {kf['error_kinds']}")
            await asyncio.sleep(2)  # let the worker settle between levels
        say("throughput: async submissions")
        accepted = await closed_loop(clients.keyflow_async, options.async_clients, options.async_seconds, stack)
        drain_started = time.perf_counter()
        drained = None
        while time.perf_counter() - drain_started < options.drain_timeout:
            response = await clients.keyflow.get(f"/v1/workflows/run/{clients.last_async_id}")
            if response.status_code == 200 and response.json()["status"] in ("succeeded", "failed", "stopped"):
                drained = time.perf_counter() - drain_started
                break
            await asyncio.sleep(0.5)
    finally:
        await clients.close()
    web_rss, worker_rss = stack.child("web").rss_mb(), stack.child("worker").rss_mb()

    print(f"\n## Throughput (closed loop, {options.seconds:.0f} s per level; direct SDK 5 s per level)")
    print(f"{machine()}\n{describe(options)}\n")
    print(table(["clients", "Keyflow runs/s", "errors", "max DB conns", "p50 ms", "p95 ms", "p99 ms",
                 "direct calls/s", "direct p50", "direct p99", "direct/Keyflow"], rows))
    for note in notes:
        print(f"  {note}")
    print(f"\nCPU ms per completed Keyflow run, by process (and CPUs busy out of {os.cpu_count()}):\n")
    print(table(["clients", *cpu_names, "CPUs busy"], cpu_rows))
    print("\nWhere a blocking run's time goes under load (median ms, Keyflow's own timestamps):\n")
    names = [name for name, *_ in phase_rows[0][1]]
    print(table(["phase", *[f"{level} clients" for level, _ in phase_rows]],
                [[name, *[phases[i][1] for _, phases in phase_rows]] for i, name in enumerate(names)]))
    best = max(r[1] for r in rows)
    print(f"\nasync mode, {options.async_clients} clients for {options.async_seconds:.0f} s: "
          f"{accepted['rate']:.0f} accepted runs/s (p50 {accepted['p50']:.1f} ms, p99 {accepted['p99']:.1f} ms, "
          f"errors {accepted['errors']}, max DB connections {accepted['db_connections']}); backlog of {accepted['ok']} drained "
          + (f"{drained:.1f} s after the burst" if drained is not None else f"not within {options.drain_timeout:.0f} s")
          + (f" (~{accepted['ok'] / (options.async_seconds + drained):.0f} runs/s executed)" if drained else ""))
    print(f"RSS after the run: web {web_rss:.0f} MB, worker (all processes) {worker_rss:.0f} MB")
    print(f"target >= 240 completed runs/s: best {best:.0f} -> {'met' if best >= 240 else 'MISSED'}")
    print(f"target >= 500 accepted async runs/s: {accepted['rate']:.0f} -> "
          f"{'met' if accepted['rate'] >= 500 else 'MISSED'}")


# --- 5. concurrent streams ---------------------------------------------------------------------

async def streams(stack: Stack, options) -> None:
    clients = Clients(stack, connections=options.streams + 8)
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def sample_rss():
        while not stop.is_set():
            samples.append((stack.child("web").rss_mb(), stack.child("worker").rss_mb()))
            await asyncio.sleep(0.5)

    try:
        await clients.keyflow_streaming()
        idle = (stack.child("web").rss_mb(), stack.child("worker").rss_mb())
        sampler = asyncio.create_task(sample_rss())
        started = time.perf_counter()
        # A stream whose run never starts (e.g. the worker cannot reach the database) would
        # wait for the sweeper; give up after 60 s and count it as failed.
        results = await asyncio.gather(*(asyncio.wait_for(clients.keyflow_streaming(), 60)
                                         for _ in range(options.streams)), return_exceptions=True)
        wall = time.perf_counter() - started
        stop.set()
        await sampler
        direct_started = time.perf_counter()
        direct = await asyncio.gather(*(clients.direct_streaming() for _ in range(options.streams)),
                                      return_exceptions=True)
        direct_wall = time.perf_counter() - direct_started
    finally:
        await clients.close()
    ok = [r for r in results if isinstance(r, dict)]
    failed = [r for r in results if not isinstance(r, dict)]
    direct_ok = [r for r in direct if isinstance(r, dict)]
    print(f"\n## {options.streams} concurrent streaming runs at once")
    print(f"{machine()}\n{describe(options)}\n")
    print(table(["", "completed", "failed", "wall s", "first event p50 ms", "first event p99 ms", "end p50 ms", "end p99 ms"], [
        ["Keyflow", len(ok), len(failed), wall, pct([r["first_event"] for r in ok], 50),
         pct([r["first_event"] for r in ok], 99), pct([r["end"] for r in ok], 50), pct([r["end"] for r in ok], 99)],
        ["direct SDK", len(direct_ok), len(direct) - len(direct_ok), direct_wall,
         pct([r["first_event"] for r in direct_ok], 50), pct([r["first_event"] for r in direct_ok], 99),
         pct([r["end"] for r in direct_ok], 50), pct([r["end"] for r in direct_ok], 99)],
    ]))
    if failed:
        kinds: dict[str, int] = {}
        for exc in failed:
            kinds[f"{type(exc).__name__}: {str(exc)[:80]}"] = kinds.get(f"{type(exc).__name__}: {str(exc)[:80]}", 0) + 1
        print(f"  failures: {kinds}")
    peak_web = max((s[0] for s in samples), default=idle[0])
    peak_worker = max((s[1] for s in samples), default=idle[1])
    print(f"\nRSS web: {idle[0]:.0f} MB idle -> {peak_web:.0f} MB peak; "
          f"worker (all processes): {idle[1]:.0f} MB idle -> {peak_worker:.0f} MB peak")


# --- 6. overload ------------------------------------------------------------------------------

FINISHED = ("succeeded", "failed", "stopped")


async def saturation(clients: Clients, stack: Stack, options) -> tuple[float, list[list]]:
    """Completed blocking runs/s of closed-loop clients at each probe level: the best rate is
    the saturating load (more clients only queue)."""
    rows = []
    for level in [int(x) for x in options.probe_levels.split(",")]:
        say(f"overload: probing with {level} closed-loop clients for {options.probe_seconds:.0f} s")
        result = await closed_loop(lambda: clients.keyflow_blocking(), level, options.probe_seconds, stack)
        rows.append([level, result["rate"], result["errors"], result["p50"], result["p99"]])
        await asyncio.sleep(1)
    return max(row[1] for row in rows), rows


async def overload(stack: Stack, options) -> None:
    """Open-loop arrivals of blocking runs at twice the saturating load: what is accepted
    completes, the excess is refused at once (429 + Retry-After), nothing runs twice."""
    import re
    import secrets

    import redis

    clients = Clients(stack, connections=64)
    try:
        for _ in range(options.warmup):
            await clients.keyflow_blocking()
        saturating, probe_rows = (options.rate / 2, []) if options.rate else await saturation(clients, stack, options)
    finally:
        await clients.close()
    rate = options.rate or 2 * saturating
    httpx.post(f"{stack.fake_url}/_fake/reset", timeout=10).raise_for_status()  # count this phase's calls only
    tag = secrets.token_hex(4)
    marker = re.compile(rf"\[overload {tag} (\d+)\]")
    results: list[dict] = []
    backlog_samples: list[tuple[int, int]] = []
    host, port = stack.base_url.removeprefix("http://").split(":")
    store = redis.Redis.from_url(stack.env["REDIS_URL"])
    stop = asyncio.Event()

    async def sample_backlog():
        keys = ("kf:backlog:interactive", f"kf:backlog:interactive:tenant:{stack.seed['tenant']}")
        while not stop.is_set():
            backlog_samples.append(tuple(store.zcard(k) for k in keys))
            await asyncio.sleep(0.5)

    async def one(index: int, scheduled: float) -> None:
        body = json.dumps({"inputs": {"text": f"{TEXT}[overload {tag} {index}]"}, "response_mode": "blocking",
                           "user": USER}).encode()
        sent = time.perf_counter()
        record = {"index": index, "lag_ms": (sent - scheduled) * 1000}
        try:
            status, headers, payload = await asyncio.wait_for(
                raw_post(host, port, "/v1/workflows/run", stack.seed["token"], body), options.client_timeout)
        except TimeoutError:
            record.update(outcome="timeout", ms=(time.perf_counter() - sent) * 1000)
        except Exception as exc:
            record.update(outcome="error", ms=(time.perf_counter() - sent) * 1000,
                          error=f"{type(exc).__name__}: {str(exc)[:80]}")
        else:
            record["ms"] = (time.perf_counter() - sent) * 1000
            record["status"] = status
            if status == 429:
                answer = json.loads(payload)
                message = answer.get("message", "")
                why = ("backlog full" if "waiting for a worker" in message else
                       "web process busy" if "busy taking in other runs" in message else message[:60])
                record.update(outcome="refused", retry_after=headers.get("retry-after"), code=answer.get("code"),
                              why=why)
            elif status == 200:
                data = json.loads(payload)
                run_status = data["data"]["status"]
                record["run_id"] = data["workflow_run_id"]
                record["outcome"] = "completed" if run_status == "succeeded" else (
                    "failed" if run_status in FINISHED else "timeout")  # the blocking wait ran out
            else:
                record.update(outcome="error", error=f"HTTP {status}: {payload[:80]!r}")
        results.append(record)

    total = int(rate * options.seconds)
    say(f"overload: saturating load {saturating:.1f} runs/s; offering {rate:.1f} runs/s for {options.seconds:.0f} s "
        f"({total} blocking runs, open loop)")
    sampler = asyncio.create_task(sample_backlog())
    tasks = []
    cpu_before = stack.cpu_seconds()
    started = time.perf_counter()
    for index in range(total):
        scheduled = started + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    offered_seconds = time.perf_counter() - started
    await asyncio.gather(*tasks)
    all_answered = time.perf_counter() - started
    cpu_after = stack.cpu_seconds()
    stop.set()
    await sampler

    # Accepted runs that the blocking wait gave up on may still finish: wait for them, then
    # read the provider's record (every call made for this phase's runs, by marker).
    accepted_ids = [r["run_id"] for r in results if r.get("run_id")]
    final = await asyncio.to_thread(final_statuses, stack, accepted_ids, options.drain_timeout)
    calls = httpx.get(f"{stack.fake_url}/_fake/calls", timeout=60).json()
    per_run: dict[int, int] = {}
    for call in calls:
        text = " ".join(str(m.get("content", "")) for m in call.get("messages", []))
        for found in marker.findall(text):
            per_run[int(found)] = per_run.get(int(found), 0) + 1
    store.close()

    by_outcome: dict[str, list[dict]] = {}
    for r in results:
        by_outcome.setdefault(r["outcome"], []).append(r)
    accepted = [r for r in results if r.get("run_id")]
    refused = by_outcome.get("refused", [])
    completed = by_outcome.get("completed", [])
    refused_idx = {r["index"] for r in refused}
    accepted_idx = {r["index"] for r in accepted}
    duplicates = sum(1 for i, n in per_run.items() if n > 1)
    refused_but_called = sum(1 for i in refused_idx if per_run.get(i))
    accepted_not_called = sum(1 for i in accepted_idx if not per_run.get(i))
    eventually = sum(1 for s in final.values() if s == "succeeded")
    retry_after = [float(r["retry_after"]) for r in refused if r.get("retry_after")]
    lag = [r["lag_ms"] for r in results]

    print(f"\n## Overload: blocking runs at 2x the saturating load for {options.seconds:.0f} s (open loop)")
    print(f"{machine()}\n{describe(options)}\n")
    if probe_rows:
        print(f"Saturating load (closed loop, blocking, {options.probe_seconds:.0f} s per level):\n")
        print(table(["clients", "completed runs/s", "errors", "p50 ms", "p99 ms"], probe_rows))
        print()
    print(table(["", "runs", "share of offered", "p50 ms", "p99 ms", "max ms"], [
        [name, len(rows), f"{100 * len(rows) / max(total, 1):.1f} %", pct([r["ms"] for r in rows], 50),
         pct([r["ms"] for r in rows], 99), max((r["ms"] for r in rows), default=float("nan"))]
        for name, rows in [("offered", results), ("accepted (200)", accepted), ("  completed in the answer", completed),
                           ("  failed", by_outcome.get("failed", [])), ("refused (429)", refused),
                           ("timeouts", by_outcome.get("timeout", [])), ("errors", by_outcome.get("error", []))]
    ]))
    errors: dict[str, int] = {}
    for r in by_outcome.get("error", []):
        errors[r["error"]] = errors.get(r["error"], 0) + 1
    if errors:
        print(f"  errors: {errors}")
    print(f"\noffered {total / offered_seconds:.1f} runs/s over {offered_seconds:.1f} s (target {rate:.1f}; "
          f"client send lag p99 {pct(lag, 99):.0f} ms); all answered {all_answered:.1f} s after the first")
    print(f"accepted {len(accepted) / offered_seconds:.1f} runs/s; accepted that completed: "
          f"{100 * len(completed) / max(len(accepted), 1):.1f} % in their answer, "
          f"{100 * eventually / max(len(accepted), 1):.1f} % by the end ({len(accepted) - len(final)} not found)")
    print(f"refused: {len(refused)}, {sum(1 for r in refused if r.get('retry_after'))} with Retry-After "
          f"(median {pct(retry_after, 50):.0f} s, min {min(retry_after, default=float('nan')):.0f}, "
          f"max {max(retry_after, default=float('nan')):.0f}), codes {sorted({r.get('code') for r in refused})}")
    for why in sorted({r["why"] for r in refused}):
        rows = [r for r in refused if r["why"] == why]
        print(f"  {why}: {len(rows)}, answered in p50 {pct([r['ms'] for r in rows], 50):.0f} ms, "
              f"p99 {pct([r['ms'] for r in rows], 99):.0f} ms")
    print(f"backlog waiting for a worker (sampled every 0.5 s): max {max((s[0] for s in backlog_samples), default=0)} "
          f"in the queue, {max((s[1] for s in backlog_samples), default=0)} of this tenant")
    print(f"provider record: {len(calls)} calls; runs called more than once (duplicate executions): {duplicates}; "
          f"refused runs that reached the provider: {refused_but_called}; accepted runs never called: "
          f"{accepted_not_called}")
    print("CPU busy from the first request to the last answer (1.0 = one core): " + ", ".join(
        f"{name} {(cpu_after[name] - cpu_before[name]) / all_answered:.2f}" for name in cpu_after))
    timeouts = len(by_outcome.get("timeout", []))
    print(f"target every accepted run completes: {len(completed)}/{len(accepted)} -> "
          f"{'met' if len(completed) == len(accepted) else 'MISSED'}")
    refused_p99 = pct([r["ms"] for r in refused], 99)
    at_once = bool(refused) and refused_p99 <= 1000 and len(retry_after) == len(refused) and not errors
    print(f"target excess refused at once (p99 <= 1 s) with 429 + Retry-After, no errors: {len(refused)} refused, "
          f"p99 {refused_p99:.0f} ms, {len(refused) - len(retry_after)} without Retry-After, "
          f"{len(by_outcome.get('error', []))} errors -> "
          f"{'n/a (nothing refused)' if not refused else 'met' if at_once else 'MISSED'}")
    print(f"target zero timeouts: {timeouts} -> {'met' if timeouts == 0 else 'MISSED'}")
    print(f"target zero duplicate executions: {duplicates} -> {'met' if duplicates == 0 else 'MISSED'}")


async def raw_post(host: str, port: str, path: str, token: str, body: bytes) -> tuple[int, dict, bytes]:
    """One POST on a connection of its own, HTTP/1.1 by hand: an open-loop client sending
    ~100 requests/s on a 2-core machine must spend far less CPU per request than httpx."""
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        chunks, rest = [], payload
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            length = int(size, 16)
            if length == 0:
                break
            chunks.append(rest[:length])
            rest = rest[length + 2:]
        payload = b"".join(chunks)
    return int(lines[0].split()[1]), headers, payload


def final_statuses(stack: Stack, run_ids: list[str], timeout: float) -> dict[str, str]:
    """Status of each run once none is queued or running (or after `timeout` seconds)."""
    import psycopg
    from psycopg import sql as q

    query = q.SQL("SELECT id::text, status FROM {} WHERE id::text = ANY(%s)").format(
        q.Identifier(stack.seed["tenant"], "workflows_workflowrun"))
    deadline = time.monotonic() + timeout
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        while True:
            statuses = dict(conn.execute(query, [run_ids]).fetchall())
            if all(s in FINISHED for s in statuses.values()) or time.monotonic() > deadline:
                return statuses
            time.sleep(1)


# --- main --------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=["overhead", "throughput", "streams", "resolution", "tenants", "overload", "floor"])
    parser.add_argument("--web", choices=["uvicorn", "gunicorn"], default="uvicorn")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn -w (with --web gunicorn)")
    parser.add_argument("--worker-concurrency", type=int, default=int(os.environ.get("KEYFLOW_WORKER_CONCURRENCY", 2)))
    parser.add_argument("--worker-pool", default="prefork")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds per level (throughput, default 15) or of overload (default 30)")
    parser.add_argument("--levels", default="1,8,32,128")
    parser.add_argument("--async-clients", type=int, default=32)
    parser.add_argument("--async-seconds", type=float, default=5)
    parser.add_argument("--drain-timeout", type=float, default=180)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--schemas", type=int, default=100)
    parser.add_argument("--rate", type=float, default=None,
                        help="overload: runs/s to offer (default: twice the saturating load, probed first)")
    parser.add_argument("--probe-levels", default="4,8,16,32", help="overload: closed-loop clients to probe")
    parser.add_argument("--probe-seconds", type=float, default=8)
    parser.add_argument("--client-timeout", type=float, default=300)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for every process, e.g. DATABASE_CONN_MAX_AGE=0")
    parser.add_argument("--profile", metavar="DIR", help="record py-spy profiles of web and worker into DIR")
    parser.add_argument("--tasks", type=int, default=2000, help="floor: no-op Celery tasks to send")
    options = parser.parse_args(argv)
    if options.seconds is None:
        options.seconds = 30 if options.benchmark == "overload" else 15

    if options.benchmark == "floor":
        import floor

        return floor.main(options)
    if options.benchmark in ("resolution", "tenants"):
        import inproc

        return inproc.main(options)
    work = {"overhead": overhead, "throughput": throughput, "streams": streams,
            "overload": overload}[options.benchmark]
    with stack_from(options) as stack:
        profilers = start_profilers(stack, options.profile) if options.profile else []
        try:
            asyncio.run(work(stack, options))
        finally:
            stop_profilers(profilers)
    return 0


def start_profilers(stack: Stack, directory: str):
    """py-spy (installed by hand, profiling only) on the web server and every worker process."""
    import subprocess

    Path(directory).mkdir(parents=True, exist_ok=True)
    spy = str(REPO_ROOT / ".venv" / "bin" / "py-spy")
    processes = []
    for name in ("web", "worker"):
        for pid in stack.child(name).pids():
            out = Path(directory) / f"{name}-{pid}.txt"
            processes.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--output", str(out),
                 "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return processes


def stop_profilers(processes) -> None:
    import signal

    for process in processes:
        process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
