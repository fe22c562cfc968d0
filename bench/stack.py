"""The processes a benchmark runs against, started from nothing and stopped afterwards.

Embedded PostgreSQL + valkey (devservices.embedded, through the dev launcher's Services),
the fake LLM provider as its own process, migrations, one seeded tenant/app/key, a web
server (uvicorn, or gunicorn with uvicorn workers) and a Celery worker on both queues.
Everything lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "platform"))

from cryptography.fernet import Fernet  # noqa: E402

from devservices.launcher import Services, child_env, start_fake_llm  # noqa: E402

PYTHON = sys.executable


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The process and its descendants (uvicorn/gunicorn/celery fork children)."""
        found = [self.process.pid]
        queue = [self.process.pid]
        while queue:
            parent = queue.pop()
            try:
                children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                queue.append(child)
        return found

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024


@dataclass
class Stack:
    web: str = "uvicorn"  # or "gunicorn"
    web_workers: int = 2  # gunicorn only
    worker_concurrency: int = 2
    worker_pool: str = "prefork"
    start_web: bool = True
    extra_env: dict = field(default_factory=dict)

    root: Path | None = None
    env: dict | None = None
    fake_url: str = ""
    base_url: str = ""
    seed: dict | None = None
    children: list[Child] = field(default_factory=list)
    services: Services | None = None

    # -- lifecycle --

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="keyflow-bench-"))
        (self.root / "logs").mkdir()
        started = time.monotonic()
        self.services = Services(self.root, persist_redis=False)
        values = self.services.start()
        values.update(
            KEYFLOW_ENV="development",
            KEYFLOW_DATA_DIR=str(self.root),  # never read the developer's .data/runtime.env
            DJANGO_SETTINGS_MODULE="config.settings.base",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            KEYFLOW_FINGERPRINT_KEY=secrets.token_urlsafe(32),
            KEYFLOW_WEBHOOK_ALLOW_PRIVATE="true",
            DJANGO_STATIC_ROOT=str(self.root / "static"),
            # The benchmarks measure capacity, not the per-key request limit (which is still
            # checked on every request, at the same cost); --env can set it back.
            KEYFLOW_API_RATE_LIMIT_PER_MINUTE="100000000",
        )
        values.update(self.extra_env)
        self.env = child_env(values)
        fake, self.fake_url = start_fake_llm(self.env, self.root / "logs")
        self.children.append(Child("fake_llm", fake, self.root / "logs" / "fake_llm.log"))
        self.env = child_env({**values, "KEYFLOW_FAKE_LLM_URL": self.fake_url})
        subprocess.run(
            [PYTHON, str(REPO_ROOT / "manage.py"), "migrate_schemas", "--executor", "standard", "-v", "0"],
            env=self.env, check=True, cwd=REPO_ROOT,
        )
        seeded = subprocess.run(
            [PYTHON, str(REPO_ROOT / "bench" / "seed.py")], env=self.env, check=True, cwd=REPO_ROOT,
            stdout=subprocess.PIPE, text=True,
        )
        self.seed = json.loads(seeded.stdout.strip().splitlines()[-1])
        import psycopg

        # Opened before any load, so it still gets in when the server is out of connections.
        self.monitor = psycopg.connect(self.env["DATABASE_URL"], autocommit=True)
        if self.start_web:
            self._start_web()
            self._start_worker()
        say(f"stack up in {time.monotonic() - started:.1f}s ({self.root})")

    def _spawn(self, name: str, argv: list[str]) -> Child:
        log_path = self.root / "logs" / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - child keeps it
        process = subprocess.Popen(argv, env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def _start_web(self) -> None:
        port = free_port()
        if self.web == "gunicorn":
            argv = [PYTHON, "-m", "gunicorn", "config.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
                    "-w", str(self.web_workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                    "--timeout", "300", "--backlog", "2048"]
        else:
            argv = [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port",
                    str(port), "--no-access-log", "--log-level", "warning", "--backlog", "2048"]
        web = self._spawn("web", argv)
        self.base_url = f"http://127.0.0.1:{port}"
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if web.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"web server did not start:\n{web.log_tail()}")
            time.sleep(0.1)

    def _start_worker(self) -> None:
        worker = self._spawn("worker", [
            PYTHON, "-m", "celery", "-A", "config.celery_app", "worker", "--loglevel", "INFO",
            "--queues", "interactive,background", "--pool", self.worker_pool,
            "--concurrency", str(self.worker_concurrency), "--hostname", f"bench-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle",
        ])
        deadline = time.monotonic() + 60
        while "ready." not in worker.log_tail(200_000):
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{worker.log_tail()}")
            time.sleep(0.1)

    def db_connections(self) -> int:
        """Connections open on the benchmark database, other than the monitor's own."""
        row = self.monitor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        return int(row[0])

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each part of the stack, and this client."""
        tick = os.sysconf("SC_CLK_TCK")

        def cpu(pids, *, reaped_children: bool = False) -> float:
            total = 0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    total += int(fields[11]) + int(fields[12])
                    if reaped_children and pid == pids[0]:
                        # Backends that already exited (one per connection when connections
                        # are not kept) are counted in the postmaster's cutime/cstime.
                        total += int(fields[13]) + int(fields[14])
                except (OSError, IndexError):
                    pass
            return total / tick

        parts = {c.name: cpu(c.pids()) for c in self.children}
        postmaster = int((self.root / "pg" / "postmaster.pid").read_text().split()[0])
        parts["postgres"] = cpu(Child("pg", type("P", (), {"pid": postmaster})(), Path()).pids(),
                                reaped_children=True)
        redis = getattr(getattr(self.services.redis, "_server", None), "_process", None)
        if redis is not None:
            parts["valkey"] = cpu([redis.pid])
        parts["bench client"] = cpu([os.getpid()])
        return parts

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                try:
                    os.killpg(child.process.pid, signal.SIGTERM) if child.name != "fake_llm" else child.process.terminate()
                except ProcessLookupError:
                    pass
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    child.process.kill()
                child.process.wait()
        self.children.clear()
        if getattr(self, "monitor", None) is not None:
            self.monitor.close()
            self.monitor = None
        if self.services is not None:
            self.services.stop()
            self.services = None
        if self.root is not None and not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)
