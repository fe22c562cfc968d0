"""clean(): field-level errors for secret and config fields, never echoing a value."""

from __future__ import annotations

import secrets

import pytest

from credentials.providers.anthropic_provider import AnthropicProvider
from credentials.providers.azure_openai_provider import AzureOpenAIProvider
from credentials.providers.base import FieldSpec, ProviderConfigError
from credentials.providers.openai_provider import OpenAIProvider


def canary() -> str:
    return f"sk-canary-{secrets.token_hex(16)}"


def field_errors(provider, secret_values, config) -> dict[str, str]:
    with pytest.raises(ProviderConfigError) as caught:
        provider.clean(secret_values, config)
    assert caught.value.status is None and not caught.value.retryable
    return caught.value.errors


def test_clean_accepts_and_normalises_values():
    key = canary()
    cleaned = OpenAIProvider().clean(
        {"api_key": f"  {key}\n"},
        {"base_url": "http://127.0.0.1:8000/v1", "organization": "", "project": "proj_1"},
    )
    assert cleaned == (
        {"api_key": key},
        {"base_url": "http://127.0.0.1:8000/v1", "project": "proj_1"},
    )


def test_missing_api_key_is_a_field_error():
    for provider in (OpenAIProvider(), AnthropicProvider()):
        assert field_errors(provider, {}, {}) == {"api_key": "This field is required."}
        assert field_errors(provider, {"api_key": "   "}, {}) == {
            "api_key": "This field is required."
        }


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/v1",
        "example.com/v1",
        "http://",
        "https://user:pass@example.com/v1",
        "https://token@example.com/v1",
        "https://example.com/v1?key=abc",
        "https://example.com/v1#frag",
        "https://exa mple.com/v1",
        "https://example.com:99999/v1",
        "https://ex%41mple.com/v1",
        "javascript:alert(1)",
        "https://example.com/" + "a" * 2048,
    ],
)
def test_malformed_base_url_is_a_field_error(url):
    errors = field_errors(OpenAIProvider(), {"api_key": canary()}, {"base_url": url})
    assert set(errors) == {"base_url"}
    assert url not in errors["base_url"]


@pytest.mark.parametrize(
    "url", ["https://api.groq.com/openai/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1"]
)
def test_openai_compatible_base_urls_are_accepted(url):
    _, config = OpenAIProvider().clean({"api_key": canary()}, {"base_url": url})
    assert config == {"base_url": url}


def test_unknown_fields_are_refused_in_secrets_and_config():
    errors = field_errors(
        OpenAIProvider(), {"api_key": canary(), "api_secret": "x"}, {"endpoint": "https://x.y"}
    )
    assert errors == {"api_secret": "Unknown field.", "endpoint": "Unknown field."}


def test_over_long_value_is_refused_without_echoing_it():
    long_key = "sk-" + "k" * 600
    errors = field_errors(AnthropicProvider(), {"api_key": long_key}, {})
    assert errors == {"api_key": "Ensure this value has at most 512 characters (it has 603)."}
    errors = field_errors(OpenAIProvider(), {"api_key": canary()}, {"organization": "o" * 129})
    assert set(errors) == {"organization"} and "o" * 129 not in errors["organization"]


def test_secret_with_inner_whitespace_or_control_characters_is_refused():
    errors = field_errors(OpenAIProvider(), {"api_key": "sk-abc def"}, {})
    assert errors == {"api_key": "Whitespace is not allowed inside a secret."}
    errors = field_errors(OpenAIProvider(), {"api_key": "sk-abc\r\nX-Evil: 1"}, {})
    assert set(errors) == {"api_key"}


def test_non_string_values_are_refused():
    errors = field_errors(OpenAIProvider(), {"api_key": 12345}, {"project": ["p"]})
    assert errors == {"api_key": "Enter a string.", "project": "Enter a string."}


def test_azure_requires_endpoint_and_api_version():
    errors = field_errors(AzureOpenAIProvider(), {"api_key": canary()}, {})
    assert errors == {
        "endpoint": "This field is required.",
        "api_version": "This field is required.",
    }
    errors = field_errors(
        AzureOpenAIProvider(),
        {"api_key": canary()},
        {"endpoint": "https://r.openai.azure.com", "api_version": "latest", "deployment": "a/b"},
    )
    assert set(errors) == {"api_version", "deployment"}
    _, config = AzureOpenAIProvider().clean(
        {"api_key": canary()},
        {
            "endpoint": "https://r.openai.azure.com/",
            "api_version": "2024-10-21",
            "deployment": "gpt-4o",
        },
    )
    assert config["api_version"] == "2024-10-21"


def test_all_errors_are_reported_at_once():
    errors = field_errors(OpenAIProvider(), {}, {"base_url": "nope", "colour": "red"})
    assert set(errors) == {"api_key", "base_url", "colour"}


def test_choice_field():
    spec = FieldSpec(name="region", label="Region", kind="choice", choices=("eu", "us"))
    assert spec.clean(" eu ") == "eu"
    with pytest.raises(ValueError, match="Select one of: eu, us"):
        spec.clean("asia")
    with pytest.raises(ValueError):
        FieldSpec(name="region", label="Region", kind="choice")


def test_declared_fields():
    for provider in (OpenAIProvider(), AzureOpenAIProvider(), AnthropicProvider()):
        assert [f.name for f in provider.secret_fields] == ["api_key"]
        assert all(f.secret for f in provider.secret_fields)
        assert not any(f.secret for f in provider.config_fields)
        assert provider.default_models
        assert provider.fingerprint_material({"api_key": "sk-x"}) == "sk-x"
