"""The provider endpoints: authenticate, record, apply faults, answer in the provider's format."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

from fake_llm.answers import Answer, ChatRequest, RequestError, answer_for
from fake_llm.calls import Call, CallLog, key_sha256
from fake_llm.exchange import ClientGone, Exchange
from fake_llm.faults import FaultRule, FaultRules
from fake_llm.wire_anthropic import AnthropicWire
from fake_llm.wire_openai import AzureOpenAIWire, OpenAIWire


class Wire(Protocol):
    provider: str
    request_id_header: str

    def presented_key(self, headers: Mapping[str, str]) -> str | None: ...
    def api_version(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None: ...
    def error_body(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> dict[str, Any]: ...
    def missing_key_error(self) -> dict[str, Any]: ...
    def fault_error(self, status: int, *, echoed_key: str | None) -> dict[str, Any]: ...
    def response_id(self, seq: int) -> str: ...
    def parse_chat(self, body: Any, *, deployment: str | None = None) -> ChatRequest: ...
    def chat_body(
        self, request: ChatRequest, answer: Answer, *, response_id: str, created: int
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...
    def stream_events(
        self, request: ChatRequest, answer: Answer, *, response_id: str, created: int
    ) -> tuple[list[bytes], dict[str, Any] | None]: ...
    def models_body(self) -> dict[str, Any]: ...
    def model_body(self, model: str) -> dict[str, Any]: ...


OPENAI = OpenAIWire()
AZURE_OPENAI = AzureOpenAIWire()
ANTHROPIC = AnthropicWire()

_AZURE_CHAT = re.compile(r"/openai/deployments/([^/]+)/chat/completions")
_MODEL_ITEM = re.compile(r"/(?:v1|openai)/models/(.+)")


@dataclass(frozen=True)
class Route:
    wire: Wire
    operation: str  # "chat" or "models"
    method: str
    deployment: str | None = None
    model_id: str | None = None


def find_route(path: str, headers: Mapping[str, str]) -> Route | None:
    """The provider endpoint at this path, or None when the fake does not serve it."""
    if path == "/v1/chat/completions":
        return Route(OPENAI, "chat", "POST")
    if path == "/v1/messages":
        return Route(ANTHROPIC, "chat", "POST")
    if (match := _AZURE_CHAT.fullmatch(path)) is not None:
        return Route(AZURE_OPENAI, "chat", "POST", deployment=unquote(match[1]))
    item = _MODEL_ITEM.fullmatch(path)
    model_id = unquote(item[1]) if item is not None else None
    if path == "/v1/models" or (item is not None and path.startswith("/v1/")):
        # OpenAI and Anthropic share this path; Anthropic's SDK always says which version
        # of its API it speaks.
        anthropic = headers.get("anthropic-version") or headers.get("x-api-key")
        return Route(ANTHROPIC if anthropic else OPENAI, "models", "GET", model_id=model_id)
    if path == "/openai/models" or item is not None:
        return Route(AZURE_OPENAI, "models", "GET", model_id=model_id)
    return None


def serve(
    exchange: Exchange,
    route: Route,
    *,
    calls: CallLog,
    faults: FaultRules,
    latency_ms: int,
) -> Call:
    """Answer one provider request and record it; returns the recorded call."""
    wire = route.wire
    request: ChatRequest | None = None
    request_error: RequestError | None = None
    if route.operation == "chat":
        try:
            request = wire.parse_chat(exchange.json_body(), deployment=route.deployment)
        except RequestError as error:
            request_error = error
        except ValueError:
            request_error = RequestError("We could not parse the JSON body of your request.")

    key = wire.presented_key(exchange.headers)
    call = calls.open(
        provider=wire.provider,
        operation=route.operation,
        method=exchange.method,
        path=exchange.path,
        key_sha256=key_sha256(key) if key else None,
        model=_model_of(route, request, exchange),
        messages=[message.as_json() for message in request.messages] if request else [],
        stream=request.stream if request else False,
        user=request.user if request else None,
        api_version=wire.api_version(exchange.headers, exchange.query),
    )
    response_id = wire.response_id(call.seq)
    calls.update(call, response_id=response_id)
    record = _Settlement(calls, call)
    try:
        _respond(
            exchange,
            route,
            record,
            request=request,
            request_error=request_error,
            key=key,
            faults=faults,
            latency_ms=latency_ms,
            headers={wire.request_id_header: response_id},
        )
    except ClientGone:
        record.abandon()
    finally:
        if not record.settled:
            record.abandon()  # no answer at all: a hang, or the server stopped meanwhile
    return call


def _respond(
    exchange: Exchange,
    route: Route,
    record: _Settlement,
    *,
    request: ChatRequest | None,
    request_error: RequestError | None,
    key: str | None,
    faults: FaultRules,
    latency_ms: int,
    headers: dict[str, str],
) -> None:
    wire = route.wire
    if key is None:
        record.settle(status=401)
        exchange.send_json(401, wire.missing_key_error(), headers=headers)
        return

    call = record.call
    fault = faults.take(
        provider=wire.provider,
        model=call.model,
        key_sha256=call.key_sha256,
        operation=route.operation,
    )
    if fault is not None:
        record.calls.update(call, fault_id=fault.id)
    delay_ms = latency_ms + (fault.latency_ms if fault else 0)
    if not exchange.pause(delay_ms / 1000):
        record.abandon()
        exchange.cut()  # the server is stopping
        return
    if fault is not None and fault.hang:
        exchange.hang()
        return
    if fault is not None and fault.status is not None:
        record.settle(status=fault.status)
        exchange.send_json(
            fault.status,
            wire.fault_error(fault.status, echoed_key=key if fault.echo_key else None),
            headers={**headers, **_retry_after_header(fault)},
        )
        return
    cut_after = fault.cut_after_chunks if fault is not None else None

    if request_error is not None:
        record.settle(status=400)
        exchange.send_json(
            400,
            wire.error_body(400, request_error.message, param=request_error.param),
            headers=headers,
        )
        return

    if route.operation == "models":
        body = wire.model_body(route.model_id) if route.model_id else wire.models_body()
        record.settle(status=200, completed=cut_after is None)
        exchange.send_json(200, body, headers=headers, cut_halfway=cut_after is not None)
        return

    assert request is not None  # parse_chat either returned a request or raised
    answer = answer_for(request)
    response_id = record.call.response_id or ""
    created = int(time.time())
    if not request.stream:
        body, usage = wire.chat_body(request, answer, response_id=response_id, created=created)
        if cut_after is None:
            record.settle(status=200, usage=usage)
        else:
            record.settle(status=200, completed=False)
        exchange.send_json(200, body, headers=headers, cut_halfway=cut_after is not None)
        return

    events, usage = wire.stream_events(request, answer, response_id=response_id, created=created)
    record.status = 200
    exchange.start_stream(headers)
    for index, event in enumerate(events):
        if cut_after is not None and index >= cut_after:
            break
        if cut_after is None and index == len(events) - 1:
            record.settle(status=200, usage=usage)
        exchange.send_chunk(event)
    if cut_after is not None:
        record.settle(status=200, completed=False)
        exchange.cut()
        return
    exchange.end_stream()


class _Settlement:
    """Writes a call's outcome into the record *before* the last bytes of the answer leave,
    so that a client holding its answer always finds the call recorded in full."""

    def __init__(self, calls: CallLog, call: Call) -> None:
        self.calls = calls
        self.call = call
        self.status: int | None = None  # of the status line, once sent
        self.settled = False

    def settle(
        self, *, status: int, usage: dict[str, Any] | None = None, completed: bool = True
    ) -> None:
        self.status = status
        self.calls.finish(self.call, status=status, usage=usage, completed=completed)
        self.settled = True

    def abandon(self) -> None:
        """The answer did not (fully) reach the client."""
        self.calls.finish(self.call, status=self.status, usage=None, completed=False)
        self.settled = True


def _model_of(route: Route, request: ChatRequest | None, exchange: Exchange) -> str | None:
    if route.deployment is not None:
        return route.deployment
    if request is not None:
        return request.model
    if route.model_id is not None:
        return route.model_id
    try:
        body = exchange.json_body()
    except ValueError:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def _retry_after_header(fault: FaultRule) -> dict[str, str]:
    if fault.retry_after is None:
        return {}
    seconds = float(fault.retry_after)
    return {"Retry-After": str(int(seconds)) if seconds.is_integer() else str(seconds)}
