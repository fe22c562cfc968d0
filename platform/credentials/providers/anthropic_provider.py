"""Anthropic's Messages API."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import anthropic

from credentials.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatParams,
    ChatResult,
    FieldSpec,
    Provider,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderCredential,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    Usage,
    cancel_environment_headers,
    parse_retry_after,
    provider_error_for_status,
    sdk_connection_error,
    shared_http_client,
    transport_error,
)

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
DEFAULT_CLIENT_TIMEOUT = 60.0
MODELS_PAGE_SIZE = 1000

# Anthropic's stop reasons in the vocabulary the rest of Keyflow uses (OpenAI's).
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The `error.type` of an error event inside a stream (HTTP status 200) -> typed error.
STREAM_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "authentication_error": ProviderAuthError,
    "permission_error": ProviderAuthError,
    "rate_limit_error": ProviderRateLimited,
    "overloaded_error": ProviderUnavailable,
    "api_error": ProviderUnavailable,
    "timeout_error": ProviderTimeout,
    "invalid_request_error": ProviderBadRequest,
    "not_found_error": ProviderBadRequest,
    "request_too_large": ProviderBadRequest,
}


class AnthropicProvider(Provider):
    id = "anthropic"
    display_name = "Anthropic"
    secret_fields = (
        FieldSpec(
            name="api_key",
            label="API key",
            secret=True,
            required=True,
            max_length=512,
            help_text="An Anthropic Console API key (sk-ant-…); stored encrypted.",
        ),
    )
    config_fields = (
        FieldSpec(
            name="base_url",
            label="Base URL",
            kind="url",
            max_length=2048,
            help_text=f"Only for a proxy or gateway. Empty means {ANTHROPIC_BASE_URL}.",
        ),
    )
    default_models = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
    # The Messages API requires max_tokens; used when a step sets none.
    default_max_tokens = 4096

    def build_client(self, secrets: Mapping[str, str], config: Mapping[str, str]) -> Any:
        # Explicit api_key and base_url: the SDK then reads no credential or endpoint
        # from the environment (the platform's own ANTHROPIC_* settings).
        client = anthropic.Anthropic(
            api_key=secrets["api_key"],
            base_url=config.get("base_url") or ANTHROPIC_BASE_URL,
            max_retries=0,
            timeout=DEFAULT_CLIENT_TIMEOUT,
            http_client=shared_http_client("anthropic", lambda: anthropic.DefaultHttpxClient(follow_redirects=False)),
            default_headers=cancel_environment_headers(
                "ANTHROPIC_CUSTOM_HEADERS",
                anthropic.Omit(),
                {"Authorization": f"Bearer {secrets['api_key']}"},
            ),
        )
        client.webhook_key = None
        return client

    # -- calls --

    def list_models(self, client: Any, cred: ProviderCredential, *, timeout: float) -> list[str]:
        page = client.models.list(limit=MODELS_PAGE_SIZE, timeout=timeout)
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
        message = client.messages.create(
            **self.request_arguments(model=model, messages=messages, params=params),
            timeout=timeout,
        )
        text = "".join(
            block.text for block in message.content or () if getattr(block, "type", "") == "text"
        )
        usage = message.usage
        return ChatResult(
            text=text,
            usage=_usage(_prompt_tokens(usage), getattr(usage, "output_tokens", 0) if usage else 0),
            model=message.model or model,
            finish_reason=_finish_reason(message.stop_reason),
            request_id=getattr(message, "_request_id", None),
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
        stream = client.messages.create(
            **self.request_arguments(model=model, messages=messages, params=params),
            stream=True,
            timeout=timeout,
        )
        with stream:
            request_id = stream.response.headers.get("request-id")
            served_model = model
            prompt_tokens = 0
            completion_tokens = 0
            stop_reason: str | None = None
            stopped = False
            for event in stream:
                kind = getattr(event, "type", None)
                if kind == "message_start":
                    served_model = event.message.model or served_model
                    prompt_tokens = _prompt_tokens(event.message.usage)
                    completion_tokens = getattr(event.message.usage, "output_tokens", 0) or 0
                elif kind == "content_block_delta":
                    if getattr(event.delta, "type", None) == "text_delta" and event.delta.text:
                        yield ChatChunk(text=event.delta.text)
                elif kind == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    # message_delta usage is cumulative; input counts may be restated.
                    if event.usage is not None:
                        completion_tokens = event.usage.output_tokens or completion_tokens
                        if event.usage.input_tokens is not None:
                            prompt_tokens = _prompt_tokens(event.usage)
                elif kind == "message_stop":
                    stopped = True
        if not stopped:
            raise ProviderUnavailable(
                f"{self.display_name} ended the stream before the answer was complete.",
                provider=self.id,
                request_id=request_id,
            )
        yield ChatChunk(
            usage=_usage(prompt_tokens, completion_tokens),
            finish_reason=_finish_reason(stop_reason),
            model=served_model,
            request_id=request_id,
            final=True,
        )

    def request_arguments(
        self, *, model: str, messages: list[ChatMessage], params: ChatParams
    ) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        arguments: dict[str, Any] = {
            "model": model,
            "max_tokens": params.max_tokens or self.default_max_tokens,
            "messages": [
                {"role": m.role, "content": m.content} for m in messages if m.role != "system"
            ],
        }
        if system:
            arguments["system"] = system
        if params.stop:
            arguments["stop_sequences"] = list(params.stop)
        if params.user:
            arguments["metadata"] = {"user_id": params.user}
        # This SDK version no longer declares sampling parameters; pass what the step
        # asked for and let the API accept or refuse it.
        sampling = {
            name: value
            for name, value in (("temperature", params.temperature), ("top_p", params.top_p))
            if value is not None
        }
        if sampling:
            arguments["extra_body"] = sampling
        return arguments

    # -- errors --

    def translate_error(self, exc: BaseException, cred: ProviderCredential) -> ProviderError | None:
        return anthropic_error(
            exc, provider=self.id, display_name=self.display_name, secrets=cred.secret_values()
        )


def anthropic_error(
    exc: BaseException, *, provider: str, display_name: str, secrets: Iterable[str]
) -> ProviderError | None:
    """The typed, redacted error for an exception raised by the anthropic SDK."""
    secrets = tuple(secrets)
    connection_error = sdk_connection_error(
        exc, anthropic, provider=provider, display_name=display_name, secrets=secrets
    )
    if connection_error is not None:
        return connection_error
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        detail = _error_detail(exc)
        if status >= 400:
            return provider_error_for_status(
                status,
                f"{display_name} answered HTTP {status}: {detail}",
                provider=provider,
                headers=exc.response.headers,
                request_id=exc.request_id,
                secrets=secrets,
            )
        error_type = str(getattr(exc, "type", None) or "")
        cls = STREAM_ERROR_TYPES.get(error_type, ProviderUnavailable)
        return cls(
            f"{display_name} reported an error during the stream: {detail}",
            retry_after=parse_retry_after(exc.response.headers),
            provider=provider,
            request_id=exc.request_id,
            secrets=secrets,
        )
    if isinstance(exc, anthropic.AnthropicError):
        return ProviderError(
            f"{display_name} client error: {exc}", provider=provider, secrets=secrets
        )
    return transport_error(exc, provider=provider, display_name=display_name, secrets=secrets)


def _error_detail(exc: Any) -> str:
    api_message = getattr(exc, "api_message", None)
    if isinstance(api_message, str) and api_message:
        return api_message
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return error["message"]
    if isinstance(body, str) and body.strip():
        return body.strip()
    return str(getattr(exc, "message", "") or "error")


def _prompt_tokens(usage: Any) -> int:
    # Cache reads and writes are input too (OpenAI's prompt_tokens includes cached ones).
    if usage is None:
        return 0
    return sum(
        int(getattr(usage, name, 0) or 0)
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage.of(prompt_tokens, completion_tokens)


def _finish_reason(stop_reason: str | None) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, stop_reason)
