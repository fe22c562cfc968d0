"""The headers a provider really sends: the credential's key and nothing of the platform's."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from credentials.providers.anthropic_provider import AnthropicProvider
from credentials.providers.azure_openai_provider import AzureOpenAIProvider
from credentials.providers.base import ProviderCredential
from credentials.providers.openai_provider import OpenAIProvider
from tests.credentials.providers.provider_cases import canary_key

PLATFORM_KEY = "sk-platform-0000000000000000000000"


class HeaderRecorder(BaseHTTPRequestHandler):
    """Answers any GET with an empty model list and keeps the request's headers."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        HeaderRecorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"object": "list", "data": [], "has_more": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    HeaderRecorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), HeaderRecorder)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("provider", "config", "auth_header", "auth_value"),
    [
        (OpenAIProvider(), lambda url: {"base_url": f"{url}/v1"}, "authorization", "Bearer {key}"),
        (
            AzureOpenAIProvider(),
            lambda url: {"endpoint": url, "api_version": "2024-10-21"},
            "api-key",
            "{key}",
        ),
        (AnthropicProvider(), lambda url: {"base_url": url}, "authorization", "Bearer {key}"),
    ],
    ids=["openai", "azure_openai", "anthropic"],
)
def test_platform_headers_from_the_environment_are_not_sent(
    recorder, monkeypatch, provider, config, auth_header, auth_value
):
    platform_headers = f"Authorization: Bearer {PLATFORM_KEY}\nX-Platform-Gateway: secret-route"
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", platform_headers)
    monkeypatch.setenv("ANTHROPIC_CUSTOM_HEADERS", platform_headers)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-platform")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-platform")
    key = canary_key()
    cred = ProviderCredential(credential_id=None, secrets={"api_key": key}, config=config(recorder))

    assert provider.validate(cred).ok

    [headers] = HeaderRecorder.seen
    assert headers[auth_header] == auth_value.format(key=key)
    assert PLATFORM_KEY not in json.dumps(headers)
    assert "x-platform-gateway" not in headers
    assert "openai-organization" not in headers and "openai-project" not in headers


def test_organization_and_project_of_the_credential_are_sent(recorder):
    cred = ProviderCredential(
        credential_id=None,
        secrets={"api_key": canary_key()},
        config={"base_url": f"{recorder}/v1", "organization": "org-tenant", "project": "proj-t"},
    )
    assert OpenAIProvider().validate(cred).ok
    [headers] = HeaderRecorder.seen
    assert headers["openai-organization"] == "org-tenant"
    assert headers["openai-project"] == "proj-t"
