"""Deterministic answers and token counts: a pure function of the chat request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ANSWER_PREFIX = "Echo:"


class RequestError(Exception):
    """A chat request the real provider would refuse with a 400."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class Message:
    role: str
    content: str  # the text of the message, parts joined by newlines

    def as_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class ChatRequest:
    """A chat request in provider-neutral form (an Anthropic system prompt is a message)."""

    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    stream: bool = False
    include_usage: bool = False
    user: str | None = None


@dataclass(frozen=True)
class Answer:
    text: str
    # Streaming sends these in order; joined they are exactly `text`.
    chunks: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int
    truncated: bool  # cut to max_tokens words

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def answer_for(request: ChatRequest) -> Answer:
    """`Echo: <last user message>` (whitespace normalised), cut to max_tokens words if given."""
    last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    words = [ANSWER_PREFIX, *last_user.split()]
    truncated = request.max_tokens is not None and len(words) > request.max_tokens
    if truncated:
        words = words[: max(1, request.max_tokens or 1)]
    chunks = tuple(word if index == 0 else " " + word for index, word in enumerate(words))
    return Answer(
        text="".join(chunks),
        chunks=chunks,
        prompt_tokens=max(1, sum(word_count(m.content) for m in request.messages)),
        completion_tokens=max(1, len(words)),
        truncated=truncated,
    )


def word_count(text: str) -> int:
    return len(text.split())


def content_text(content: Any) -> str:
    """The text of a message content: a string, or a list of parts whose text parts count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") == "tool_result":
                texts.append(content_text(part.get("content")))
        return "\n".join(texts)
    raise RequestError("message content must be a string or a list of content parts")


def parse_messages(raw: Any, *, param: str = "messages") -> list[Message]:
    if not isinstance(raw, list):
        raise RequestError(f"'{param}' must be a list of messages", param=param)
    messages = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise RequestError(
                f"'{param}[{index}]' must be an object with a 'role'", param=f"{param}[{index}]"
            )
        messages.append(Message(role=item["role"], content=content_text(item.get("content"))))
    return messages


def optional_positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestError(f"'{name}' must be an integer >= 1", param=name)
    return value
