"""Azure OpenAI: an endpoint per resource, an API version, and deployments as models."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import openai

from credentials.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatParams,
    ChatResult,
    FieldSpec,
    ProviderConfigError,
    ProviderCredential,
    cancel_environment_headers,
    shared_http_client,
)
from credentials.providers.openai_provider import (
    API_KEY_FIELD,
    DEFAULT_CLIENT_TIMEOUT,
    OpenAIProvider,
)

DEPLOYMENT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


class AzureOpenAIProvider(OpenAIProvider):
    """`model` given to chat() is the deployment name; `deployment` in config is its default."""

    id = "azure_openai"
    display_name = "Azure OpenAI"
    secret_fields = (API_KEY_FIELD,)
    config_fields = (
        FieldSpec(
            name="endpoint",
            label="Endpoint",
            kind="url",
            required=True,
            max_length=2048,
            help_text="The resource endpoint, e.g. https://my-resource.openai.azure.com/",
        ),
        FieldSpec(
            name="api_version",
            label="API version",
            required=True,
            max_length=32,
            pattern=r"\d{4}-\d{2}-\d{2}(-preview)?",
            pattern_message="Enter an API version such as 2024-10-21 or 2025-01-01-preview.",
            help_text="e.g. 2024-10-21",
        ),
        FieldSpec(
            name="deployment",
            label="Default deployment",
            max_length=64,
            pattern=DEPLOYMENT_PATTERN,
            pattern_message="Enter a deployment name (letters, digits, '.', '_' or '-').",
            help_text="Used when a step names no model.",
        ),
    )
    default_models = ("gpt-4o-mini", "gpt-4o", "gpt-4.1")
    request_id_header = "apim-request-id"

    def build_client(self, secrets: Mapping[str, str], config: Mapping[str, str]) -> Any:
        client = openai.AzureOpenAI(
            api_key=secrets["api_key"],
            azure_endpoint=config["endpoint"],
            api_version=config["api_version"],
            # No azure_deployment: each request's model picks /deployments/{model}.
            max_retries=0,
            timeout=DEFAULT_CLIENT_TIMEOUT,
            http_client=shared_http_client("openai", lambda: openai.DefaultHttpxClient(follow_redirects=False)),
            # Azure authenticates with the api-key header, added to each request.
            default_headers=cancel_environment_headers("OPENAI_CUSTOM_HEADERS", openai.Omit(), {}),
        )
        client.organization = None
        client.project = None
        client.admin_api_key = None
        client.webhook_secret = None
        return client

    def chat_once(
        self,
        client: Any,
        cred: ProviderCredential,
        *,
        model: str,
        messages: list[ChatMessage],
        params: ChatParams,
        timeout: float,
    ) -> ChatResult:
        return super().chat_once(
            client,
            cred,
            model=self.deployment(cred, model),
            messages=messages,
            params=params,
            timeout=timeout,
        )

    def chat_chunks(
        self,
        client: Any,
        cred: ProviderCredential,
        *,
        model: str,
        messages: list[ChatMessage],
        params: ChatParams,
        timeout: float,
    ) -> Iterator[ChatChunk]:
        return super().chat_chunks(
            client,
            cred,
            model=self.deployment(cred, model),
            messages=messages,
            params=params,
            timeout=timeout,
        )

    def deployment(self, cred: ProviderCredential, model: str | None) -> str:
        name = (model or "").strip() or cred.config.get("deployment", "")
        if not name:
            raise ProviderConfigError(
                {"deployment": "Name a deployment as the model, or set a default deployment."},
                provider=self.id,
            )
        if not re.fullmatch(DEPLOYMENT_PATTERN, name):
            raise ProviderConfigError(
                {"deployment": "Enter a deployment name (letters, digits, '.', '_' or '-')."},
                provider=self.id,
            )
        return name

    def max_tokens_parameter(self, cred: ProviderCredential) -> str:
        return "max_tokens"
