"""Injected provider failures: rules matching some requests, and what to do to them."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from fake_llm.calls import PROVIDERS

OPERATIONS = ("chat", "models")


class FaultRuleError(ValueError):
    """A fault rule that cannot be applied (unknown field, wrong type or value)."""


@dataclass(frozen=True)
class FaultRule:
    """Match criteria (None matches everything) and the action taken on a matching request.

    The first rule that matches a request applies (rules are tried in the order they were
    added); its actions combine: wait `latency_ms`, then `hang`, or answer with the error
    `status`, or answer normally but cut after `cut_after_chunks` chunks.
    """

    key_sha256: str | None = None
    model: str | None = None
    provider: str | None = None
    operation: str | None = None
    status: int | None = None
    retry_after: float | None = None
    latency_ms: int = 0
    hang: bool = False
    cut_after_chunks: int | None = None
    echo_key: bool = False
    times: int | None = None
    id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        known = {f.name for f in fields(cls)} - {"id"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultRuleError(f"unknown fault rule field(s): {', '.join(unknown)}")
        rule = cls(**dict(data))
        rule._validate()
        return rule.with_defaults()

    def with_defaults(self) -> FaultRule:
        # An echoed key or a Retry-After only makes sense on an error answer.
        if self.status is None and self.echo_key:
            return replace(self, status=401)
        if self.status is None and self.retry_after is not None:
            return replace(self, status=429)
        return self

    def _validate(self) -> None:
        for name in ("key_sha256", "model"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise FaultRuleError(f"{name} must be a non-empty string")
        if self.key_sha256 is not None and (
            len(self.key_sha256) != 64 or any(c not in "0123456789abcdef" for c in self.key_sha256)
        ):
            raise FaultRuleError("key_sha256 must be a lowercase hex SHA-256 (64 characters)")
        if self.provider is not None and self.provider not in PROVIDERS:
            raise FaultRuleError(f"provider must be one of {', '.join(PROVIDERS)}")
        if self.operation is not None and self.operation not in OPERATIONS:
            raise FaultRuleError(f"operation must be one of {', '.join(OPERATIONS)}")
        if self.status is not None and (not _is_int(self.status) or not 400 <= self.status <= 599):
            raise FaultRuleError("status must be an HTTP error status (400-599)")
        if self.retry_after is not None and (
            not _is_number(self.retry_after) or self.retry_after < 0
        ):
            raise FaultRuleError("retry_after must be a number of seconds >= 0")
        if not _is_int(self.latency_ms) or self.latency_ms < 0:
            raise FaultRuleError("latency_ms must be an integer >= 0")
        if self.cut_after_chunks is not None and (
            not _is_int(self.cut_after_chunks) or self.cut_after_chunks < 0
        ):
            raise FaultRuleError("cut_after_chunks must be an integer >= 0")
        if self.times is not None and (not _is_int(self.times) or self.times < 1):
            raise FaultRuleError("times must be an integer >= 1 (omit it for forever)")
        for name in ("hang", "echo_key"):
            if not isinstance(getattr(self, name), bool):
                raise FaultRuleError(f"{name} must be a boolean")
        if (
            self.status is None
            and self.retry_after is None
            and not self.latency_ms
            and not self.hang
            and self.cut_after_chunks is None
            and not self.echo_key
        ):
            raise FaultRuleError(
                "a fault rule needs an action: status, retry_after, latency_ms, hang, "
                "cut_after_chunks or echo_key"
            )

    def matches(
        self, *, provider: str, model: str | None, key_sha256: str | None, operation: str
    ) -> bool:
        return (
            (self.provider is None or self.provider == provider)
            and (self.model is None or self.model == model)
            and (self.key_sha256 is None or self.key_sha256 == key_sha256)
            and (self.operation is None or self.operation == operation)
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultRules:
    """The active fault rules, shared by all request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._last_id = 0

    def add(self, rule: FaultRule) -> str:
        with self._lock:
            self._last_id += 1
            rule_id = f"fault-{self._last_id}"
            self._rules.append(replace(rule, id=rule_id))
            return rule_id

    def take(
        self, *, provider: str, model: str | None, key_sha256: str | None, operation: str
    ) -> FaultRule | None:
        """The first rule matching this request, counting one use against its `times`."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if not rule.matches(
                    provider=provider, model=model, key_sha256=key_sha256, operation=operation
                ):
                    continue
                if rule.times is not None:
                    if rule.times <= 1:
                        del self._rules[index]
                    else:
                        self._rules[index] = replace(rule, times=rule.times - 1)
                return rule
            return None

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            kept = [rule for rule in self._rules if rule.id != rule_id]
            removed = len(kept) != len(self._rules)
            self._rules = kept
            return removed

    def clear(self) -> int:
        with self._lock:
            count = len(self._rules)
            self._rules = []
            return count

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.as_json() for rule in self._rules]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
