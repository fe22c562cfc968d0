"""The Anthropic Messages wire format, as the official `anthropic` SDK speaks it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fake_llm.answers import (
    Answer,
    ChatRequest,
    Message,
    RequestError,
    content_text,
    optional_positive_int,
    parse_messages,
)

ANTHROPIC_MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7")
MODEL_CREATED_AT = "2025-01-01T00:00:00Z"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}

_FAULT_MESSAGES = {
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    429: "Number of requests has exceeded your rate limit. Please try again later.",
    500: "Internal server error",
    503: "Overloaded",
    529: "Overloaded",
}


def sse_event(event: str, payload: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class AnthropicWire:
    provider = "anthropic"
    request_id_header = "request-id"

    def presented_key(self, headers: Mapping[str, str]) -> str | None:
        key = (headers.get("x-api-key") or "").strip()
        if key:
            return key
        # The anthropic 2.x SDK sends `api_key` (and `auth_token`) as a bearer token.
        scheme, _, token = (headers.get("authorization") or "").strip().partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None

    def api_version(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("anthropic-version")

    def error_body(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> dict[str, Any]:
        error_type = _ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": error_type, "message": message}}

    def missing_key_error(self) -> dict[str, Any]:
        return self.error_body(401, "x-api-key header is required")

    def fault_error(self, status: int, *, echoed_key: str | None) -> dict[str, Any]:
        message = _FAULT_MESSAGES.get(status, f"Fake provider error {status}.")
        if echoed_key is not None:
            message = f"{message}: {echoed_key}"
        return self.error_body(status, message)

    def response_id(self, seq: int) -> str:
        return f"msg_fake{seq:016d}"

    def parse_chat(self, body: Any, *, deployment: str | None = None) -> ChatRequest:
        if not isinstance(body, dict):
            raise RequestError("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError("model: Field required", param="model")
        max_tokens = optional_positive_int(body, "max_tokens")
        if max_tokens is None:
            raise RequestError("max_tokens: Field required", param="max_tokens")
        messages = parse_messages(body.get("messages"))
        if not messages:
            raise RequestError("messages: at least one message is required", param="messages")
        system = body.get("system")
        if system is not None:
            messages.insert(0, Message(role="system", content=content_text(system)))
        metadata = body.get("metadata") or {}
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
        return ChatRequest(
            model=model,
            messages=tuple(messages),
            max_tokens=max_tokens,
            stream=bool(body.get("stream")),
            user=user if isinstance(user, str) else None,
        )

    def usage(self, answer: Answer) -> dict[str, Any]:
        return {
            "input_tokens": answer.prompt_tokens,
            "output_tokens": answer.completion_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    def chat_body(
        self, request: ChatRequest, answer: Answer, *, response_id: str, created: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        usage = self.usage(answer)
        body = {
            "id": response_id,
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [{"type": "text", "text": answer.text}],
            "stop_reason": _stop_reason(answer),
            "stop_sequence": None,
            "usage": usage,
        }
        return body, usage

    def stream_events(
        self, request: ChatRequest, answer: Answer, *, response_id: str, created: int
    ) -> tuple[list[bytes], dict[str, Any] | None]:
        """The event sequence of a streamed message, and the usage the client ends up with."""
        usage = self.usage(answer)
        start_usage = dict(usage, output_tokens=1)
        message = {
            "id": response_id,
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        events = [
            sse_event("message_start", {"type": "message_start", "message": message}),
            sse_event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            sse_event("ping", {"type": "ping"}),
        ]
        events += [
            sse_event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
            )
            for text in answer.chunks
        ]
        events += [
            sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
                    "usage": {"output_tokens": answer.completion_tokens},
                },
            ),
            sse_event("message_stop", {"type": "message_stop"}),
        ]
        return events, usage

    def models_body(self) -> dict[str, Any]:
        return {
            "data": [self.model_body(model) for model in ANTHROPIC_MODELS],
            "has_more": False,
            "first_id": ANTHROPIC_MODELS[0],
            "last_id": ANTHROPIC_MODELS[-1],
        }

    def model_body(self, model: str) -> dict[str, Any]:
        return {
            "type": "model",
            "id": model,
            "display_name": model.replace("-", " ").title(),
            "created_at": MODEL_CREATED_AT,
        }


def _stop_reason(answer: Answer) -> str:
    return "max_tokens" if answer.truncated else "end_turn"
