"""A real fake provider over HTTP (one per session), and credentials pointing at it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from credentials.providers.base import ProviderCredential, client_cache_clear
from fake_llm.client import FakeLLMClient
from fake_llm.server import FakeLLMServer
from tests.credentials.providers.provider_cases import CASES, ProviderCase, canary_key


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(port=0) as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeLLMServer) -> Iterator[FakeLLMClient]:
    """The fake's control API over HTTP, with an empty call record and no faults."""
    client = FakeLLMClient(fake_server.url)
    client.reset()
    client_cache_clear()
    yield client
    client.reset()
    client_cache_clear()
    client.close()


@pytest.fixture(params=CASES, ids=lambda case: case.id)
def case(request: pytest.FixtureRequest) -> ProviderCase:
    return request.param


@pytest.fixture
def make_cred(fake_server: FakeLLMServer, case: ProviderCase):
    """A stored credential (new id, canary key) of the current provider at the fake server."""

    def make(
        *,
        key: str | None = None,
        credential_id: str | None | bool = True,
        version: str = "v1",
        config: dict[str, str] | None = None,
    ) -> ProviderCredential:
        return ProviderCredential(
            credential_id=str(uuid.uuid4()) if credential_id is True else credential_id or None,
            secrets={"api_key": key or canary_key()},
            config=config if config is not None else case.config(fake_server.url),
            version=version,
        )

    return make


@pytest.fixture(autouse=True)
def _public_schema_after_each_test():
    """Overrides the suite-wide autouse fixture of tests/conftest.py, which resets the
    database connection's schema: these tests never touch the database and must also run
    without Django (`-p no:django`)."""
    yield
