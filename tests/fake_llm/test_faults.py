"""Injected faults, observed through the official SDKs the way Keyflow will see them."""

import threading
import time

import anthropic
import httpx
import httpx2
import openai
import pytest

from fake_llm import FakeLLMServer, FaultRuleError, key_sha256

MESSAGES = [{"role": "user", "content": "one two three four five"}]


def chat(client: openai.OpenAI, **kwargs):
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kwargs)


def test_401_makes_the_openai_sdk_raise_authentication_error(openai_client, fake_llm):
    fault_id = fake_llm.add_fault(status=401)

    with pytest.raises(openai.AuthenticationError) as raised:
        chat(openai_client)

    assert raised.value.body["code"] == "invalid_api_key"
    [call] = fake_llm.calls()
    assert (call["status"], call["fault_id"], call["usage"]) == (401, fault_id, None)


def test_401_makes_the_anthropic_sdk_raise_authentication_error(anthropic_client, fake_llm):
    fake_llm.add_fault(status=401, provider="anthropic")

    with pytest.raises(anthropic.AuthenticationError) as raised:
        anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES)

    assert raised.value.body["error"]["type"] == "authentication_error"


def test_401_on_models_listing_fails_key_validation(azure_client, fake_llm):
    fake_llm.add_fault(status=401, operation="models")

    with pytest.raises(openai.AuthenticationError):
        azure_client.models.list()
    assert azure_client.chat.completions.create(model="dep", messages=MESSAGES).choices


def test_403_makes_the_sdk_raise_permission_denied(anthropic_client, fake_llm):
    fake_llm.add_fault(status=403)

    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic_client.models.list()


def test_429_carries_retry_after_and_the_sdk_waits_that_long(fake_llm, openai_key):
    fake_llm.add_fault(status=429, retry_after=1, times=1)
    response = httpx.post(
        fake_llm.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {openai_key}"},
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"

    fake_llm.add_fault(status=429, retry_after=1, times=1)
    client = openai.OpenAI(base_url=fake_llm.url + "/v1", api_key=openai_key, max_retries=1)
    started = time.monotonic()
    completion = chat(client)
    elapsed = time.monotonic() - started

    assert completion.choices[0].message.content.startswith("Echo:")
    assert 0.95 <= elapsed < 3  # the SDK's own backoff would be ~0.5 s
    assert [c["status"] for c in fake_llm.calls()] == [429, 429, 200]


def test_429_makes_the_sdk_raise_rate_limit_error_without_retries(anthropic_client, fake_llm):
    fake_llm.add_fault(status=429, retry_after=30)

    with pytest.raises(anthropic.RateLimitError) as raised:
        anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES)

    assert raised.value.response.headers["retry-after"] == "30"
    assert raised.value.body["error"]["type"] == "rate_limit_error"


def test_503_carries_retry_after(fake_llm, openai_key):
    fake_llm.add_fault(status=503, retry_after=2)

    response = httpx.get(
        fake_llm.url + "/v1/models", headers={"Authorization": f"Bearer {openai_key}"}
    )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_500_makes_the_sdk_raise_internal_server_error(
    openai_client, anthropic_client, fake_llm, provider
):
    fake_llm.add_fault(status=500)

    if provider == "openai":
        with pytest.raises(openai.InternalServerError):
            chat(openai_client)
    else:
        with pytest.raises(anthropic.InternalServerError) as raised:
            anthropic_client.messages.create(
                model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES
            )
        assert raised.value.body["error"]["type"] == "api_error"
    assert fake_llm.calls()[0]["status"] == 500


def test_latency_delays_the_answer(openai_client, fake_llm):
    fake_llm.add_fault(latency_ms=300, times=1)

    started = time.monotonic()
    chat(openai_client)
    delayed = time.monotonic() - started
    started = time.monotonic()
    chat(openai_client)
    undelayed = time.monotonic() - started

    assert delayed >= 0.3
    assert undelayed < 0.3


def test_server_latency_delays_every_answer(openai_key):
    with FakeLLMServer(latency_ms=200) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=openai_key, max_retries=0)
        started = time.monotonic()
        chat(client)
        assert time.monotonic() - started >= 0.2


def test_hang_makes_the_sdk_time_out_and_ends_when_the_client_leaves(fake_llm, openai_key):
    fault_id = fake_llm.add_fault(hang=True)
    client = openai.OpenAI(
        base_url=fake_llm.url + "/v1", api_key=openai_key, max_retries=0, timeout=0.3
    )

    with pytest.raises(openai.APITimeoutError):
        chat(client)

    deadline = time.monotonic() + 2
    while fake_llm.calls()[0]["duration_ms"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    [call] = fake_llm.calls()
    assert call["fault_id"] == fault_id
    assert call["status"] is None
    assert call["completed"] is False
    assert call["duration_ms"] is not None  # the hang ended once the client gave up


def test_stop_returns_promptly_while_a_request_hangs(openai_key):
    server = FakeLLMServer().start()
    server.add_fault(hang=True)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=openai_key, max_retries=0)
    errors = []

    def call():
        try:
            chat(client, timeout=30)
        except openai.APIError as error:
            errors.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    while not server.calls():
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    caller.join(timeout=5)

    assert time.monotonic() - started < 1
    assert not caller.is_alive()
    assert isinstance(errors[0], openai.APIConnectionError)


def test_cut_stream_makes_the_openai_sdk_raise_after_a_partial_answer(openai_client, fake_llm):
    fake_llm.add_fault(cut_after_chunks=3)
    received = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in chat(openai_client, stream=True, stream_options={"include_usage": True}):
            received.append(chunk)

    assert len(received) == 3
    assert "".join(c.choices[0].delta.content or "" for c in received) == "Echo: one"
    assert all(c.choices[0].finish_reason is None for c in received)
    [call] = fake_llm.calls()
    assert (call["status"], call["completed"], call["usage"]) == (200, False, None)


def test_cut_stream_makes_the_anthropic_sdk_raise_without_message_stop(anthropic_client, fake_llm):
    fake_llm.add_fault(cut_after_chunks=4, provider="anthropic")
    events = []

    # anthropic 2.14 lets the transport error out of a stream unwrapped.
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        for event in anthropic_client.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES, stream=True
        ):
            events.append(event.type)

    assert "message_stop" not in events
    assert events[0] == "message_start"


def test_cut_blocking_answer_makes_the_sdk_raise(openai_client, fake_llm):
    fake_llm.add_fault(cut_after_chunks=0)

    with pytest.raises(openai.APIConnectionError):
        chat(openai_client)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_echo_key_puts_the_presented_key_in_the_error_message(
    openai_client, anthropic_client, fake_llm, openai_key, anthropic_key, provider
):
    fake_llm.add_fault(echo_key=True)  # an echoed key is an authentication error by default

    if provider == "openai":
        with pytest.raises(openai.AuthenticationError) as raised:
            chat(openai_client)
        key = openai_key
    else:
        with pytest.raises(anthropic.AuthenticationError) as raised:
            anthropic_client.messages.create(
                model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES
            )
        key = anthropic_key
    assert key in str(raised.value)
    assert key not in str(fake_llm.calls())


def test_echo_key_on_a_server_error(openai_client, fake_llm, openai_key):
    fake_llm.add_fault(status=500, echo_key=True)

    with pytest.raises(openai.InternalServerError) as raised:
        chat(openai_client)

    assert openai_key in raised.value.body["message"]


def test_times_applies_to_the_next_n_matching_requests_only(openai_client, fake_llm):
    fake_llm.add_fault(status=500, times=2)
    assert fake_llm.faults()[0]["times"] == 2

    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(openai_client)
        if fake_llm.faults():
            assert fake_llm.faults()[0]["times"] == 1

    assert chat(openai_client).choices[0].message.content.startswith("Echo:")
    assert fake_llm.faults() == []
    assert [c["status"] for c in fake_llm.calls()] == [500, 500, 200]


def test_a_rule_matching_a_key_hash_only_affects_that_key(fake_llm, openai_key):
    other_key = "sk-test-another-customer-key"
    fake_llm.add_fault(status=401, key_sha256=key_sha256(other_key))
    good = openai.OpenAI(base_url=fake_llm.url + "/v1", api_key=openai_key, max_retries=0)
    bad = openai.OpenAI(base_url=fake_llm.url + "/v1", api_key=other_key, max_retries=0)

    with pytest.raises(openai.AuthenticationError):
        chat(bad)
    assert chat(good).choices[0].message.content.startswith("Echo:")
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()

    statuses = {(c["key_sha256"], c["status"]) for c in fake_llm.calls()}
    assert statuses == {(key_sha256(other_key), 401), (key_sha256(openai_key), 200)}


def test_rules_match_by_model_and_provider(openai_client, azure_client, fake_llm):
    fake_llm.add_fault(status=503, model="gpt-4o")
    fake_llm.add_fault(status=500, provider="azure_openai")

    with pytest.raises(openai.InternalServerError) as raised:
        openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert raised.value.status_code == 503
    assert chat(openai_client).choices  # gpt-4o-mini is not matched
    with pytest.raises(openai.InternalServerError) as raised:
        azure_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == 500


def test_the_first_matching_rule_applies(openai_client, fake_llm):
    fake_llm.add_fault(status=429, times=1)
    fake_llm.add_fault(status=500)

    with pytest.raises(openai.RateLimitError):
        chat(openai_client)
    with pytest.raises(openai.InternalServerError):
        chat(openai_client)


@pytest.mark.parametrize(
    "rule",
    [
        {},
        {"status": 200},
        {"status": 500, "times": 0},
        {"status": 500, "provider": "gemini"},
        {"status": 500, "key_sha256": "sk-not-a-hash"},
        {"hang": "yes"},
        {"status": 500, "colour": "red"},
    ],
)
def test_invalid_rules_are_refused(fake_llm, rule):
    with pytest.raises(FaultRuleError):
        fake_llm.add_fault(**rule)
