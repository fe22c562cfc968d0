"""Provider failures become typed errors, tested with faults injected in the fake provider."""

from __future__ import annotations

import socket
import time

import pytest

from credentials.providers.base import (
    ChatMessage,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from tests.credentials.providers.provider_cases import finished_calls, key_hash

MESSAGES = [ChatMessage("user", "hello there")]


def call_chat(case, cred, *, stream: bool, timeout: float = 10.0):
    if stream:
        return list(
            case.provider.chat_stream(cred, model=case.model, messages=MESSAGES, timeout=timeout)
        )
    return case.provider.chat(cred, model=case.model, messages=MESSAGES, timeout=timeout)


@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
@pytest.mark.parametrize(
    ("status", "error_class", "retryable"),
    [
        (401, ProviderAuthError, False),
        (403, ProviderAuthError, False),
        (429, ProviderRateLimited, True),
        (500, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (400, ProviderBadRequest, False),
        (404, ProviderBadRequest, False),
    ],
)
def test_status_errors(fake, case, make_cred, stream, status, error_class, retryable):
    cred = make_cred()
    fake.add_fault(key_sha256=key_hash(cred), status=status)
    with pytest.raises(error_class) as caught:
        call_chat(case, cred, stream=stream)
    error = caught.value
    assert type(error) is error_class
    assert error.status == status and error.retryable is retryable
    assert error.provider == case.id
    assert error.request_id  # the provider's id for this request, for support tickets
    assert error.__cause__ is None and error.__context__ is None
    assert str(status) in str(error)


@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
def test_rate_limit_carries_retry_after(fake, case, make_cred, stream):
    cred = make_cred()
    fake.add_fault(key_sha256=key_hash(cred), status=429, retry_after=2)
    with pytest.raises(ProviderRateLimited) as caught:
        call_chat(case, cred, stream=stream)
    assert caught.value.retry_after == 2.0 and caught.value.retryable


def test_faults_hit_only_the_faulty_credential(fake, case, make_cred):
    bad, good = make_cred(), make_cred()
    fake.add_fault(key_sha256=key_hash(bad), status=429, retry_after=30)
    with pytest.raises(ProviderRateLimited):
        call_chat(case, bad, stream=False)
    assert call_chat(case, good, stream=False).text.startswith("Echo:")


@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
def test_hang_becomes_a_timeout(fake, case, make_cred, stream):
    cred = make_cred()
    fake.add_fault(key_sha256=key_hash(cred), hang=True)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        call_chat(case, cred, stream=stream, timeout=0.5)
    assert time.monotonic() - started < 3  # no SDK retries: one attempt only
    assert caught.value.retryable and caught.value.__context__ is None
    assert len(fake.calls(key_sha256=key_hash(cred))) == 1


def test_slow_provider_within_the_timeout_answers(fake, case, make_cred):
    cred = make_cred()
    fake.add_fault(key_sha256=key_hash(cred), latency_ms=300)
    assert call_chat(case, cred, stream=False, timeout=5).text == "Echo: hello there"


def test_cut_stream_is_an_error_not_a_short_answer(fake, case, make_cred):
    cred = make_cred()
    fake.add_fault(key_sha256=key_hash(cred), cut_after_chunks=4)
    received = []
    with pytest.raises(ProviderUnavailable) as caught:
        for chunk in case.provider.chat_stream(cred, model=case.model, messages=MESSAGES):
            received.append(chunk)
    assert caught.value.retryable
    assert not any(chunk.final for chunk in received)
    [call] = finished_calls(fake, key_sha256=key_hash(cred))
    assert call["completed"] is False


def test_cut_blocking_answer_is_unavailable(fake, case, make_cred):
    cred = make_cred()
    fake.add_fault(key_sha256=key_hash(cred), cut_after_chunks=0)
    with pytest.raises(ProviderUnavailable):
        call_chat(case, cred, stream=False)


def test_unreachable_endpoint_is_unavailable(fake, case, make_cred):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cred = make_cred(config=case.config(f"http://127.0.0.1:{port}"))
    with pytest.raises(ProviderUnavailable) as caught:
        call_chat(case, cred, stream=False)
    assert caught.value.status is None and caught.value.retryable
    result = case.provider.validate(cred)
    assert result.ok is False and result.retryable


def test_stopping_a_stream_early_releases_it(fake, case, make_cred):
    cred = make_cred()
    stream = case.provider.chat_stream(
        cred, model=case.model, messages=[ChatMessage("user", "one two three four five six")]
    )
    first = next(stream)
    stream.close()
    assert first.text
    # The same cached client keeps serving the credential.
    assert call_chat(case, cred, stream=False).text == "Echo: hello there"


def test_validate_with_a_rejected_key(fake, case, make_cred):
    cred = make_cred()
    fake.add_fault(key_sha256=key_hash(cred), status=401, echo_key=True)
    result = case.provider.validate(cred)
    assert result.ok is False and result.models == []
    assert result.status == 401 and result.retryable is False
    key = cred.secrets["api_key"]
    assert key not in result.message and key[len("sk-canary-") :] not in result.message
    assert "[redacted]" in result.message


def test_validate_while_rate_limited_says_try_later(fake, case, make_cred):
    cred = make_cred()
    fake.add_fault(key_sha256=key_hash(cred), status=429, retry_after=1)
    result = case.provider.validate(cred)
    assert result.ok is False and result.status == 429 and result.retryable is True


def test_validate_with_malformed_config_is_not_ok(fake, case, make_cred):
    cred = make_cred(config={"base_url": "ftp://nowhere", "endpoint": "nope"})
    result = case.provider.validate(cred)
    assert result.ok is False and "Invalid credential fields" in result.message
    assert fake.calls() == []
