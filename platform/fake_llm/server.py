"""The fake LLM provider's HTTP server: threads, keep-alive connections, routing."""

from __future__ import annotations

import logging
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fake_llm import control_api, provider_api
from fake_llm.calls import CallLog
from fake_llm.exchange import ClientGone, Exchange
from fake_llm.faults import FaultRule, FaultRules

logger = logging.getLogger("fake_llm")

MAX_BODY_BYTES = 32 * 1024 * 1024


class FakeLLMServer:
    """An OpenAI / Azure OpenAI / Anthropic look-alike on loopback, for tests and local runs."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: int = 0,
        *,
        verbose: bool = False,
        max_calls: int = 100_000,
    ) -> None:
        self.host = host
        self.requested_port = port
        # Added before every provider answer; may be changed while the server runs.
        self.latency_ms = latency_ms
        self.verbose = verbose
        self.call_log = CallLog(max_calls=max_calls)
        self.fault_rules = FaultRules()
        self.stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeLLMServer:
        if self._httpd is not None:
            raise RuntimeError("this FakeLLMServer was already started")
        self._httpd = _HTTPServer((self.host, self.requested_port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            # stop() waits up to one poll interval; tests start and stop many servers.
            kwargs={"poll_interval": 0.02},
            name=f"fake-llm-{self.port}",
            daemon=True,
        )
        self._thread.start()
        if self.verbose:
            logger.info("fake LLM provider listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving; hanging and sleeping requests are dropped at once."""
        if self._httpd is None or self.stopping.is_set():
            return
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.drop_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.verbose:
            logger.info("fake LLM provider stopped")

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the FakeLLMServer is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # In-process control, the same operations as FakeLLMClient over HTTP.

    def calls(self, **filters: Any) -> list[dict[str, Any]]:
        """Recorded calls, oldest first; filters: key_sha256, provider, model, since_seq."""
        return self.call_log.select(**control_api.call_filters(filters))

    def reset(self) -> None:
        self.call_log.clear()
        self.fault_rules.clear()

    def add_fault(self, **rule: Any) -> str:
        """Add a fault rule (see FaultRule); returns its id."""
        return self.fault_rules.add(FaultRule.from_dict(rule))

    def faults(self) -> list[dict[str, Any]]:
        return self.fault_rules.snapshot()

    def remove_fault(self, rule_id: str) -> bool:
        return self.fault_rules.remove(rule_id)

    def clear_faults(self) -> int:
        return self.fault_rules.clear()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Hundreds of clients may connect at once; the default backlog (5) makes them wait.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], fake: FakeLLMServer) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's FQDN, which can be slow.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def drop_connections(self) -> None:
        """Wake the threads that wait on idle keep-alive connections, so they end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return  # clients hang up on purpose here (timeouts, cut streams)
        logger.exception("fake LLM: error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llm/1.0"
    sys_version = ""
    # Streamed chunks and small bodies must leave at once, not wait for an ACK.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _dispatch(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except ValueError as error:
            self.close_connection = True
            Exchange(
                self, method=self.command, path=url.path, query={}, body=b"", stopping=fake.stopping
            ).send_json(400, {"error": {"message": str(error), "type": "invalid_request_error"}})
            return
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        exchange = Exchange(
            self, method=self.command, path=url.path, query=query, body=body, stopping=fake.stopping
        )
        try:
            if url.path.startswith(control_api.PREFIX):
                control_api.serve(exchange, calls=fake.call_log, faults=fake.fault_rules)
                return
            route = provider_api.find_route(url.path, self.headers)  # type: ignore[arg-type]
            if route is None or route.method != self.command:
                status = 404 if route is None else 405
                message = f"Invalid URL ({self.command} {url.path})"
                exchange.send_json(status, provider_api.OPENAI.error_body(status, message))
                return
            call = provider_api.serve(
                exchange,
                route,
                calls=fake.call_log,
                faults=fake.fault_rules,
                latency_ms=fake.latency_ms,
            )
            if fake.verbose:
                logger.info(
                    "#%d %s %s %s -> %s key=%s model=%s stream=%s fault=%s",
                    call.seq,
                    call.provider,
                    call.method,
                    call.path,
                    call.status if call.status is not None else "none",
                    call.key_sha256[:12] if call.key_sha256 else "none",
                    call.model,
                    call.stream,
                    call.fault_id,
                )
        except ClientGone:
            pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked_body()
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        length = int(length_header)  # ValueError -> 400
        if not 0 <= length <= MAX_BODY_BYTES:
            raise ValueError("invalid Content-Length")
        return self.rfile.read(length)

    def _read_chunked_body(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError("request body too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF after each chunk

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # provider calls are logged with their record (key hash, never the key)

    def log_message(self, fmt: str, *args: Any) -> None:
        if self.server.fake.verbose:
            logger.info("%s - " + fmt, self.address_string(), *args)
