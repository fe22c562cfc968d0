"""The provider registry, built from dotted paths."""

from __future__ import annotations

import pytest

from credentials.providers.anthropic_provider import AnthropicProvider
from credentials.providers.azure_openai_provider import AzureOpenAIProvider
from credentials.providers.base import Provider
from credentials.providers.openai_provider import OpenAIProvider
from credentials.providers.registry import (
    DEFAULT_PROVIDERS,
    ProviderRegistry,
    UnknownProvider,
    provider_registry,
    provider_registry_reset,
)


class CustomProvider(Provider):
    id = "custom"
    display_name = "Custom"


def test_default_registry_lists_the_three_providers():
    provider_registry_reset()
    registry = provider_registry()
    assert registry is provider_registry()
    assert registry.ids() == ["openai", "azure_openai", "anthropic"]
    assert isinstance(registry.get("openai"), OpenAIProvider)
    assert isinstance(registry.get("azure_openai"), AzureOpenAIProvider)
    assert isinstance(registry.get("anthropic"), AnthropicProvider)
    assert [p.id for p in registry.all()] == registry.ids()
    assert "openai" in registry and "cohere" not in registry


def test_unknown_provider():
    registry = ProviderRegistry(DEFAULT_PROVIDERS)
    with pytest.raises(UnknownProvider) as caught:
        registry.get("cohere")
    assert caught.value.provider_id == "cohere"
    assert isinstance(caught.value, LookupError)


def test_adding_a_provider_is_adding_a_path():
    registry = ProviderRegistry([*DEFAULT_PROVIDERS, f"{__name__}.CustomProvider"])
    assert registry.ids()[-1] == "custom"
    assert isinstance(registry.get("custom"), CustomProvider)


@pytest.mark.parametrize(
    ("paths", "error"),
    [
        (["credentials.providers.nope.NopeProvider"], ImportError),
        (["credentials.providers.openai_provider.NopeProvider"], ImportError),
        (["credentials.providers.openai_provider.OPENAI_BASE_URL"], TypeError),
        (["NoDots"], ImportError),
        ([DEFAULT_PROVIDERS[0], DEFAULT_PROVIDERS[0]], ValueError),
        ([f"{__name__}.Provider"], ValueError),
    ],
)
def test_misconfigured_registry_fails_loudly(paths, error):
    with pytest.raises(error):
        ProviderRegistry(paths)


def test_settings_can_import_the_default_list_without_loading_any_sdk():
    import subprocess
    import sys

    code = (
        "import sys; from credentials.providers.registry import DEFAULT_PROVIDERS; "
        "import credentials.providers; "
        "assert not {'openai', 'anthropic', 'django'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="platform", timeout=60)
