"""Real processes for end-to-end tests: a Celery worker and a web server.

They run against the test database created by pytest-django (data they must see has to
be committed, which is why the session tenants are provisioned outside test transactions)
and the same Redis as the test process.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from django.db import connection

REPO_ROOT = Path(__file__).resolve().parents[2]


def process_env(**extra: str) -> dict[str, str]:
    environ = dict(os.environ)
    parts = urlsplit(environ["DATABASE_URL"])
    environ["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
    environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT)])
    environ["PYTHONUNBUFFERED"] = "1"
    environ.update(extra)
    return environ


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """Takes webhook deliveries on loopback at `url`: records each one's headers and body in
    `requests`, answers 500 to the first `fail_first` and 200 to the others."""

    def __init__(self, *, fail_first: int = 0, path: str = "/hooks"):
        self.requests: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        self.path = path
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(500 if len(receiver.requests) <= receiver.fail_first else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{self.path}"


def web_server_start(name: str, port: int, env: dict, log_dir, *, wait: str | None = "/healthz"
                     ) -> tuple[ManagedProcess, str]:
    """A uvicorn web server of the platform on `port`: (process, base URL), once `wait`
    answers 200 (None: at once; see `web_server_wait`)."""
    web = ManagedProcess(name, [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host",
                                "127.0.0.1", "--port", str(port), "--log-level", "warning"], env, log_dir)
    base_url = f"http://127.0.0.1:{port}"
    if wait is not None:
        web_server_wait(web, base_url, wait)
    return web, base_url


def web_server_wait(web: ManagedProcess, base_url: str, path: str = "/healthz", timeout: float = 60) -> None:
    """Until `path` answers 200; RuntimeError with the server's log if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base_url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if web.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{web.name} did not start:\n{web.log()[-4000:]}")
        time.sleep(0.1)


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv, env=env, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def e2e_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e-logs")


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, e2e_logs):
    with django_db_blocker.unblock():
        env = process_env()
    worker = ManagedProcess(
        "celery-worker",
        [sys.executable, "-m", "celery", "-A", "config.celery_app", "worker",
         "--loglevel", "INFO", "--concurrency", "2", "--pool", "prefork",
         "--queues", "interactive,background",
         "--hostname", f"e2e-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
        env, e2e_logs,
    )
    worker.wait_for_log("ready.")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def web_server(django_db_setup, django_db_blocker, e2e_logs):
    port = free_port()
    with django_db_blocker.unblock():
        env = process_env(KEYFLOW_PORT=str(port))
    web, base_url = web_server_start("web", port, env, e2e_logs)
    web.base_url = base_url
    yield web
    web.stop()


# --- Workspaces for end-to-end runs ----------------------------------------------------------
# Tenants of their own (committed), so unit tests on alpha/beta never see their defaults.


@dataclasses.dataclass
class Workspace:
    tenant: object
    keys: dict  # name -> plain provider key (canary), for checking the fake provider's record
    credentials: dict  # name -> Credential
    apps: dict  # name -> App
    app_keys: dict  # app name -> app-… token


CHAT_CONFIG = {
    "provider": "openai", "model": "gpt-4o-mini",
    "system_prompt": "You help {{ inputs.name }}.",
    "variables": [{"name": "name", "type": "string", "required": False, "default": "a friend"}],
    "history_messages": 10,
}
COMPLETION_CONFIG = {
    "provider": "anthropic", "model": "claude-3-5-haiku-latest",
    "prompt": "Translate to French: {{ inputs.query }}",
    "variables": [{"name": "query", "type": "paragraph", "required": True}],
}


def _make_workspace(slug: str, fake_url: str):
    from django_tenants.utils import tenant_context

    from credentials.resolution import OverridePolicy
    from credentials.services import credential_create
    from tenants.services import tenant_provision
    from tests.conftest import canary_key
    from workflows.examples import SUMMARIZER, TRIAGE_TWO_PROVIDERS
    from workflows.services import app_create, app_key_issue

    tenant = tenant_provision(name=f"E2E {slug}", slug=slug, admin_email=f"admin@{slug}.test").tenant
    keys = {name: canary_key() for name in ("openai_default", "openai_other", "anthropic_default")}
    with tenant_context(tenant):
        credentials = {
            "openai_default": credential_create(
                provider="openai", name="default", secrets={"api_key": keys["openai_default"]},
                config={"base_url": fake_url + "/v1"}, is_default=True),
            "openai_other": credential_create(
                provider="openai", name="customer", secrets={"api_key": keys["openai_other"]},
                config={"base_url": fake_url + "/v1"}),
            "anthropic_default": credential_create(
                provider="anthropic", name="default", secrets={"api_key": keys["anthropic_default"]},
                config={"base_url": fake_url}, is_default=True),
        }
        apps = {
            "summarizer": app_create(name="Summarizer", graph=SUMMARIZER),
            "triage": app_create(name="Triage", graph=TRIAGE_TWO_PROVIDERS),
            "chat": app_create(name="Chat", mode="chat", model_config=CHAT_CONFIG),
            "completion": app_create(name="Completion", mode="completion", model_config=COMPLETION_CONFIG),
        }
        policy = OverridePolicy(allow_inline=True, inline_endpoint_hosts=frozenset({"127.0.0.1"}))
        app_keys = {
            name: app_key_issue(tenant=tenant, app=app, policy=policy).token for name, app in apps.items()
        }
    return Workspace(tenant=tenant, keys=keys, credentials=credentials, apps=apps, app_keys=app_keys)


@pytest.fixture(scope="session")
def workspaces(django_db_setup, django_db_blocker, fake_llm):
    with django_db_blocker.unblock():
        return {slug: _make_workspace(slug, fake_llm.url) for slug in ("eone", "etwo")}


@pytest.fixture
def platform_(web_server, celery_worker, fake_llm):
    """Web server + worker up, fake provider record cleared."""
    fake_llm.reset()
    yield web_server
    fake_llm.reset()


class ServiceClient:
    """A plain HTTP client of the Service API, knowing nothing of Keyflow's code."""

    def __init__(self, base_url: str, key: str):
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def chat(self, query: str, *, mode: str = "blocking", user: str = "end-user-1", **extra):
        body = {"query": query, "inputs": extra.pop("inputs", {}), "response_mode": mode, "user": user, **extra}
        return self.http.post("/v1/chat-messages", json=body)

    def chat_stream(self, query: str, *, user: str = "end-user-1", **extra):
        from httpx_sse import connect_sse

        body = {"query": query, "inputs": extra.pop("inputs", {}), "response_mode": "streaming",
                "user": user, **extra}
        with connect_sse(self.http, "POST", "/v1/chat-messages", json=body) as source:
            return [json.loads(sse.data) for sse in source.iter_sse() if sse.data]

    def run(self, inputs: dict, *, mode: str = "blocking", user: str = "end-user-1", headers=None, **extra):
        body = {"inputs": inputs, "response_mode": mode, "user": user, **extra}
        return self.http.post("/v1/workflows/run", json=body, headers=headers or {})

    def stream(self, inputs: dict, *, user: str = "end-user-1", **extra):
        """(response, events): the SSE events, parsed by httpx-sse."""
        from httpx_sse import connect_sse

        body = {"inputs": inputs, "response_mode": "streaming", "user": user, **extra}
        events, raw = [], []
        with connect_sse(self.http, "POST", "/v1/workflows/run", json=body) as source:
            response = source.response
            for sse in source.iter_sse():
                raw.append(sse)
                if sse.data:
                    events.append(json.loads(sse.data))
        return response, events, raw
