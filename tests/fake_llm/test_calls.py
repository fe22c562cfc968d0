"""The record of calls: what reached the provider, with the key only as its SHA-256."""

import hashlib
import json
import time

import httpx

from fake_llm import key_sha256


def test_key_sha256_is_the_hex_sha256_of_the_key():
    assert key_sha256("sk-abc") == hashlib.sha256(b"sk-abc").hexdigest()


def test_an_openai_call_is_recorded_with_what_reached_the_provider(
    openai_client, fake_llm, openai_key
):
    before = time.time()
    completion = openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "System rules"},
            {"role": "user", "content": [{"type": "text", "text": "part one"}]},
        ],
        user="end-user-42",
    )

    [call] = fake_llm.calls()
    assert call["seq"] >= 1
    assert before <= call["time"] <= time.time()
    assert call["provider"] == "openai"
    assert call["operation"] == "chat"
    assert (call["method"], call["path"]) == ("POST", "/v1/chat/completions")
    assert call["key_sha256"] == key_sha256(openai_key)
    assert call["model"] == "gpt-4o-mini"
    assert call["messages"] == [
        {"role": "system", "content": "System rules"},
        {"role": "user", "content": "part one"},
    ]
    assert call["stream"] is False
    assert call["user"] == "end-user-42"
    assert call["status"] == 200
    assert call["completed"] is True
    assert call["response_id"] == completion.id
    assert call["usage"]["prompt_tokens"] == completion.usage.prompt_tokens
    assert call["usage"]["completion_tokens"] == completion.usage.completion_tokens


def test_an_anthropic_stream_is_recorded_with_system_prompt_user_and_final_usage(
    anthropic_client, fake_llm, anthropic_key
):
    with anthropic_client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=64,
        system="Answer in French.",
        metadata={"user_id": "customer-7"},
        messages=[{"role": "user", "content": "bonjour"}],
    ) as stream:
        final = stream.get_final_message()

    [call] = fake_llm.calls(provider="anthropic")
    assert call["key_sha256"] == key_sha256(anthropic_key)
    assert call["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "bonjour"},
    ]
    assert call["stream"] is True
    assert call["user"] == "customer-7"
    assert call["usage"]["input_tokens"] == final.usage.input_tokens
    assert call["usage"]["output_tokens"] == final.usage.output_tokens


def test_the_key_text_never_appears_in_the_record(
    openai_client,
    anthropic_client,
    azure_client,
    fake_llm,
    fake_llm_client,
    openai_key,
    anthropic_key,
    azure_key,
):
    openai_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "a"}]
    )
    openai_client.models.list()
    anthropic_client.messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "b"}]
    )
    azure_client.chat.completions.create(model="dep", messages=[{"role": "user", "content": "c"}])

    over_http = httpx.get(fake_llm.url + "/_fake/calls").text
    in_process = json.dumps(fake_llm.calls())
    assert len(fake_llm_client.calls()) == 4
    for key in (openai_key, anthropic_key, azure_key):
        assert key not in over_http
        assert key not in in_process
        assert key_sha256(key) in over_http


def test_calls_filter_by_key_hash_provider_and_sequence(
    openai_client, anthropic_client, fake_llm, fake_llm_client, openai_key
):
    openai_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "1"}]
    )
    anthropic_client.messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "2"}]
    )
    openai_client.models.list()
    first_seq = fake_llm.calls()[0]["seq"]

    by_key = fake_llm_client.calls(key_sha256=key_sha256(openai_key))
    by_provider = fake_llm_client.calls(provider="anthropic")
    since = fake_llm_client.calls(since_seq=first_seq)

    assert [c["provider"] for c in by_key] == ["openai", "openai"]
    assert [c["operation"] for c in by_key] == ["chat", "models"]
    assert [c["provider"] for c in by_provider] == ["anthropic"]
    assert [c["seq"] for c in since] == [first_seq + 1, first_seq + 2]
    assert fake_llm.calls(since_seq=first_seq) == since
