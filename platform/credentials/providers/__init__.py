"""LLM provider plugins: declared fields, validation and chat, independent of Django models.

Modules are named `<name>_provider.py` so none of them can be mistaken for the SDK it wraps.
Importing this package imports no SDK; the registry imports provider modules on first use.
"""

from credentials.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatParams,
    ChatResult,
    FieldSpec,
    Provider,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConfigError,
    ProviderCredential,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    Usage,
    ValidationResult,
    client_cache_clear,
)
from credentials.providers.registry import (
    DEFAULT_PROVIDERS,
    ProviderRegistry,
    UnknownProvider,
    provider_registry,
    provider_registry_reset,
)

__all__ = [
    "DEFAULT_PROVIDERS",
    "ChatChunk",
    "ChatMessage",
    "ChatParams",
    "ChatResult",
    "FieldSpec",
    "Provider",
    "ProviderAuthError",
    "ProviderBadRequest",
    "ProviderConfigError",
    "ProviderCredential",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderRegistry",
    "ProviderTimeout",
    "ProviderUnavailable",
    "UnknownProvider",
    "Usage",
    "ValidationResult",
    "client_cache_clear",
    "provider_registry",
    "provider_registry_reset",
]
