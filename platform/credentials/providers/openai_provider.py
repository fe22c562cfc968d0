"""OpenAI, and any OpenAI-compatible endpoint (vLLM, Ollama, Groq, Together, OpenRouter…)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

import openai

from credentials.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatParams,
    ChatResult,
    FieldSpec,
    Provider,
    ProviderCredential,
    ProviderError,
    ProviderUnavailable,
    Usage,
    cancel_environment_headers,
    provider_error_for_status,
    sdk_connection_error,
    shared_http_client,
    transport_error,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_CLIENT_TIMEOUT = 60.0
API_KEY_FIELD = FieldSpec(
    name="api_key",
    label="API key",
    secret=True,
    required=True,
    max_length=512,
    help_text="Shown once when created in the provider's console; stored encrypted.",
)


class OpenAIProvider(Provider):
    id = "openai"
    display_name = "OpenAI"
    secret_fields = (API_KEY_FIELD,)
    config_fields = (
        FieldSpec(
            name="base_url",
            label="Base URL",
            kind="url",
            max_length=2048,
            help_text=(
                "Only for an OpenAI-compatible endpoint (vLLM, Ollama, Groq, Together, "
                "OpenRouter, DeepSeek…), e.g. https://api.groq.com/openai/v1. "
                f"Empty means {OPENAI_BASE_URL}."
            ),
        ),
        FieldSpec(name="organization", label="Organization ID", max_length=128),
        FieldSpec(name="project", label="Project ID", max_length=128),
    )
    default_models = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o4-mini")

    # The header carrying the request id in responses.
    request_id_header: ClassVar[str] = "x-request-id"

    def build_client(self, secrets: Mapping[str, str], config: Mapping[str, str]) -> Any:
        api_key = secrets["api_key"]
        client = openai.OpenAI(
            api_key=api_key,
            base_url=config.get("base_url") or OPENAI_BASE_URL,
            organization=config.get("organization"),
            project=config.get("project"),
            # Keyflow's executor owns retries and backoff, per credential.
            max_retries=0,
            timeout=DEFAULT_CLIENT_TIMEOUT,
            # A key is never carried along a redirect to wherever an endpoint points.
            http_client=shared_http_client("openai", lambda: openai.DefaultHttpxClient(follow_redirects=False)),
            default_headers=cancel_environment_headers(
                "OPENAI_CUSTOM_HEADERS", openai.Omit(), {"Authorization": f"Bearer {api_key}"}
            ),
        )
        # Options left unset are read from the process environment (OPENAI_ORG_ID,
        # OPENAI_PROJECT_ID, OPENAI_ADMIN_KEY): those describe the platform's own
        # account, never this credential's.
        client.organization = config.get("organization") or None
        client.project = config.get("project") or None
        client.admin_api_key = None
        client.webhook_secret = None
        return client

    # -- calls --

    def list_models(self, client: Any, cred: ProviderCredential, *, timeout: float) -> list[str]:
        page = client.models.list(timeout=timeout)
        return [model.id for model in page.data if getattr(model, "id", None)]

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
        raw = client.chat.completions.with_raw_response.create(
            **self.request_arguments(cred, model=model, messages=messages, params=params),
            timeout=timeout,
        )
        response = raw.parse()
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content or "") if choice is not None and choice.message else ""
        return ChatResult(
            text=text,
            usage=_usage(response.usage),
            model=response.model or model,
            finish_reason=choice.finish_reason if choice is not None else None,
            request_id=self.request_id(raw.headers),
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
        stream = client.chat.completions.create(
            **self.request_arguments(cred, model=model, messages=messages, params=params),
            stream=True,
            stream_options={"include_usage": True},
            timeout=timeout,
        )
        with stream:
            request_id = self.request_id(stream.response.headers)
            usage: Usage | None = None
            finish_reason: str | None = None
            served_model = model
            for event in stream:
                served_model = event.model or served_model
                if event.usage is not None:
                    usage = _usage(event.usage)
                for choice in event.choices or ():
                    if choice.index != 0:
                        continue
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        yield ChatChunk(text=text)
        if finish_reason is None:
            # A connection closed cleanly mid-answer looks like a short answer otherwise.
            raise ProviderUnavailable(
                f"{self.display_name} ended the stream before the answer was complete.",
                provider=self.id,
                request_id=request_id,
            )
        yield ChatChunk(
            usage=usage,
            finish_reason=finish_reason,
            model=served_model,
            request_id=request_id,
            final=True,
        )

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get(self.request_id_header) or headers.get("x-request-id")

    def request_arguments(
        self,
        cred: ProviderCredential,
        *,
        model: str,
        messages: list[ChatMessage],
        params: ChatParams,
    ) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        if params.temperature is not None:
            arguments["temperature"] = params.temperature
        if params.top_p is not None:
            arguments["top_p"] = params.top_p
        if params.max_tokens is not None:
            arguments[self.max_tokens_parameter(cred)] = params.max_tokens
        if params.stop:
            arguments["stop"] = list(params.stop)
        if params.user:
            arguments["user"] = params.user
        return arguments

    def max_tokens_parameter(self, cred: ProviderCredential) -> str:
        # OpenAI's reasoning models refuse `max_tokens`; compatible servers mostly only
        # know `max_tokens`.
        return "max_tokens" if cred.config.get("base_url") else "max_completion_tokens"

    # -- errors --

    def translate_error(self, exc: BaseException, cred: ProviderCredential) -> ProviderError | None:
        return openai_error(
            exc,
            provider=self.id,
            display_name=self.display_name,
            secrets=cred.secret_values(),
            request_id_header=self.request_id_header,
        )


def openai_error(
    exc: BaseException,
    *,
    provider: str,
    display_name: str,
    secrets: Iterable[str],
    request_id_header: str = "x-request-id",
) -> ProviderError | None:
    """The typed, redacted error for an exception raised by the openai SDK."""
    secrets = tuple(secrets)
    connection_error = sdk_connection_error(
        exc, openai, provider=provider, display_name=display_name, secrets=secrets
    )
    if connection_error is not None:
        return connection_error
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return provider_error_for_status(
            status,
            f"{display_name} answered HTTP {status}: {_body_message(exc.body, exc.message)}",
            provider=provider,
            headers=exc.response.headers,
            request_id=exc.response.headers.get(request_id_header) or exc.request_id,
            secrets=secrets,
        )
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        return ProviderUnavailable(
            f"{display_name} reported an error during the stream: "
            f"{_body_message(exc.body, exc.message)}",
            provider=provider,
            secrets=secrets,
        )
    if isinstance(exc, openai.OpenAIError):
        return ProviderError(
            f"{display_name} client error: {exc}", provider=provider, secrets=secrets
        )
    return transport_error(exc, provider=provider, display_name=display_name, secrets=secrets)


def _body_message(body: object, fallback: str) -> str:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
        if isinstance(body.get("message"), str):
            return body["message"]
    if isinstance(body, str) and body.strip():
        return body.strip()
    return fallback


def _usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    total = getattr(usage, "total_tokens", None)
    return Usage(prompt, completion, int(total) if total is not None else prompt + completion)
