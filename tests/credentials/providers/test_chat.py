"""Each provider, blocking and streaming, against the fake provider over real HTTP."""

from __future__ import annotations

import threading

from credentials.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatParams,
    ChatResult,
    client_cache_size,
)
from tests.credentials.providers.provider_cases import finished_calls, key_hash

MESSAGES = [
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "hello there"),
    ChatMessage("assistant", "Echo: hello there"),
    ChatMessage("user", "say it once more"),
]
# The fake answers "Echo: <last user message>"; prompt tokens are the words of all messages.
ANSWER = "Echo: say it once more"
USAGE = (3 + 2 + 3 + 4, 5, 17)


def usage_tuple(usage) -> tuple[int, int, int]:
    return (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)


def test_chat_blocking(fake, case, make_cred):
    cred = make_cred()
    result = case.provider.chat(
        cred, model=case.model, messages=MESSAGES, params=ChatParams(user="end-user-42")
    )
    assert isinstance(result, ChatResult)
    assert result.text == ANSWER
    assert usage_tuple(result.usage) == USAGE
    assert result.model == case.model
    assert result.finish_reason == "stop"
    assert result.request_id

    [call] = finished_calls(fake, key_sha256=key_hash(cred))
    assert call["provider"] == case.id and call["operation"] == "chat"
    assert call["model"] == case.model and call["stream"] is False
    assert call["user"] == "end-user-42"
    assert call["messages"] == [{"role": m.role, "content": m.content} for m in MESSAGES]
    assert call["response_id"] == result.request_id
    assert call["status"] == 200


def test_chat_streaming(fake, case, make_cred):
    cred = make_cred()
    chunks = list(case.provider.chat_stream(cred, model=case.model, messages=MESSAGES))
    assert all(isinstance(chunk, ChatChunk) for chunk in chunks)
    *deltas, final = chunks
    assert len(deltas) > 1 and all(chunk.text and not chunk.final for chunk in deltas)
    assert "".join(chunk.text for chunk in deltas) == ANSWER
    assert final.final and final.text == ""
    assert usage_tuple(final.usage) == USAGE
    assert final.finish_reason == "stop"
    assert final.model == case.model
    assert final.request_id

    [call] = finished_calls(fake, key_sha256=key_hash(cred))
    assert call["stream"] is True and call["completed"] is True
    assert call["usage"] is not None  # OpenAI streams carry usage only when asked for


def test_max_tokens_reaches_the_provider(fake, case, make_cred):
    cred = make_cred()
    result = case.provider.chat(
        cred, model=case.model, messages=MESSAGES, params=ChatParams(max_tokens=2)
    )
    assert result.text == "Echo: say"
    assert result.finish_reason == "length"
    *_, final = case.provider.chat_stream(
        cred, model=case.model, messages=MESSAGES, params=ChatParams(max_tokens=2)
    )
    assert final.finish_reason == "length" and final.usage.completion_tokens == 2


def test_sampling_parameters_are_accepted(fake, case, make_cred):
    params = ChatParams(temperature=0.2, top_p=0.9, stop=["\n\n"], user="u1")
    result = case.provider.chat(make_cred(), model=case.model, messages=MESSAGES, params=params)
    assert result.text == ANSWER


def test_validate_lists_models_with_the_credentials_key(fake, case, make_cred):
    cred = make_cred()
    result = case.provider.validate(cred)
    assert result.ok is True
    assert result.models and result.models == sorted(result.models)
    [call] = fake.calls(key_sha256=key_hash(cred))
    assert call["provider"] == case.id and call["operation"] == "models"


def test_the_key_that_reaches_the_provider_is_the_credentials(fake, case, make_cred):
    first, second = make_cred(), make_cred()
    case.provider.chat(first, model=case.model, messages=MESSAGES)
    case.provider.chat(second, model=case.model, messages=MESSAGES)
    list(case.provider.chat_stream(second, model=case.model, messages=MESSAGES))
    assert len(fake.calls(key_sha256=key_hash(first))) == 1
    assert len(fake.calls(key_sha256=key_hash(second))) == 2
    assert len(fake.calls()) == 3


def test_inline_key_is_used_once_and_not_cached(fake, case, make_cred):
    cred = make_cred(credential_id=None)
    result = case.provider.chat(cred, model=case.model, messages=MESSAGES)
    assert result.text == ANSWER
    list(case.provider.chat_stream(cred, model=case.model, messages=MESSAGES))
    assert case.provider.validate(cred).ok
    assert len(fake.calls(key_sha256=key_hash(cred))) == 3
    assert client_cache_size() == 0


def test_platform_environment_never_replaces_the_credential(fake, case, make_cred, monkeypatch):
    platform_key = "sk-platform-0000000000000000000000"
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_ADMIN_KEY",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_AD_TOKEN",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
    ):
        monkeypatch.setenv(name, platform_key)
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", f"Authorization: Bearer {platform_key}")
    monkeypatch.setenv("ANTHROPIC_CUSTOM_HEADERS", f"x-api-key: {platform_key}")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-platform")
    cred = make_cred()
    assert case.provider.chat(cred, model=case.model, messages=MESSAGES).text == ANSWER
    assert case.provider.validate(cred).ok
    assert len(fake.calls(key_sha256=key_hash(cred))) == 2
    assert fake.calls(key_sha256=key_hash(make_cred(key=platform_key))) == []


def test_concurrent_calls_share_one_client(fake, case, make_cred):
    cred = make_cred()
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(case.provider.chat(cred, model=case.model, messages=MESSAGES).text)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors and results == [ANSWER] * 16
    assert client_cache_size() == 1
    assert len(fake.calls(key_sha256=key_hash(cred))) == 16
