"""What every LLM provider plugin declares and does, independent of Django models.

A provider receives a `ProviderCredential` (decrypted secrets, in memory only) and turns
SDK calls into Keyflow's own types and typed, redacted errors. SDK clients are cached per
(provider, credential id, credential version) so connections are pooled and a changed
credential gets a fresh client; inline one-off keys are never cached.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

REDACTED = "[redacted]"

# A secret shorter than this is not redacted at all: replacing every "abc" in an error
# message would shred it, and such a value is no real key.
_MIN_REDACTED_SECRET = 4
# Any run of this many characters of a secret found in a text is redacted, which covers
# the value without its prefix and partially masked echoes such as "sk-abc***wxyz1234".
_MIN_REDACTED_FRAGMENT = 8
# Provider error bodies can be large; keep error messages short (after redaction).
_MAX_ERROR_MESSAGE = 1000
_MAX_REDACTION_INPUT = 20_000
# Tokens with a run of asterisks are masked key echoes ("sk-proj-****...abcd").
_MASKED_ECHO = re.compile(r"[^\s'\",;:()\[\]{}<>]*\*{3,}[^\s'\",;:()\[\]{}<>]*")

URL_MAX_LENGTH = 2048
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value, and every 8+ character fragment of one, replaced."""
    text = str(text)[:_MAX_REDACTION_INPUT]
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        if not isinstance(secret, str) or len(secret) < _MIN_REDACTED_SECRET:
            continue
        start = text.find(secret)
        while start != -1:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
        if len(secret) < _MIN_REDACTED_FRAGMENT:
            continue
        fragments = {
            secret[i : i + _MIN_REDACTED_FRAGMENT]
            for i in range(len(secret) - _MIN_REDACTED_FRAGMENT + 1)
        }
        for i in range(len(text) - _MIN_REDACTED_FRAGMENT + 1):
            if text[i : i + _MIN_REDACTED_FRAGMENT] not in fragments:
                continue
            end = i + _MIN_REDACTED_FRAGMENT
            while end < len(text) and text[i : end + 1] in secret:
                end += 1
            spans.append((i, end))
    if spans:
        spans.sort()
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        pieces: list[str] = []
        cursor = 0
        for start, end in merged:
            pieces.append(text[cursor:start])
            pieces.append(REDACTED)
            cursor = end
        pieces.append(text[cursor:])
        text = "".join(pieces)
    text = _MASKED_ECHO.sub(REDACTED, text)
    if len(text) > _MAX_ERROR_MESSAGE:
        text = text[: _MAX_ERROR_MESSAGE - 1] + "…"
    return text


# --- fields -------------------------------------------------------------------------------


FieldKind = Literal["text", "url", "choice"]


@dataclass(frozen=True)
class FieldSpec:
    """One secret or config field of a provider, and how its value is checked."""

    name: str
    label: str
    secret: bool = False
    required: bool = False
    help_text: str = ""
    max_length: int = 255
    kind: FieldKind = "text"
    choices: tuple[str, ...] = ()
    # Full-match regular expression for "text" fields, with the message shown when it fails.
    pattern: str | None = None
    pattern_message: str = "Enter a valid value."

    def __post_init__(self) -> None:
        if self.kind not in ("text", "url", "choice"):
            raise ValueError(f"unknown field kind {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"choice field {self.name!r} needs choices")

    def clean(self, value: object) -> str:
        """The normalised value; raises ValueError with a message that never echoes it."""
        if not isinstance(value, str):
            raise ValueError("Enter a string.")
        value = value.strip()
        if len(value) > self.max_length:
            raise ValueError(
                f"Ensure this value has at most {self.max_length} characters (it has {len(value)})."
            )
        if _CONTROL_CHARS.search(value):
            raise ValueError("Control characters are not allowed.")
        if self.secret and any(ch.isspace() for ch in value):
            # A secret goes into an HTTP header; whitespace inside it is a paste error.
            raise ValueError("Whitespace is not allowed inside a secret.")
        if self.kind == "url":
            _check_url(value)
        elif self.kind == "choice" and value not in self.choices:
            raise ValueError(f"Select one of: {', '.join(self.choices)}.")
        elif self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ValueError(self.pattern_message)
        return value


def _check_url(value: str) -> None:
    if len(value) > URL_MAX_LENGTH:
        raise ValueError(f"Ensure this URL has at most {URL_MAX_LENGTH} characters.")
    if any(ch.isspace() for ch in value):
        raise ValueError("Enter a URL without spaces.")
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port
    except ValueError:
        raise ValueError("Enter a valid URL.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("Enter an http:// or https:// URL.")
    if "@" in parts.netloc:
        raise ValueError("Credentials are not allowed in the URL.")
    host = parts.hostname or ""
    if not host:
        raise ValueError("Enter a URL with a host.")
    if not port_ok:
        raise ValueError("Enter a valid port.")
    if ":" not in host and not _HOSTNAME.match(host):  # IPv6 literals contain ':'
        raise ValueError("Enter a valid host name.")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError("Query strings and fragments are not allowed in the URL.")


# --- what a provider receives and returns -------------------------------------------------


@dataclass(frozen=True, repr=False)
class ProviderCredential:
    """The only thing a provider receives: decrypted secrets (memory only) and config.

    `credential_id` is None for an inline one-off key. `version` changes whenever the
    stored secret or config changes; it keys the SDK client cache.
    """

    credential_id: str | None
    secrets: Mapping[str, str]
    config: Mapping[str, str] = field(default_factory=dict)
    version: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "secrets", MappingProxyType(dict(self.secrets)))
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))

    def __repr__(self) -> str:
        return (
            f"ProviderCredential(credential_id={self.credential_id!r}, "
            f"secrets=<{len(self.secrets)} redacted: {', '.join(sorted(self.secrets))}>, "
            f"config={dict(self.config)!r}, version={self.version!r})"
        )

    __str__ = __repr__

    def __reduce_ex__(self, protocol: object) -> Any:
        # Decrypted secrets must never reach a task message, cache or result backend.
        raise TypeError("ProviderCredential holds decrypted secrets and cannot be serialized")

    def secret_values(self) -> tuple[str, ...]:
        """The secret values, for redaction."""
        return tuple(value for value in self.secrets.values() if isinstance(value, str))


ChatRole = Literal["system", "user", "assistant"]
CHAT_ROLES: tuple[str, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatMessage:
    role: ChatRole
    content: str

    def __post_init__(self) -> None:
        if self.role not in CHAT_ROLES:
            raise ValueError(f"role must be one of {', '.join(CHAT_ROLES)}")
        if not isinstance(self.content, str):
            raise ValueError("content must be a string")


@dataclass(frozen=True)
class ChatParams:
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    # The end user, passed to the provider for abuse monitoring (never a secret).
    user: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif self.stop is not None:
            object.__setattr__(self, "stop", tuple(self.stop))


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, prompt_tokens: int | None, completion_tokens: int | None) -> Usage:
        prompt, completion = int(prompt_tokens or 0), int(completion_tokens or 0)
        return cls(prompt, completion, prompt + completion)


@dataclass(frozen=True)
class ChatResult:
    text: str
    # None only when the provider did not report usage (some OpenAI-compatible servers).
    usage: Usage | None
    model: str
    finish_reason: str | None
    request_id: str | None = None


@dataclass(frozen=True)
class ChatChunk:
    """A text delta; the final chunk of a stream has empty text and carries the totals."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    request_id: str | None = None
    final: bool = False


@dataclass(frozen=True)
class ValidationResult:
    ok: bool
    message: str
    models: list[str] = field(default_factory=list)
    # For a failure: the provider's HTTP status, and whether trying later may succeed
    # (a 429 during validation says nothing about the key being wrong).
    status: int | None = None
    retryable: bool = False


# --- errors -------------------------------------------------------------------------------


class ProviderError(Exception):
    """A provider call failed. The message is redacted before the exception exists."""

    code: ClassVar[str] = "provider_error"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        provider: str | None = None,
        request_id: str | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        message = redact_secrets(str(message), secrets)
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.provider = provider
        self.request_id = request_id

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"

    def __reduce__(self) -> Any:
        # Keyword-only arguments would be lost by Exception's default pickling.
        return (_restore_error, (type(self), self.message, dict(self.__dict__)))


def _restore_error(cls: type[ProviderError], message: str, state: dict[str, Any]) -> ProviderError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ProviderAuthError(ProviderError):
    """401/403: the key is wrong, revoked or lacks access. Never retried, never replaced."""

    code = "provider_auth_failed"


class ProviderRateLimited(ProviderError):
    code = "provider_rate_limited"
    default_retryable = True


class ProviderUnavailable(ProviderError):
    """5xx or the provider could not be reached."""

    code = "provider_unavailable"
    default_retryable = True


class ProviderTimeout(ProviderError):
    code = "provider_timeout"
    default_retryable = True


class ProviderBadRequest(ProviderError):
    """Any other 4xx: the request (model, parameters, deployment) was refused."""

    code = "provider_bad_request"


class ProviderConfigError(ProviderError):
    """Secret or config fields are missing or malformed; `errors` maps field -> message."""

    code = "provider_config_invalid"

    def __init__(
        self,
        errors: Mapping[str, str],
        *,
        provider: str | None = None,
        message: str | None = None,
    ) -> None:
        self.errors = dict(errors)
        if message is None:
            details = "; ".join(f"{name}: {text}" for name, text in sorted(self.errors.items()))
            message = f"Invalid credential fields: {details}" if details else "Invalid credential."
        super().__init__(message, provider=provider)


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {str(name).lower(): str(value) for name, value in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            millis = float(raw_ms)
        except ValueError:
            millis = math.nan
        if math.isfinite(millis) and millis >= 0:
            return millis / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def provider_error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """The typed error for an HTTP error status from a provider."""
    cls: type[ProviderError]
    if status in (401, 403):
        cls = ProviderAuthError
    elif status == 429:
        cls = ProviderRateLimited
    elif status == 408:
        cls = ProviderTimeout
    elif status >= 500:
        cls = ProviderUnavailable
    elif 400 <= status < 500:
        cls = ProviderBadRequest
    else:  # e.g. a redirect, which Keyflow never follows with a key attached
        cls = ProviderError
    return cls(
        message,
        status=status,
        retry_after=parse_retry_after(headers),
        provider=provider,
        request_id=request_id,
        secrets=secrets,
    )


# --- SDK client cache ---------------------------------------------------------------------


class _ClientCache:
    """Bounded, thread-safe LRU of SDK clients keyed by (provider, credential id, version)."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._clients: OrderedDict[tuple[str, str, str], Any] = OrderedDict()

    def get_or_create(self, key: tuple[str, str, str], factory: Callable[[], Any]) -> Any:
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
        # Built outside the lock: building may be slow (TLS context) and must not block
        # other credentials; if two threads race, the first one stored wins.
        created = factory()
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            # Older versions of this credential hold outdated secrets: drop them now.
            for stale in [k for k in self._clients if k[:2] == key[:2]]:
                del self._clients[stale]
            self._clients[key] = created
            while len(self._clients) > self.maxsize:
                self._clients.popitem(last=False)
            return created

    def clear(self) -> None:
        with self._lock:
            self._clients.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._clients


_client_cache = _ClientCache()

_http_clients: dict[str, Any] = {}
_http_clients_lock = threading.Lock()


def shared_http_client(name: str, factory: Callable[[], Any]) -> Any:
    """One HTTP client (connection pool, TLS context) per SDK and process, under every SDK
    client of that SDK: a new credential or a one-off key then costs no new TLS context
    (~20 ms of CPU) and reuses open connections. Keys travel as per-request headers, so
    sharing the pool shares no secret; redirects stay off (see the factories)."""
    client = _http_clients.get(name)
    if client is None or client.is_closed:
        with _http_clients_lock:
            client = _http_clients.get(name)
            if client is None or client.is_closed:
                client = _http_clients[name] = factory()
    return client


def client_cache_clear() -> None:
    """Forget every cached SDK client (their connections close when they are collected)."""
    _client_cache.clear()


def client_cache_size() -> int:
    return len(_client_cache)


def cancel_environment_headers(
    variable: str, cancel: object, own: Mapping[str, str]
) -> dict[str, Any]:
    """`default_headers` for an SDK client that drop what the SDK reads from `variable`.

    The SDKs add every "Name: value" line of e.g. OPENAI_CUSTOM_HEADERS to each request.
    Those are the platform's own settings: sent with a customer's key, to a customer's
    endpoint, they would leak (or replace that key). `cancel` is the SDK's `Omit()`;
    `own` are headers this client sets itself, which win.
    """
    import os

    headers: dict[str, Any] = {}
    for line in os.environ.get(variable, "").split("\n"):
        name, colon, _ = line.partition(":")
        if colon and name.strip():
            headers[name.strip()] = cancel
    lowered = {name.lower() for name in own}
    headers = {name: value for name, value in headers.items() if name.lower() not in lowered}
    headers.update(own)
    return headers


# --- the provider plugin ------------------------------------------------------------------


class Provider:
    """Base class of provider plugins: declared fields plus validate/chat operations.

    Subclasses set the class attributes and implement `build_client`, `list_models`,
    `chat_once`, `chat_chunks` and `translate_error`; the public methods here add client
    caching and turn every SDK failure into a redacted `ProviderError`.
    """

    id: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    secret_fields: ClassVar[tuple[FieldSpec, ...]] = ()
    config_fields: ClassVar[tuple[FieldSpec, ...]] = ()
    default_models: ClassVar[tuple[str, ...]] = ()
    fingerprint_field: ClassVar[str] = "api_key"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id!r}>"

    # -- fields --

    def clean(
        self, secrets: Mapping[str, object], config: Mapping[str, object]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Checked and normalised (secrets, config); raises ProviderConfigError per field."""
        errors: dict[str, str] = {}
        cleaned_secrets = self._clean_fields(self.secret_fields, secrets, errors)
        cleaned_config = self._clean_fields(self.config_fields, config, errors)
        if errors:
            raise ProviderConfigError(errors, provider=self.id)
        return cleaned_secrets, cleaned_config

    @staticmethod
    def _clean_fields(
        specs: Sequence[FieldSpec], values: Mapping[str, object], errors: dict[str, str]
    ) -> dict[str, str]:
        known = {spec.name: spec for spec in specs}
        for name in values:
            if name not in known:
                errors[str(name)[:100]] = "Unknown field."
        cleaned: dict[str, str] = {}
        for spec in specs:
            value = values.get(spec.name)
            if value is None or (isinstance(value, str) and not value.strip()):
                if spec.required:
                    errors[spec.name] = "This field is required."
                continue
            try:
                cleaned[spec.name] = spec.clean(value)
            except ValueError as exc:
                errors[spec.name] = str(exc)
        return cleaned

    def fingerprint_material(self, secrets: Mapping[str, str]) -> str:
        """The secret value that identifies the key (hashed elsewhere into a fingerprint)."""
        return secrets[self.fingerprint_field]

    # -- operations --

    def validate(self, cred: ProviderCredential, *, timeout: float = 20.0) -> ValidationResult:
        """A cheap real call (list models); provider failures give ok=False, never raise."""
        error: ProviderError | None = None
        try:
            with self.client_for(cred) as client:
                models = self.list_models(client, cred, timeout=timeout)
        except ProviderError as exc:
            error = exc
        except Exception as exc:
            error = self.translate_error(exc, cred)
            if error is None:
                raise
        if error is not None:
            return ValidationResult(
                ok=False,
                message=error.message,
                status=error.status,
                retryable=error.retryable,
            )
        models = sorted(set(models))
        return ValidationResult(
            ok=True,
            message=f"{self.display_name} accepted the key ({len(models)} models).",
            models=models,
        )

    def chat(
        self,
        cred: ProviderCredential,
        *,
        model: str,
        messages: Sequence[ChatMessage],
        params: ChatParams | None = None,
        timeout: float = 60.0,
    ) -> ChatResult:
        """One blocking completion."""
        params = params or ChatParams()
        error: ProviderError | None = None
        with self.client_for(cred) as client:
            try:
                return self.chat_once(
                    client,
                    cred,
                    model=model,
                    messages=list(messages),
                    params=params,
                    timeout=timeout,
                )
            except ProviderError:
                raise
            except Exception as exc:
                error = self.translate_error(exc, cred)
                if error is None:
                    raise
        # Raised outside the except block so neither __cause__ nor __context__ holds the
        # SDK exception, whose text or request may contain the key.
        raise error

    def chat_stream(
        self,
        cred: ProviderCredential,
        *,
        model: str,
        messages: Sequence[ChatMessage],
        params: ChatParams | None = None,
        timeout: float = 60.0,
    ) -> Iterator[ChatChunk]:
        """Text deltas, then one final chunk carrying usage and finish_reason."""
        params = params or ChatParams()
        messages = list(messages)
        with self.client_for(cred) as client:
            chunks = self.chat_chunks(
                client, cred, model=model, messages=messages, params=params, timeout=timeout
            )
            try:
                while True:
                    error: ProviderError | None = None
                    try:
                        chunk = next(chunks)
                    except StopIteration:
                        return
                    except ProviderError:
                        raise
                    except Exception as exc:
                        error = self.translate_error(exc, cred)
                        if error is None:
                            raise
                    if error is not None:
                        raise error
                    yield chunk
            finally:
                chunks.close()

    @contextmanager
    def client_for(self, cred: ProviderCredential) -> Iterator[Any]:
        """The SDK client for this credential: cached for stored ones, made for each call of
        a one-off key (and dropped after it: its HTTP client is the shared one, which stays
        open)."""
        if cred.credential_id is None:
            yield self._new_client(cred)
            return
        key = (self.id, str(cred.credential_id), str(cred.version))
        yield _client_cache.get_or_create(key, lambda: self._new_client(cred))

    def _new_client(self, cred: ProviderCredential) -> Any:
        # Only well-formed fields reach the SDK, which would otherwise fall back to
        # environment variables (the platform's own key or endpoint) for missing ones.
        secrets, config = self.clean(cred.secrets, cred.config)
        return self.build_client(secrets, config)

    # -- hooks for subclasses --

    def build_client(self, secrets: Mapping[str, str], config: Mapping[str, str]) -> Any:
        raise NotImplementedError

    def list_models(self, client: Any, cred: ProviderCredential, *, timeout: float) -> list[str]:
        raise NotImplementedError

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
        raise NotImplementedError

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
        raise NotImplementedError

    def translate_error(self, exc: BaseException, cred: ProviderCredential) -> ProviderError | None:
        """The redacted ProviderError for an SDK/transport exception, or None to re-raise it."""
        return None


def sdk_connection_error(
    exc: BaseException,
    sdk: Any,
    *,
    provider: str,
    display_name: str,
    secrets: tuple[str, ...],
) -> ProviderError | None:
    """The typed error for an SDK's timeout or connection failure, or None for anything
    else. Both official SDKs (openai, anthropic) name these classes the same way."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderTimeout(
            f"{display_name} did not answer in time.", provider=provider, secrets=secrets
        )
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        reason = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        return ProviderUnavailable(
            f"Could not reach {display_name}{reason}.", provider=provider, secrets=secrets
        )
    return None


def transport_error(
    exc: BaseException, *, provider: str, display_name: str, secrets: Iterable[str]
) -> ProviderError | None:
    """The typed error for an HTTP transport failure that escaped the SDK (mid-stream)."""
    import httpx2  # the transport of both SDKs

    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderTimeout(
            f"{display_name} timed out ({detail}).", provider=provider, secrets=secrets
        )
    if isinstance(exc, httpx2.TransportError | httpx2.StreamError | httpx2.DecodingError):
        return ProviderUnavailable(
            f"Connection to {display_name} failed ({detail}).", provider=provider, secrets=secrets
        )
    return None
