"""A key echoed by the provider never survives into an error, its repr, args or traceback."""

from __future__ import annotations

import pickle
import traceback

import pytest

from credentials.providers.base import ChatMessage, ProviderAuthError, ProviderError
from tests.credentials.providers.provider_cases import key_hash

MESSAGES = [ChatMessage("user", "hello")]


def traces_of(key: str) -> list[str]:
    """The key, the key without its prefix, and its 8-character fragments."""
    bare = key[len("sk-canary-") :]
    return [key, bare, *(key[i : i + 8] for i in range(len(key) - 7))]


def assert_no_trace(text: str, key: str) -> None:
    for fragment in traces_of(key):
        assert fragment not in text, f"key fragment {fragment!r} leaked"


def all_text_of(error: BaseException) -> str:
    return "\n".join(
        [
            str(error),
            repr(error),
            *map(repr, error.args),
            "".join(traceback.format_exception(error)),
            repr(vars(error)),
            repr(pickle.loads(pickle.dumps(error)).__dict__),
        ]
    )


@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
@pytest.mark.parametrize("status", [401, 403, 429, 500])
def test_echoed_key_is_redacted_everywhere(fake, case, make_cred, stream, status):
    cred = make_cred()
    key = cred.secrets["api_key"]
    fake.add_fault(key_sha256=key_hash(cred), status=status, echo_key=True)
    with pytest.raises(ProviderError) as caught:
        if stream:
            list(case.provider.chat_stream(cred, model=case.model, messages=MESSAGES))
        else:
            case.provider.chat(cred, model=case.model, messages=MESSAGES)
    error = caught.value
    assert "[redacted]" in str(error)  # the provider did echo it
    assert error.__cause__ is None and error.__context__ is None
    assert_no_trace(all_text_of(error), key)
    assert_no_trace("".join(traceback.format_exception(caught.type, error, caught.tb)), key)


def test_inline_key_echo_is_redacted(fake, case, make_cred):
    cred = make_cred(credential_id=None)
    fake.add_fault(key_sha256=key_hash(cred), status=401, echo_key=True)
    with pytest.raises(ProviderAuthError) as caught:
        case.provider.chat(cred, model=case.model, messages=MESSAGES)
    assert_no_trace(all_text_of(caught.value), cred.secrets["api_key"])


def test_validate_message_is_redacted(fake, case, make_cred):
    cred = make_cred()
    fake.add_fault(key_sha256=key_hash(cred), status=401, echo_key=True)
    result = case.provider.validate(cred)
    assert not result.ok
    assert_no_trace(repr(result), cred.secrets["api_key"])
