"""`python3 dev.py run` and `python3 dev.py test`: everything Keyflow needs, from one command.

run:  embedded PostgreSQL + Redis (unless DATABASE_URL / REDIS_URL are set), the fake LLM
      provider, migrations, the demo tenant, the web server and a Celery worker. Ctrl-C
      stops all of it; `.data/` keeps the data for the next run.
test: ruff, then the whole pytest suite against freshly started embedded services (or the
      external ones named by DATABASE_URL / REDIS_URL).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from cryptography.fernet import Fernet

from devservices.embedded import EmbeddedPostgres, EmbeddedRedis, ServiceStartError

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOT = REPO_ROOT / "platform"
DATA_DIR = Path(os.environ.get("KEYFLOW_DATA_DIR", REPO_ROOT / ".data"))
PYTHON = sys.executable

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def say(message: str) -> None:
    print(f"[keyflow] {message}", flush=True)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    environ = dict(os.environ)
    environ.update(extra)
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(SOURCE_ROOT), str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    environ["PYTHONUNBUFFERED"] = "1"
    return environ


def dev_secrets(path: Path) -> dict[str, str]:
    """Secrets for development, generated once and kept in .data/ (never used in production)."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if value:
                values[name] = value
    changed = False
    if "DJANGO_SECRET_KEY" not in values:
        values["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
        changed = True
    if "FIELD_ENCRYPTION_KEY" not in values:
        values["FIELD_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
        changed = True
    if "KEYFLOW_FINGERPRINT_KEY" not in values:
        values["KEYFLOW_FINGERPRINT_KEY"] = secrets.token_urlsafe(32)
        changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        path.chmod(0o600)
    return values


class Services:
    """The embedded database and Redis, started only where no external URL is given."""

    def __init__(self, root: Path, *, persist_redis: bool) -> None:
        self.root = root
        self.persist_redis = persist_redis
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None

    def start(self) -> dict[str, str]:
        values: dict[str, str] = {}
        if os.environ.get("DATABASE_URL"):
            say("Using the PostgreSQL at DATABASE_URL")
            values["DATABASE_URL"] = os.environ["DATABASE_URL"]
        else:
            started = time.monotonic()
            self.postgres = EmbeddedPostgres(self.root / "pg")
            values["DATABASE_URL"] = self.postgres.start()
            say(f"Embedded PostgreSQL ready in {time.monotonic() - started:.1f}s ({self.root / 'pg'})")
        if os.environ.get("REDIS_URL"):
            say("Using the Redis at REDIS_URL")
            values["REDIS_URL"] = os.environ["REDIS_URL"]
        else:
            started = time.monotonic()
            self.redis = EmbeddedRedis(self.root / "redis", persist=self.persist_redis)
            values["REDIS_URL"] = self.redis.start()
            say(f"Embedded Redis ready in {time.monotonic() - started:.1f}s ({values['REDIS_URL']})")
        return values

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def start_fake_llm(env: dict[str, str], log_dir: Path) -> tuple[subprocess.Popen, str]:
    ready_file = log_dir / "fake_llm.url"
    ready_file.unlink(missing_ok=True)
    log = open(log_dir / "fake_llm.log", "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [PYTHON, "-m", "fake_llm", "--host", "127.0.0.1", "--port", "0", "--ready-file", str(ready_file)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if ready_file.exists() and ready_file.read_text().strip():
            return process, ready_file.read_text().strip()
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise ServiceStartError(f"The fake LLM provider did not start; see {log_dir / 'fake_llm.log'}")


def manage(args: list[str], env: dict[str, str], *, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(REPO_ROOT / "manage.py"), *args],
        env=env, check=True, text=True,
        stdout=subprocess.PIPE if capture else None,
    )


def command_run(options) -> int:
    port = options.port
    if not port_is_free(port):
        say(f"Port {port} is taken. Stop what uses it, or run with --port N (or KEYFLOW_PORT=N).")
        return 2
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    log_dir = DATA_DIR / "logs"
    log_dir.mkdir(exist_ok=True)
    services = Services(DATA_DIR, persist_redis=True)
    children: list[tuple[str, subprocess.Popen]] = []
    runtime_env = DATA_DIR / "runtime.env"
    try:
        values = {**dev_secrets(DATA_DIR / "secrets.env"), **services.start()}
        env = child_env(values)
        fake, fake_url = start_fake_llm(env, log_dir)
        children.append(("fake LLM provider", fake))
        values["KEYFLOW_FAKE_LLM_URL"] = fake_url
        values["KEYFLOW_PORT"] = str(port)
        # Local development receives webhooks on this machine.
        values.setdefault("KEYFLOW_WEBHOOK_ALLOW_PRIVATE", "true")
        # A readable terminal: warnings and errors only (KEYFLOW_LOG_LEVEL=INFO for more).
        values.setdefault("KEYFLOW_LOG_LEVEL", os.environ.get("KEYFLOW_LOG_LEVEL", "WARNING"))
        env = child_env(values)
        say(f"Fake LLM provider at {fake_url}")
        runtime_env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        runtime_env.chmod(0o600)

        say("Migrating the public schema and every tenant schema…")
        manage(["migrate_schemas", "--executor", "standard", "-v", "0"], env)
        demo = manage(["seed_demo"], env, capture=True).stdout

        web = subprocess.Popen(
            [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            env=env,
        )
        children.append(("web server", web))
        worker = subprocess.Popen(
            [PYTHON, "-m", "celery", "-A", "config.celery_app", "worker", "--loglevel", "WARNING",
             "--queues", "interactive,background",
             "--concurrency", str(options.concurrency), "--hostname", "keyflow-dev@%h",
             "--beat", "--schedule", str(DATA_DIR / "celerybeat-schedule")],
            env=env,
        )
        children.append(("Celery worker", worker))
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        print()
        say(f"Keyflow is running. Platform admin: http://localhost:{port}/admin/")
        print(demo.rstrip())
        say("Ctrl-C stops everything; data stays in .data/ for the next run.")
        return supervise(children)
    except ServiceStartError as exc:
        say(str(exc))
        return 1
    except subprocess.CalledProcessError as exc:
        say(f"Setup step failed: {' '.join(map(str, exc.cmd[1:]))} (exit {exc.returncode})")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave servers running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_children(children)
        services.stop()
        runtime_env.unlink(missing_ok=True)
        say("Stopped.")


def wait_for_http(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ServiceStartError(f"{url} did not answer within {timeout:.0f}s")


def supervise(children: list[tuple[str, subprocess.Popen]]) -> int:
    stop = {"requested": False}

    def request_stop(signum, frame):
        stop["requested"] = True

    signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stop["requested"]:
            for name, process in children:
                if process.poll() is not None:
                    say(f"The {name} exited (code {process.returncode}); stopping everything.")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    return 0


def stop_children(children: list[tuple[str, subprocess.Popen]]) -> None:
    for _, process in reversed(children):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name, process in reversed(children):
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            say(f"The {name} did not stop in 15s; killing it.")
            process.kill()
            process.wait()


def command_test(options, pytest_args: list[str]) -> int:
    started = time.monotonic()
    if options.lint:
        say("ruff check")
        lint = subprocess.run([PYTHON, "-m", "ruff", "check", "."], cwd=REPO_ROOT)
        if lint.returncode != 0:
            say("Lint failed.")
            return lint.returncode
    from devservices.browser import ensure_chromium

    chromium = ensure_chromium(say)
    root = Path(tempfile.mkdtemp(prefix="keyflow-test-", dir=DATA_DIR if DATA_DIR.exists() else None))
    services = Services(root, persist_redis=False)
    try:
        values = services.start()
        values.update(
            KEYFLOW_ENV="test",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            KEYFLOW_FINGERPRINT_KEY=secrets.token_urlsafe(32),
            DJANGO_SETTINGS_MODULE="config.settings.test",
            # Tests receive webhooks on loopback.
            KEYFLOW_WEBHOOK_ALLOW_PRIVATE="true",
        )
        if chromium:
            values["KEYFLOW_CHROMIUM"] = chromium
        env = child_env(values)
        result = subprocess.run([PYTHON, "-m", "pytest", *pytest_args], cwd=REPO_ROOT, env=env)
    except ServiceStartError as exc:
        say(str(exc))
        return 1
    finally:
        services.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)
    say(f"Suite finished in {time.monotonic() - started:.0f}s with exit code {result.returncode}")
    if result.returncode == 5:
        say("pytest collected no tests: that is a failure, not a pass.")
        return 1
    return result.returncode


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dev.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run the whole platform locally.")
    run.add_argument("--port", type=int, default=int(os.environ.get("KEYFLOW_PORT", "8000")))
    run.add_argument("--concurrency", type=int, default=int(os.environ.get("KEYFLOW_WORKER_CONCURRENCY", "2")),
                     help="Celery worker processes.")
    test = sub.add_parser("test", help="Lint and run the whole test suite (extra args go to pytest).")
    test.add_argument("--no-lint", dest="lint", action="store_false", help="Skip ruff (local iteration only).")
    options, rest = parser.parse_known_args(argv)
    if options.command == "run":
        if rest:
            parser.error(f"unknown arguments: {' '.join(rest)}")
        return command_run(options)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    return command_test(options, rest)
