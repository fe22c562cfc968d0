"""OpenAI and Azure OpenAI wire formats, checked with the official `openai` SDK."""

import httpx
import openai
import pytest

from fake_llm import FakeLLMServer, key_sha256

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello there, fake model"},
]


def test_blocking_chat_echoes_the_last_user_message_with_usage(openai_client):
    completion = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: Hello there, fake model"
    assert choice.finish_reason == "stop"
    # Prompt: 3 system words + 4 user words; answer: 5 words.
    assert completion.usage.prompt_tokens == 7
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == 12


def test_streaming_sends_the_same_answer_word_by_word_then_usage(openai_client):
    stream = openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == ["Echo:", " Hello", " there,", " fake", " model"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 7
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.total_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_without_include_usage_sends_no_usage(openai_client):
    chunks = list(
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )

    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == (
        "Echo: Hello there, fake model"
    )


def test_same_request_gets_same_answer_and_usage_streaming_or_not(openai_client):
    first = openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    second = openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    streamed = list(
        openai_client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    streamed_text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert first.choices[0].message.content == second.choices[0].message.content == streamed_text
    assert first.usage.model_dump() == second.usage.model_dump() == streamed[-1].usage.model_dump()


def test_max_tokens_cuts_the_answer_to_that_many_words(openai_client):
    completion = openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=3
    )

    assert completion.choices[0].message.content == "Echo: Hello there,"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3


def test_models_listing_and_retrieval(openai_client):
    models = list(openai_client.models.list())
    model = openai_client.models.retrieve("gpt-4o-mini")

    assert "gpt-4o-mini" in [m.id for m in models]
    assert all(m.object == "model" for m in models)
    assert model.id == "gpt-4o-mini"


def test_azure_blocking_chat_answers_with_the_deployment_as_model(
    azure_client, fake_llm, azure_key
):
    completion = azure_client.chat.completions.create(model="my-gpt-deployment", messages=MESSAGES)

    assert completion.model == "my-gpt-deployment"
    assert completion.choices[0].message.content == "Echo: Hello there, fake model"
    assert completion.usage.total_tokens == 12
    [call] = fake_llm.calls()
    assert call["provider"] == "azure_openai"
    assert call["path"] == "/openai/deployments/my-gpt-deployment/chat/completions"
    assert call["model"] == "my-gpt-deployment"
    assert call["api_version"] == "2024-10-21"
    assert call["key_sha256"] == key_sha256(azure_key)


def test_azure_streaming_chat(azure_client):
    chunks = list(
        azure_client.chat.completions.create(
            model="dep", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Echo: Hello there, fake model"
    )
    assert chunks[-1].usage.total_tokens == 12


def test_azure_models_listing_validates_the_key(azure_client, fake_llm):
    models = list(azure_client.models.list())

    assert "gpt-4o-mini" in [m.id for m in models]
    [call] = fake_llm.calls()
    assert (call["provider"], call["operation"], call["path"]) == (
        "azure_openai",
        "models",
        "/openai/models",
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("POST", "/openai/deployments/dep/chat/completions?api-version=2024-10-21"),
        ("GET", "/openai/models?api-version=2024-10-21"),
    ],
)
def test_missing_key_is_a_401_in_openai_error_shape(fake_llm, method, path):
    body = {"model": "gpt-4o-mini", "messages": MESSAGES} if method == "POST" else None

    response = httpx.request(method, fake_llm.url + path, json=body)

    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert fake_llm.calls()[-1]["status"] == 401
    assert fake_llm.calls()[-1]["key_sha256"] is None


def test_missing_key_makes_the_sdk_raise_authentication_error(fake_llm):
    client = openai.OpenAI(
        base_url=fake_llm.url + "/v1",
        api_key="unused",
        max_retries=0,
        default_headers={"Authorization": ""},
    )

    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_a_malformed_request_is_a_400(openai_client):
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=[])

    assert raised.value.body["type"] == "invalid_request_error"


def test_an_unknown_path_is_a_404(fake_llm: FakeLLMServer):
    response = httpx.post(fake_llm.url + "/v1/embeddings", json={})

    assert response.status_code == 404
    assert "error" in response.json()
    assert fake_llm.calls() == []
