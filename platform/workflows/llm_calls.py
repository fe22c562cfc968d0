"""One LLM step's provider call: retries with backoff (tenacity), per-credential cooldown,
streaming deltas, and the time spent waiting on the provider."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from credentials.providers.base import (
    ChatMessage,
    ChatParams,
    ProviderCredential,
    ProviderError,
    Usage,
)
from credentials.providers.registry import provider_registry
from runevents.redis_client import shared_redis

logger = logging.getLogger(__name__)


class StreamInterrupted(ProviderError):
    """The provider's stream broke after text was already relayed: not retried, since a
    second attempt would repeat text the client has seen."""

    code = "provider_stream_interrupted"


class CallStopped(Exception):
    """The run was asked to stop while the provider was answering."""


@dataclass
class LlmCallResult:
    text: str
    usage: Usage
    model: str
    attempts: int
    provider_seconds: float


_cooldowns = shared_redis


def _cooldown_key(fingerprint: str) -> str:
    return f"kf:cooldown:{fingerprint}"


def _respect_cooldown(fingerprint: str) -> None:
    """A credential the provider told to slow down waits; other credentials do not."""
    remaining_ms = _cooldowns().pttl(_cooldown_key(fingerprint))
    if remaining_ms and remaining_ms > 0:
        time.sleep(min(remaining_ms / 1000, settings.KEYFLOW_PROVIDER_MAX_BACKOFF))


def _start_cooldown(fingerprint: str, seconds: float) -> None:
    _cooldowns().set(_cooldown_key(fingerprint), "1", px=max(1, int(seconds * 1000)))


def _retryable(exc: BaseException) -> bool:
    if not isinstance(exc, ProviderError) or isinstance(exc, StreamInterrupted):
        return False
    if not exc.retryable:
        return False
    # A provider asking us to wait longer than we may is a failure now, not a long sleep.
    return exc.retry_after is None or exc.retry_after <= settings.KEYFLOW_PROVIDER_MAX_BACKOFF


def _backoff(state: RetryCallState) -> float:
    """Exponential backoff with full jitter, never shorter than the provider's Retry-After."""
    exc = state.outcome.exception() if state.outcome else None
    exponential = min(settings.KEYFLOW_PROVIDER_MAX_BACKOFF, 0.5 * 2 ** (state.attempt_number - 1))
    wait = random.uniform(0, exponential)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        wait = max(wait, retry_after)
    return wait


def llm_call(
    *,
    provider_id: str,
    credential: ProviderCredential,
    fingerprint: str,
    model: str,
    messages: Sequence[ChatMessage],
    params: ChatParams,
    on_delta: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> LlmCallResult:
    """Call the provider; with `on_delta`, stream and relay each text delta as it comes."""
    plugin = provider_registry().get(provider_id)
    timeout = settings.KEYFLOW_PROVIDER_TIMEOUT
    provider_seconds = 0.0
    attempts = 0

    def remember_rate_limit(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            _start_cooldown(fingerprint, retry_after)
        logger.info(
            "Provider %s call for credential %s failed (%s); retrying", provider_id,
            credential.credential_id or "inline", type(exc).__name__,
        )

    def once() -> LlmCallResult:
        nonlocal provider_seconds, attempts
        attempts += 1
        _respect_cooldown(fingerprint)
        started = time.monotonic()
        try:
            if on_delta is None:
                result = plugin.chat(credential, model=model, messages=messages, params=params, timeout=timeout)
                return LlmCallResult(
                    text=result.text, usage=result.usage or Usage(), model=result.model or model,
                    attempts=attempts, provider_seconds=0,
                )
            return _stream(plugin, credential, model, messages, params, timeout, on_delta, should_stop)
        finally:
            provider_seconds += time.monotonic() - started

    def _stream(plugin, credential, model, messages, params, timeout, on_delta, should_stop):
        parts: list[str] = []
        usage, used_model = None, model
        try:
            for chunk in plugin.chat_stream(credential, model=model, messages=messages, params=params, timeout=timeout):
                if chunk.text:
                    parts.append(chunk.text)
                    on_delta(chunk.text)
                if chunk.final:
                    usage, used_model = chunk.usage, chunk.model or model
                if should_stop():
                    raise CallStopped()
        except ProviderError as exc:
            if parts:
                raise StreamInterrupted(
                    f"The provider's stream broke after {len(parts)} chunks: {exc.message}",
                    status=exc.status, provider=provider_id,
                ) from None
            raise
        return LlmCallResult(
            text="".join(parts), usage=usage or Usage(), model=used_model, attempts=attempts,
            provider_seconds=0,
        )

    retrying = Retrying(
        stop=stop_after_attempt(settings.KEYFLOW_PROVIDER_MAX_ATTEMPTS),
        wait=_backoff,
        retry=retry_if_exception(_retryable),
        before_sleep=remember_rate_limit,
        reraise=True,
    )
    result = retrying(once)
    result.attempts = attempts
    result.provider_seconds = provider_seconds
    return result
