"""The record of calls the fake provider received: who called (as a key hash), never the key."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

PROVIDERS = ("openai", "azure_openai", "anthropic")


def key_sha256(key: str) -> str:
    """Hex SHA-256 of an API key, the only form in which the fake provider keeps a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class Call:
    """One provider request as the fake saw it, and what it answered."""

    seq: int
    time: float
    provider: str
    operation: str  # "chat" or "models"
    method: str
    path: str
    key_sha256: str | None
    model: str | None
    messages: list[dict[str, str]] = field(default_factory=list)
    stream: bool = False
    user: str | None = None
    api_version: str | None = None
    response_id: str | None = None
    fault_id: str | None = None
    # None while the call is in flight, and for a call that never got a status line
    # (a hang, or a server stop during latency).
    status: int | None = None
    usage: dict[str, Any] | None = None
    # False when the response was cut short (cut_after_chunks, hang, client gone).
    completed: bool = False
    duration_ms: float | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class CallLog:
    """Thread-safe, bounded list of calls; sequence numbers keep growing across clears."""

    def __init__(self, max_calls: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._calls: deque[Call] = deque(maxlen=max_calls)
        self._last_seq = 0

    def open(self, **fields: Any) -> Call:
        with self._lock:
            self._last_seq += 1
            call = Call(seq=self._last_seq, time=time.time(), **fields)
            self._calls.append(call)
            return call

    def update(self, call: Call, **fields: Any) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(call, name, value)

    def finish(
        self,
        call: Call,
        *,
        status: int | None,
        usage: dict[str, Any] | None = None,
        completed: bool = True,
    ) -> None:
        with self._lock:
            call.status = status
            call.usage = usage
            call.completed = completed
            call.duration_ms = round((time.time() - call.time) * 1000, 3)

    def select(
        self,
        *,
        key_sha256: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        since_seq: int | None = None,
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [
                call.as_json()
                for call in self._calls
                if (key_sha256 is None or call.key_sha256 == key_sha256)
                and (provider is None or call.provider == provider)
                and (model is None or call.model == model)
                and (since_seq is None or call.seq > since_seq)
            ]

    def count(self) -> int:
        with self._lock:
            return len(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
