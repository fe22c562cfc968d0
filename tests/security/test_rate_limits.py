"""Per-token rate limits of the Service API and the management API, on the real web server:
429 `too_many_requests` with Retry-After, per key, async views included."""

from __future__ import annotations

import time

import httpx
import pytest
from django.test import Client

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def limited(service_target, django_db_blocker):
    """Fresh keys of the service tenant's apps, each allowed 3 requests a minute."""
    from django_tenants.utils import tenant_context

    from credentials.resolution import OverridePolicy
    from tenants.models import ApiToken
    from tenants.services import api_token_issue
    from workflows.models import App
    from workflows.services import app_key_issue

    def keys():
        with django_db_blocker.unblock(), tenant_context(service_target.tenant):
            policy = OverridePolicy(rate_limit_per_minute=3)
            issued = {app.mode: app_key_issue(tenant=service_target.tenant, app=app, policy=policy).token
                      for app in App.objects.all()}
            issued["management"] = api_token_issue(
                tenant=service_target.tenant, scope=ApiToken.Scope.MANAGEMENT,
                policy={"rate_limit_per_minute": 3}).token
        return issued

    return keys


@pytest.fixture
def window():
    """Start the test early in a one-minute window, so that its requests share one."""
    if time.time() % 60 > 45:
        time.sleep(60 - time.time() % 60 + 0.05)


def call(base_url: str, token: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, base_url + path, headers={"Authorization": f"Bearer {token}"},
                         timeout=30, **kwargs)


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, (response.status_code, response.text[:300])
    body = response.json()
    assert (body["status"], body["code"]) == (429, "too_many_requests"), body
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_an_app_key_over_its_limit_gets_429_with_retry_after(service_target, limited, window):
    keys = limited()
    base = service_target.base_url
    for _ in range(3):
        assert call(base, keys["workflow"], "GET", "/v1/info").status_code == 200
    assert_throttled(call(base, keys["workflow"], "GET", "/v1/info"))
    # The limit is the key's, whatever the endpoint.
    assert_throttled(call(base, keys["workflow"], "GET", "/v1/parameters"))
    # Another key, even of the same tenant, is not affected.
    assert call(base, keys["chat"], "GET", "/v1/info").status_code == 200
    assert call(base, service_target.app_keys["workflow"], "GET", "/v1/info").status_code == 200


@pytest.mark.parametrize("mode,first,then", [
    ("workflow", ("POST", "/v1/workflows/run"), ("POST", "/v1/workflows/run")),
    ("chat", ("POST", "/v1/chat-messages"), ("POST", "/v1/conversations/00000000-0000-0000-0000-000000000000/name")),
    ("completion", ("POST", "/v1/completion-messages"), ("POST", "/v1/completion-messages")),
])
def test_the_async_views_are_limited_too(service_target, limited, window, mode, first, then):
    """WorkflowRunApi, the message views and ConversationRenameApi are adrf async views: the
    throttle runs in their initial(), before the body is even validated."""
    keys = limited()
    base = service_target.base_url
    for _ in range(3):
        refused = call(base, keys[mode], *first, json={})  # invalid: a fast 400, but counted
        assert refused.status_code == 400, refused.text
    assert_throttled(call(base, keys[mode], *then, json={"user": "u", "name": "n"}))
    assert_throttled(call(base, keys[mode], *first, json={}))


def test_a_management_token_over_its_limit_gets_429(service_target, limited, window):
    token = limited()["management"]
    base = service_target.base_url
    for _ in range(3):
        assert call(base, token, "GET", "/api/tenant").status_code == 200
    assert_throttled(call(base, token, "GET", "/api/apps"))


def test_requests_without_a_valid_token_are_not_counted_against_a_key(service_target, limited, window):
    keys = limited()
    base = service_target.base_url
    for _ in range(5):
        assert call(base, "app-" + "x" * 43, "GET", "/v1/info").status_code == 401
    assert call(base, keys["workflow"], "GET", "/v1/info").status_code == 200


# --- In process: the default limit and its configuration ----------------------------------


def test_the_default_limit_comes_from_settings(db, settings, tenant_a, window):
    from tenants.models import ApiToken
    from tenants.services import api_token_issue

    settings.KEYFLOW_API_RATE_LIMIT_PER_MINUTE = 2
    token = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT).token
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert [client.get("/api/tenant").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("policy,expected", [
    ({}, 600), ({"rate_limit_per_minute": 5}, 5), ({"rate_limit_per_minute": 0}, 600),
    ({"rate_limit_per_minute": "5"}, 600), ({"rate_limit_per_minute": True}, 600), (None, 600),
])
def test_a_keys_own_limit_must_be_a_positive_integer(settings, policy, expected):
    from api.throttling import token_rate_limit
    from tenants.models import ApiToken

    settings.KEYFLOW_API_RATE_LIMIT_PER_MINUTE = 600
    assert token_rate_limit(ApiToken(policy=policy)) == expected


@pytest.mark.parametrize("value", [0, -1, "10", 2.5, True])
def test_a_policy_with_a_bad_rate_limit_is_refused(value):
    from credentials.resolution import OverridePolicy, PolicyInvalid

    with pytest.raises(PolicyInvalid):
        OverridePolicy.from_dict({"rate_limit_per_minute": value})
    assert OverridePolicy.from_dict({"rate_limit_per_minute": 30}).to_dict()["rate_limit_per_minute"] == 30


def test_the_limit_lets_requests_through_when_redis_is_unreachable(db, tenant_a, monkeypatch):
    import redis

    from api import throttling
    from tenants.models import ApiToken
    from tenants.services import api_token_issue

    # A Redis nobody listens on (port 1): every count fails to connect.
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    monkeypatch.setattr(throttling, "shared_redis", lambda: unreachable)
    token = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT,
                            policy={"rate_limit_per_minute": 1}).token
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert [client.get("/api/tenant").status_code for _ in range(3)] == [200, 200, 200]
