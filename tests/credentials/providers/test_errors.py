"""Typed provider errors: redaction, Retry-After parsing, status mapping, serialisation."""

from __future__ import annotations

import pickle
import secrets
import time
from email.utils import formatdate

import pytest

from credentials.providers.base import (
    REDACTED,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConfigError,
    ProviderCredential,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    parse_retry_after,
    provider_error_for_status,
    redact_secrets,
)


def canary() -> str:
    return f"sk-canary-{secrets.token_hex(16)}"


def test_redaction_covers_full_value_unprefixed_value_and_fragments():
    key = canary()
    text = (
        f"Incorrect API key provided: {key}. Without prefix: {key[len('sk-canary-') :]}. "
        f"Middle: x{key[12:24]}x. Masked echo: sk-can***{key[-4:]}."
    )
    redacted = redact_secrets(text, [key])
    assert key[len("sk-canary-") :][:8] not in redacted
    assert key[12:20] not in redacted
    assert "***" not in redacted
    assert redacted.count(REDACTED) >= 4
    assert redacted.startswith("Incorrect API key provided: [redacted]")


def test_redaction_leaves_other_text_alone():
    assert redact_secrets("model gpt-4o not found", [canary()]) == "model gpt-4o not found"
    assert redact_secrets("nothing to hide", []) == "nothing to hide"


def test_errors_redact_before_the_exception_exists():
    key = canary()
    error = ProviderAuthError(f"bad key {key}", status=401, secrets=[key])
    for text in (str(error), repr(error), *map(str, error.args), error.message):
        assert key not in text and key[10:] not in text
    assert error.retryable is False and error.code == "provider_auth_failed"


def test_retryable_defaults_per_class():
    assert ProviderRateLimited("x").retryable
    assert ProviderUnavailable("x").retryable
    assert ProviderTimeout("x").retryable
    assert not ProviderBadRequest("x").retryable
    assert not ProviderAuthError("x").retryable
    assert not ProviderError("x").retryable
    assert ProviderError("x", retryable=True).retryable
    assert all(
        issubclass(cls, ProviderError)
        for cls in (
            ProviderAuthError,
            ProviderRateLimited,
            ProviderUnavailable,
            ProviderTimeout,
            ProviderBadRequest,
            ProviderConfigError,
        )
    )


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (429, ProviderRateLimited),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
        (529, ProviderUnavailable),
        (408, ProviderTimeout),
        (400, ProviderBadRequest),
        (404, ProviderBadRequest),
        (422, ProviderBadRequest),
        (302, ProviderError),
    ],
)
def test_status_mapping(status, cls):
    error = provider_error_for_status(status, "boom", provider="openai")
    assert type(error) is cls and error.status == status and error.provider == "openai"


def test_retry_after_parsing():
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-1"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None
    now = time.time()
    http_date = formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after({"Retry-After": http_date}, now=now) <= 31
    past = formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"Retry-After": past}, now=now) == 0.0
    error = provider_error_for_status(429, "slow down", provider="x", headers={"Retry-After": "3"})
    assert error.retry_after == 3.0 and error.retryable


def test_config_error_carries_field_messages():
    error = ProviderConfigError({"api_key": "This field is required."}, provider="openai")
    assert error.errors == {"api_key": "This field is required."}
    assert "api_key: This field is required." in str(error)


def test_errors_survive_pickling_with_their_attributes():
    for error in (
        ProviderRateLimited(
            "slow", status=429, retry_after=2.5, provider="openai", request_id="r1"
        ),
        ProviderConfigError({"base_url": "Enter a URL with a host."}, provider="openai"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and copy.__dict__ == error.__dict__
        assert str(copy) == str(error)


def test_credential_repr_never_shows_secrets_and_it_cannot_be_serialised():
    key = canary()
    cred = ProviderCredential(credential_id="c1", secrets={"api_key": key}, config={}, version="v1")
    assert key not in repr(cred) and key not in str(cred) and key not in f"{cred}"
    assert "api_key" in repr(cred)
    with pytest.raises(TypeError):
        pickle.dumps(cred)
    with pytest.raises(TypeError):
        cred.secrets["api_key"] = "other"  # read-only view
