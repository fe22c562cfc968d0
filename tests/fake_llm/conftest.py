from collections.abc import Iterator

import anthropic
import openai
import pytest

from fake_llm import FakeLLMClient, FakeLLMServer

AZURE_API_VERSION = "2024-10-21"


@pytest.fixture
def openai_key() -> str:
    return "sk-test-openai-0123456789abcdef"


@pytest.fixture
def azure_key() -> str:
    return "azure-test-key-fedcba9876543210"


@pytest.fixture
def anthropic_key() -> str:
    return "sk-ant-test-0123456789abcdef"


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def fake_llm_client(fake_llm: FakeLLMServer) -> Iterator[FakeLLMClient]:
    with FakeLLMClient(fake_llm.url) as client:
        yield client


@pytest.fixture
def openai_client(fake_llm: FakeLLMServer, openai_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=fake_llm.url + "/v1", api_key=openai_key, max_retries=0, timeout=5
    ) as client:
        yield client


@pytest.fixture
def azure_client(fake_llm: FakeLLMServer, azure_key: str) -> Iterator[openai.AzureOpenAI]:
    with openai.AzureOpenAI(
        azure_endpoint=fake_llm.url,
        api_key=azure_key,
        api_version=AZURE_API_VERSION,
        max_retries=0,
        timeout=5,
    ) as client:
        yield client


@pytest.fixture
def anthropic_client(fake_llm: FakeLLMServer, anthropic_key: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=fake_llm.url, api_key=anthropic_key, max_retries=0, timeout=5
    ) as client:
        yield client
