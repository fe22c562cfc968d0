"""The OpenAI and Azure OpenAI chat wire formats, as the official `openai` SDK speaks them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fake_llm.answers import (
    Answer,
    ChatRequest,
    RequestError,
    optional_positive_int,
    parse_messages,
)

OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1")
MODEL_CREATED = 1_700_000_000
SYSTEM_FINGERPRINT = "fp_fake_llm"

_FAULT_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "invalid_request_error",
        "permission_denied",
        "You are not allowed to sample from this model.",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: (
        "server_error",
        "service_unavailable",
        "The engine is currently overloaded, please try again later.",
    ),
}


def sse_data(payload: Mapping[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class OpenAIWire:
    provider = "openai"
    request_id_header = "x-request-id"

    def presented_key(self, headers: Mapping[str, str]) -> str | None:
        return bearer_token(headers)

    def api_version(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return None

    def error_body(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> dict[str, Any]:
        error_type = "server_error" if status >= 500 else "invalid_request_error"
        return {"error": {"message": message, "type": error_type, "param": param, "code": code}}

    def missing_key_error(self) -> dict[str, Any]:
        return self.error_body(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )

    def fault_error(self, status: int, *, echoed_key: str | None) -> dict[str, Any]:
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        error_type, code, message = _FAULT_ERRORS.get(
            status, (default_type, None, f"Fake provider error {status}.")
        )
        if echoed_key is not None and status == 401:
            message = (
                f"Incorrect API key provided: {echoed_key}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        elif echoed_key is not None:
            message = f"{message} (API key: {echoed_key})"
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}

    def response_id(self, seq: int) -> str:
        return f"chatcmpl-fake{seq:012d}"

    def parse_chat(self, body: Any, *, deployment: str | None = None) -> ChatRequest:
        if not isinstance(body, dict):
            raise RequestError("The request body must be a JSON object.")
        model = deployment if deployment is not None else body.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError("you must provide a model parameter", param="model")
        messages = parse_messages(body.get("messages"))
        if not messages:
            raise RequestError("[] is too short - 'messages'", param="messages")
        stream_options = body.get("stream_options") or {}
        if not isinstance(stream_options, dict):
            raise RequestError("'stream_options' must be an object", param="stream_options")
        max_tokens = optional_positive_int(body, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = optional_positive_int(body, "max_tokens")
        user = body.get("user")
        return ChatRequest(
            model=model,
            messages=tuple(messages),
            max_tokens=max_tokens,
            stream=bool(body.get("stream")),
            include_usage=bool(stream_options.get("include_usage")),
            user=user if isinstance(user, str) else None,
        )

    def usage(self, answer: Answer) -> dict[str, Any]:
        return {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.total_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def chat_body(
        self, request: ChatRequest, answer: Answer, *, response_id: str, created: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        usage = self.usage(answer)
        body = {
            "id": response_id,
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": answer.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": _finish_reason(answer),
                }
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        return body, usage

    def stream_events(
        self, request: ChatRequest, answer: Answer, *, response_id: str, created: int
    ) -> tuple[list[bytes], dict[str, Any] | None]:
        """The SSE events of a streamed answer, and the usage they carry (if asked for)."""

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
            payload: dict[str, Any] = {
                "id": response_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": request.model,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
            }
            if request.include_usage:
                payload["usage"] = None
            return payload

        events = [sse_data(chunk({"role": "assistant", "content": "", "refusal": None}, None))]
        events += [sse_data(chunk({"content": text}, None)) for text in answer.chunks]
        events.append(sse_data(chunk({}, _finish_reason(answer))))
        usage = None
        if request.include_usage:
            usage = self.usage(answer)
            final = chunk({}, None)
            final["choices"] = []
            final["usage"] = usage
            events.append(sse_data(final))
        events.append(sse_data("[DONE]"))
        return events, usage

    def models_body(self) -> dict[str, Any]:
        return {"object": "list", "data": [self.model_body(model) for model in OPENAI_MODELS]}

    def model_body(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": "fake-llm"}


class AzureOpenAIWire(OpenAIWire):
    """Azure OpenAI: same bodies, `api-key` header, deployment in the path as the model."""

    provider = "azure_openai"
    request_id_header = "apim-request-id"

    def presented_key(self, headers: Mapping[str, str]) -> str | None:
        # An Entra ID token travels as a bearer token instead of an api-key.
        key = (headers.get("api-key") or "").strip()
        return key or bearer_token(headers)

    def api_version(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return query.get("api-version")

    def missing_key_error(self) -> dict[str, Any]:
        return {
            "error": {
                "message": "Access denied due to missing subscription key. Make sure to "
                "include subscription key when making requests to an API.",
                "type": "invalid_request_error",
                "param": None,
                "code": "401",
            }
        }

    def model_body(self, model: str) -> dict[str, Any]:
        return {
            "id": model,
            "object": "model",
            "created": MODEL_CREATED,
            "created_at": MODEL_CREATED,
            "owned_by": "fake-llm",
            "status": "succeeded",
            "lifecycle_status": "generally-available",
            "capabilities": {"chat_completion": True, "completion": False, "embeddings": False},
        }


def bearer_token(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = (headers.get("authorization") or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _finish_reason(answer: Answer) -> str:
    return "length" if answer.truncated else "stop"
