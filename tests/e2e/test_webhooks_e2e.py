"""A background run's webhook, received by a local HTTP server: signed, retried, recorded."""

from __future__ import annotations

import json
import time

import pytest
from django_tenants.utils import tenant_context

from tests.e2e.conftest import ServiceClient, WebhookReceiver
from webhooks.signing import verify

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver():
    server = WebhookReceiver(fail_first=1, path="/hooks/keyflow")
    yield server
    server.shutdown()


@pytest.mark.parametrize("app", ["summarizer", "chat"])
def test_async_run_posts_a_signed_body_and_retries_after_a_500(platform_, workspaces, receiver, django_db_blocker, app):
    one = workspaces["eone"]
    service = ServiceClient(platform_.base_url, one.app_keys[app])
    if app == "chat":
        accepted = service.chat("hook me", mode="async", callback_url=receiver.url, auto_generate_name=False)
    else:
        accepted = service.run({"text": "hook me"}, mode="async", callback_url=receiver.url)
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 30
    while len(receiver.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(receiver.requests) == 2, "expected a failed attempt and a retry"
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        secret = one.apps[app].__class__.objects.get(pk=one.apps[app].pk).webhook_secret
    for headers, body in receiver.requests:
        assert verify(secret, headers["X-Keyflow-Signature"], body)
        assert not verify("whsec_wrong", headers["X-Keyflow-Signature"], body)
    first, second = receiver.requests
    assert first[0]["X-Keyflow-Delivery"] == second[0]["X-Keyflow-Delivery"]
    payload = json.loads(second[1])
    if app == "chat":
        assert payload["event"] == "message" and payload["answer"] == "Echo: hook me"
    else:
        assert payload["data"]["status"] == "succeeded"
        run_id = payload["workflow_run_id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            deliveries = service.http.get(f"/v1/workflows/run/{run_id}").json()["metadata"]["webhook_deliveries"]
            if deliveries and deliveries[0]["status"] == "delivered":
                break
            time.sleep(0.1)
        assert deliveries[0]["attempts"] == 2
        assert [h["status_code"] for h in deliveries[0]["history"]] == [500, 200]
    assert secret.encode() not in b"".join(body for _, body in receiver.requests)
