"""A fake LLM provider on loopback: OpenAI, Azure OpenAI and Anthropic wire formats.

Answers are deterministic, every call is recorded with the SHA-256 of the key that made it,
and faults (errors, Retry-After, latency, hangs, cut streams) can be injected at run time.
"""

from fake_llm.calls import key_sha256
from fake_llm.client import FakeLLMClient
from fake_llm.faults import FaultRule, FaultRuleError
from fake_llm.server import FakeLLMServer

__all__ = ["FakeLLMClient", "FakeLLMServer", "FaultRule", "FaultRuleError", "key_sha256"]
