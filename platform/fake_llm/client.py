"""Drive a running fake LLM provider over HTTP: read its call record, inject faults."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from fake_llm.calls import key_sha256

__all__ = ["FakeLLMClient", "key_sha256"]


class FakeLLMClient:
    """The `/_fake/` control API of a fake provider at `url` (as printed in FAKE_LLM_URL)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url + "/_fake", timeout=timeout)

    def calls(self, **filters: Any) -> list[dict[str, Any]]:
        """Recorded calls, oldest first; filters: key_sha256, provider, model, since_seq."""
        params = {name: str(value) for name, value in filters.items() if value is not None}
        return self._request("GET", "/calls", params=params)

    def reset(self) -> None:
        """Forget all recorded calls and fault rules."""
        self._request("POST", "/reset")

    def add_fault(self, **rule: Any) -> str:
        """Add a fault rule (fields of fake_llm.FaultRule); returns its id."""
        return self._request("POST", "/faults", json=rule)["id"]

    def faults(self) -> list[dict[str, Any]]:
        return self._request("GET", "/faults")

    def remove_fault(self, rule_id: str) -> None:
        self._request("DELETE", f"/faults/{rule_id}")

    def clear_faults(self) -> int:
        return self._request("DELETE", "/faults")["cleared"]

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FakeLLMClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()
