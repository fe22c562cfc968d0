"""Each provider plugin pointed at the fake provider, canary keys, and call-record helpers."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from credentials.providers.anthropic_provider import AnthropicProvider
from credentials.providers.azure_openai_provider import AzureOpenAIProvider
from credentials.providers.base import Provider, ProviderCredential
from credentials.providers.openai_provider import OpenAIProvider
from fake_llm.client import FakeLLMClient, key_sha256

AZURE_API_VERSION = "2024-10-21"


def canary_key() -> str:
    return f"sk-canary-{secrets.token_hex(16)}"


@dataclass(frozen=True)
class ProviderCase:
    """One provider plugin and how a credential of it points at the fake server."""

    provider: Provider
    model: str
    config: Callable[[str], dict[str, str]]

    @property
    def id(self) -> str:
        return self.provider.id


CASES = [
    ProviderCase(OpenAIProvider(), "gpt-4o-mini", lambda url: {"base_url": f"{url}/v1"}),
    ProviderCase(
        AzureOpenAIProvider(),
        "my-gpt4o-deployment",
        lambda url: {"endpoint": url, "api_version": AZURE_API_VERSION},
    ),
    ProviderCase(AnthropicProvider(), "claude-haiku-4-5", lambda url: {"base_url": url}),
]


def key_hash(cred: ProviderCredential) -> str:
    return key_sha256(cred.secrets["api_key"])


def finished_calls(fake: FakeLLMClient, **filters: object) -> list[dict]:
    """Recorded calls, once the fake has finished recording them (it may lag the client)."""
    deadline = time.monotonic() + 5
    while True:
        calls = fake.calls(**filters)
        if all(call["duration_ms"] is not None for call in calls) or time.monotonic() > deadline:
            return calls
        time.sleep(0.01)
