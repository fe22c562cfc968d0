"""Webhook fixtures: a real HTTP receiver on loopback and runs with a callback_url in alpha."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.utils import timezone


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Records every POST; answers 500 to the first `fail_first` of them, then `status`."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.fail_first = 0
        self.status = 200
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.receiver = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/keyflow"

    def record(self, request: ReceivedRequest) -> int:
        with self._lock:
            self.requests.append(request)
            return 500 if len(self.requests) <= self.fail_first else self.status

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = self.server.receiver.record(
            ReceivedRequest(path=self.path, headers=dict(self.headers.items()), body=body)
        )
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def allow_private(settings):
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = True
    return settings


@pytest.fixture
def eager(settings):
    """Celery tasks run in-process; retries run at once (Celery does not sleep countdowns)."""
    from config.celery_app import app

    # Read the current value first: Celery loads its configuration from Django settings
    # lazily, so reading it after overriding the setting would "restore" True.
    previous = app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def alpha(db, tenant_a):
    connection.set_tenant(tenant_a)
    yield tenant_a
    connection.set_schema_to_public()


@pytest.fixture
def make_run(alpha):
    from workflows.models import App, WorkflowRun

    def make(callback_url: str, **fields):
        app = App.objects.create(name="Hooked app", graph={})
        values = {
            "app": app,
            "response_mode": WorkflowRun.ResponseMode.ASYNC,
            "end_user": "user-1",
            "deadline_at": timezone.now() + timedelta(minutes=10),
            "callback_url": callback_url,
            "status": WorkflowRun.Status.SUCCEEDED,
        }
        values.update(fields)
        return WorkflowRun.objects.create(**values)

    return make


def run_body(run) -> dict:
    """A final body shaped like a blocking workflow response."""
    return {
        "workflow_run_id": str(run.id),
        "task_id": str(run.task_id),
        "data": {
            "id": str(run.id),
            "status": "succeeded",
            "outputs": {"answer": "Bonjour, ça va ? ✓"},
            "error": None,
            "elapsed_time": 0.42,
            "total_tokens": 17,
        },
    }
