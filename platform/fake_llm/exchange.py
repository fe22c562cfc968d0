"""One HTTP request and its response, over a keep-alive HTTP/1.1 connection."""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

# How often a hanging request checks whether its client left or the server is stopping.
HANG_POLL_SECONDS = 0.05


class ClientGone(Exception):
    """The client closed the connection before the response was fully written."""


class Exchange:
    def __init__(
        self,
        handler: BaseHTTPRequestHandler,
        *,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: bytes,
        stopping: threading.Event,
    ) -> None:
        self._handler = handler
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self._stopping = stopping
        self._streaming = False

    @property
    def headers(self) -> Mapping[str, str]:
        return self._handler.headers  # type: ignore[return-value]  # case-insensitive get()

    def json_body(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def send_json(
        self,
        status: int,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        cut_halfway: bool = False,
    ) -> None:
        """Send a JSON response; `cut_halfway` sends half the body, then drops the line."""
        data = json.dumps(payload).encode("utf-8")
        self._send_head(
            status,
            {
                "Content-Type": "application/json",
                "Content-Length": str(len(data)),
                **(headers or {}),
            },
        )
        if cut_halfway:
            self._write(data[: len(data) // 2])
            self.cut()
            return
        self._write(data)

    def send_empty(self, status: int) -> None:
        self._send_head(status, {"Content-Length": "0"})

    def start_stream(self, headers: Mapping[str, str] | None = None) -> None:
        self._send_head(
            200,
            {
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "Transfer-Encoding": "chunked",
                **(headers or {}),
            },
        )
        self._streaming = True

    def send_chunk(self, data: bytes) -> None:
        self._write(b"%X\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self._write(b"0\r\n\r\n")
        self._streaming = False

    def cut(self) -> None:
        """Drop the connection now, without finishing the response."""
        self._handler.close_connection = True
        try:
            self._handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def pause(self, seconds: float) -> bool:
        """Sleep; False when the server started stopping meanwhile."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def hang(self) -> None:
        """Answer nothing until the client disconnects or the server stops, then drop the line."""
        connection = self._handler.connection
        while not self._stopping.is_set():
            readable, _, _ = select.select([connection], [], [], HANG_POLL_SECONDS)
            if not readable:
                continue
            try:
                if not connection.recv(1, socket.MSG_PEEK):
                    break  # orderly close by the client
            except OSError:
                break
            # The client sent more bytes (a pipelined request): keep hanging.
            self._stopping.wait(HANG_POLL_SECONDS)
        self.cut()

    def _send_head(self, status: int, headers: Mapping[str, str]) -> None:
        handler = self._handler
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if handler.close_connection:
            handler.send_header("Connection", "close")
        try:
            handler.end_headers()
        except OSError as error:
            handler.close_connection = True
            raise ClientGone from error

    def _write(self, data: bytes) -> None:
        try:
            self._handler.wfile.write(data)
        except OSError as error:
            self._handler.close_connection = True
            raise ClientGone from error
