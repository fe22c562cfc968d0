"""The embedded services start, survive stale state, and fail with messages that say what
to do; the launcher refuses a taken port at once."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devservices.embedded import EmbeddedPostgres, EmbeddedRedis, ServiceStartError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_postgres_restarts_after_a_crash_left_its_pid_file(tmp_path):
    import os
    import signal

    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    assert url.startswith("postgresql://postgres@")
    pid_file = tmp_path / "pg" / "postmaster.pid"
    postmaster = int(pid_file.read_text().splitlines()[0])
    os.kill(postmaster, signal.SIGKILL)  # a crash: no clean shutdown, the pid file stays
    deadline = time.monotonic() + 10
    while Path(f"/proc/{postmaster}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists()
    # The next launcher is a new process.
    script = (
        "import sys; from pathlib import Path; from devservices.embedded import EmbeddedPostgres; "
        f"s = EmbeddedPostgres(Path({str(tmp_path / 'pg')!r})); print(s.start()); s.stop()"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=REPO_ROOT / "platform")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == url
    server.stop()  # release this process's handle now, not in an atexit hook after pytest


def test_postgres_failure_names_the_service_and_what_to_do(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory's parent should be")
    with pytest.raises(ServiceStartError) as info:
        EmbeddedPostgres(blocker / "pg").start()
    message = str(info.value)
    assert "Embedded PostgreSQL failed to start" in message and "What to do" in message


def test_redis_failure_names_the_service_and_what_to_do(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ServiceStartError) as info:
        EmbeddedRedis(blocker / "redis", persist=False).start()
    assert "Embedded Redis" in str(info.value) and "What to do" in str(info.value)


def test_redis_stops_a_server_left_running_by_a_killed_launcher(tmp_path):
    import redis

    first = EmbeddedRedis(tmp_path / "redis", persist=False)
    url = first.start()
    pid = int((tmp_path / "redis" / "server.pid").read_text())
    first._server = None  # the launcher died without stopping it
    second = EmbeddedRedis(tmp_path / "redis", persist=False)
    try:
        new_url = second.start()
        assert redis.Redis.from_url(new_url).ping()
        assert not Path(f"/proc/{pid}").exists() or "valkey" not in Path(f"/proc/{pid}/cmdline").read_text()
    finally:
        second.stop()
    del url


def test_run_refuses_a_taken_port_at_once():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run([sys.executable, "dev.py", "run", "--port", str(port)], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"Port {port} is taken" in result.stdout
    assert time.monotonic() - started < 30


def test_production_settings_refuse_to_start_without_secrets(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY",)}
    env.update(KEYFLOW_ENV="production", DJANGO_SETTINGS_MODULE="config.settings.base")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr
