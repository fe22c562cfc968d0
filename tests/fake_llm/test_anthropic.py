"""Anthropic Messages wire format, checked with the official `anthropic` SDK."""

import re

import httpx
import pytest

from fake_llm import key_sha256

MODEL = "claude-sonnet-4-6"
MESSAGES = [{"role": "user", "content": "Tell me something true"}]


def test_blocking_message_echoes_with_usage_counting_the_system_prompt(anthropic_client):
    message = anthropic_client.messages.create(
        model=MODEL, max_tokens=256, system="Be brief.", messages=MESSAGES
    )

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Echo: Tell me something true"
    assert message.stop_reason == "end_turn"
    # Prompt: 2 system words + 4 user words; answer: 5 words.
    assert message.usage.input_tokens == 6
    assert message.usage.output_tokens == 5


def test_streaming_follows_the_real_event_sequence(anthropic_client):
    events = list(
        anthropic_client.messages.create(
            model=MODEL, max_tokens=256, messages=MESSAGES, stream=True
        )
    )

    types = [event.type for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert deltas == ["Echo:", " Tell", " me", " something", " true"]
    assert events[0].message.usage.input_tokens == 4
    message_delta = next(e for e in events if e.type == "message_delta")
    assert message_delta.delta.stop_reason == "end_turn"
    assert message_delta.usage.output_tokens == 5


def test_stream_helper_gives_the_blocking_answer_and_usage(anthropic_client):
    blocking = anthropic_client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)
    with anthropic_client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == blocking.content[0].text == final.content[0].text
    assert final.usage.input_tokens == blocking.usage.input_tokens
    assert final.usage.output_tokens == blocking.usage.output_tokens
    assert final.stop_reason == "end_turn"


def test_max_tokens_cuts_the_answer(anthropic_client):
    message = anthropic_client.messages.create(model=MODEL, max_tokens=2, messages=MESSAGES)

    assert message.content[0].text == "Echo: Tell"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


def test_models_listing(anthropic_client, fake_llm, anthropic_key):
    models = list(anthropic_client.models.list())

    assert MODEL in [m.id for m in models]
    assert all(m.type == "model" for m in models)
    [call] = fake_llm.calls()
    assert (call["provider"], call["operation"]) == ("anthropic", "models")
    assert call["key_sha256"] == key_sha256(anthropic_key)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", call["api_version"])  # anthropic-version


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/messages"), ("GET", "/v1/models")])
def test_missing_key_is_a_401_in_anthropic_error_shape(fake_llm, method, path):
    body = {"model": MODEL, "max_tokens": 10, "messages": MESSAGES} if method == "POST" else None

    response = httpx.request(
        method, fake_llm.url + path, json=body, headers={"anthropic-version": "2023-06-01"}
    )

    assert response.status_code == 401
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "authentication_error"
    assert payload["error"]["message"]


def test_x_api_key_header_is_accepted_like_the_sdk_bearer_token(fake_llm, anthropic_key):
    # anthropic 2.x sends api_key as a bearer token; curl, older SDKs and the docs use x-api-key.
    response = httpx.post(
        fake_llm.url + "/v1/messages",
        json={"model": MODEL, "max_tokens": 10, "messages": MESSAGES},
        headers={"x-api-key": anthropic_key, "anthropic-version": "2023-06-01"},
    )

    assert response.status_code == 200
    assert response.json()["content"] == [{"type": "text", "text": "Echo: Tell me something true"}]
    [call] = fake_llm.calls()
    assert call["key_sha256"] == key_sha256(anthropic_key)
    assert call["api_version"] == "2023-06-01"


def test_missing_max_tokens_is_a_400(fake_llm, anthropic_key):
    response = httpx.post(
        fake_llm.url + "/v1/messages",
        json={"model": MODEL, "messages": MESSAGES},
        headers={"x-api-key": anthropic_key, "anthropic-version": "2023-06-01"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
