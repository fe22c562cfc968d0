"""SDK clients are reused per credential version, and never kept for inline keys."""

from __future__ import annotations

from credentials.providers.base import (
    ChatMessage,
    ProviderCredential,
    client_cache_clear,
    client_cache_size,
)
from tests.credentials.providers.provider_cases import canary_key, key_hash

MESSAGES = [ChatMessage("user", "hello")]


def client_of(provider, cred):
    with provider.client_for(cred) as client:
        return client


def test_same_version_gets_the_same_client(fake, case, make_cred):
    cred = make_cred()
    first = client_of(case.provider, cred)
    again = client_of(case.provider, cred)
    assert first is again
    assert client_of(case.provider, make_cred(key=cred.secrets["api_key"])) is not first
    assert client_cache_size() == 2


def test_changed_version_gets_a_new_client_with_the_new_key(fake, case, make_cred):
    old = make_cred(version="v1")
    new_key = canary_key()
    new = ProviderCredential(
        credential_id=old.credential_id,
        secrets={"api_key": new_key},
        config=old.config,
        version="v2",
    )
    old_client = client_of(case.provider, old)
    case.provider.chat(old, model=case.model, messages=MESSAGES)
    new_client = client_of(case.provider, new)
    assert new_client is not old_client
    assert client_cache_size() == 1  # the outdated client (and its secret) is dropped
    case.provider.chat(new, model=case.model, messages=MESSAGES)
    assert len(fake.calls(key_sha256=key_hash(old))) == 1
    assert len(fake.calls(key_sha256=key_hash(new))) == 1


def test_inline_keys_are_never_cached(fake, case, make_cred):
    cred = make_cred(credential_id=None)
    first = client_of(case.provider, cred)
    assert client_of(case.provider, cred) is not first
    assert client_cache_size() == 0


def test_clear(fake, case, make_cred):
    cred = make_cred()
    first = client_of(case.provider, cred)
    client_cache_clear()
    assert client_cache_size() == 0
    assert client_of(case.provider, cred) is not first


def test_cache_is_bounded():
    from credentials.providers.base import _ClientCache

    cache = _ClientCache(maxsize=3)
    made = [cache.get_or_create(("p", str(i), "v"), object) for i in range(5)]
    assert len(cache) == 3
    assert ("p", "0", "v") not in cache and ("p", "4", "v") in cache
    # Recently used entries survive eviction.
    assert cache.get_or_create(("p", "2", "v"), object) is made[2]
    cache.get_or_create(("p", "5", "v"), object)
    assert ("p", "2", "v") in cache and ("p", "3", "v") not in cache


def test_every_key_shares_one_http_client_and_a_one_off_key_leaves_it_open(fake, case, make_cred):
    stored, other, inline = make_cred(), make_cred(), make_cred(credential_id=None)
    pools = {id(client_of(case.provider, cred)._client) for cred in (stored, other, inline)}
    assert len(pools) == 1  # one connection pool and TLS context per SDK and process
    case.provider.chat(inline, model=case.model, messages=MESSAGES)
    case.provider.chat(stored, model=case.model, messages=MESSAGES)  # the pool is still open
    case.provider.chat(other, model=case.model, messages=MESSAGES)
    # Each call still carried its own key.
    assert [len(fake.calls(key_sha256=key_hash(c))) for c in (stored, other, inline)] == [1, 1, 1]
