"""Azure OpenAI: the model is the deployment, with a default from config."""

from __future__ import annotations

import secrets

import pytest

from credentials.providers.azure_openai_provider import AzureOpenAIProvider
from credentials.providers.base import ChatMessage, ProviderConfigError, ProviderCredential
from fake_llm.client import key_sha256

MESSAGES = [ChatMessage("user", "hi")]


def azure_cred(url: str, **config: str) -> ProviderCredential:
    return ProviderCredential(
        credential_id="azure-1",
        secrets={"api_key": secrets.token_hex(16)},
        config={"endpoint": url, "api_version": "2024-10-21", **config},
        version="v1",
    )


def test_default_deployment_is_used_when_no_model_is_named(fake, fake_server):
    cred = azure_cred(fake_server.url, deployment="team-default")
    result = AzureOpenAIProvider().chat(cred, model="", messages=MESSAGES)
    assert result.text == "Echo: hi"
    [call] = fake.calls(key_sha256=key_sha256(cred.secrets["api_key"]))
    assert call["model"] == "team-default"
    assert call["path"] == "/openai/deployments/team-default/chat/completions"
    assert call["api_version"] == "2024-10-21"


def test_no_deployment_at_all_is_a_config_error(fake, fake_server):
    cred = azure_cred(fake_server.url)
    with pytest.raises(ProviderConfigError) as caught:
        AzureOpenAIProvider().chat(cred, model="", messages=MESSAGES)
    assert set(caught.value.errors) == {"deployment"}
    with pytest.raises(ProviderConfigError):
        list(AzureOpenAIProvider().chat_stream(cred, model="../models", messages=MESSAGES))
    assert fake.calls() == []
