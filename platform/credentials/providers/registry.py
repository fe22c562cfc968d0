"""The provider plugins Keyflow offers, loaded by dotted path from settings."""

from __future__ import annotations

import importlib
import os
import threading

from credentials.providers.base import Provider

DEFAULT_PROVIDERS: list[str] = [
    "credentials.providers.openai_provider.OpenAIProvider",
    "credentials.providers.azure_openai_provider.AzureOpenAIProvider",
    "credentials.providers.anthropic_provider.AnthropicProvider",
]


class UnknownProvider(LookupError):
    """No provider with this id is registered."""

    def __init__(self, provider_id: str) -> None:
        super().__init__(f"Unknown provider {provider_id!r}.")
        self.provider_id = provider_id


class ProviderRegistry:
    """Provider instances by id, in the order of `paths`."""

    def __init__(self, paths: list[str]) -> None:
        self._providers: dict[str, Provider] = {}
        for path in paths:
            cls = _import_class(path)
            if not (isinstance(cls, type) and issubclass(cls, Provider)):
                raise TypeError(f"{path} is not a Provider subclass.")
            if not cls.id:
                raise ValueError(f"{path} declares no provider id.")
            if cls.id in self._providers:
                raise ValueError(f"Provider id {cls.id!r} is registered twice ({path}).")
            self._providers[cls.id] = cls()

    def get(self, provider_id: str) -> Provider:
        try:
            return self._providers[provider_id]
        except (KeyError, TypeError):
            raise UnknownProvider(str(provider_id)) from None

    def ids(self) -> list[str]:
        return list(self._providers)

    def all(self) -> list[Provider]:
        return list(self._providers.values())

    def __contains__(self, provider_id: object) -> bool:
        return provider_id in self._providers


def _import_class(path: str) -> object:
    module_path, _, name = path.rpartition(".")
    if not module_path:
        raise ImportError(f"{path!r} is not a dotted path to a class.")
    module = importlib.import_module(module_path)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"Module {module_path!r} has no attribute {name!r}.") from None


_registry: ProviderRegistry | None = None
_registry_lock = threading.Lock()


def provider_registry() -> ProviderRegistry:
    """The process-wide registry, built once from settings.KEYFLOW_PROVIDERS (or the default)."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                _registry = ProviderRegistry(_configured_paths())
    return _registry


def provider_registry_reset() -> None:
    """Forget the built registry (tests, or after KEYFLOW_PROVIDERS changed)."""
    global _registry
    with _registry_lock:
        _registry = None


def _configured_paths() -> list[str]:
    try:
        from django.conf import settings
    except ImportError:
        return list(DEFAULT_PROVIDERS)
    # `settings.configured` stays False until first use even with DJANGO_SETTINGS_MODULE set.
    if not (settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE")):
        return list(DEFAULT_PROVIDERS)
    return list(getattr(settings, "KEYFLOW_PROVIDERS", DEFAULT_PROVIDERS))
