"""Deliveries over real HTTP to a receiver on loopback: signed, retried, recorded."""

from __future__ import annotations

import json
import logging
import socket
from datetime import timedelta

from django.utils import timezone

from tests.webhooks.conftest import run_body
from webhooks.models import WebhookDelivery
from webhooks.selectors import webhook_deliveries_for_run
from webhooks.services import (
    webhook_deliver,
    webhook_deliveries_resume_tenant,
    webhook_delivery_schedule,
    webhook_retry_delay,
)
from webhooks.signing import verify
from workflows.models import App

Status = WebhookDelivery.Status


def schedule(run, body, capture):
    with capture(execute=True):
        return webhook_delivery_schedule(run=run, body=body)


def test_500_then_200_ends_delivered_after_two_attempts(
    make_run, receiver, allow_private, eager, django_capture_on_commit_callbacks
):
    receiver.fail_first = 1
    run = make_run(receiver.url)
    delivery = schedule(run, run_body(run), django_capture_on_commit_callbacks)

    delivery.refresh_from_db()
    assert delivery.status == Status.DELIVERED and delivery.delivered_at is not None
    assert delivery.attempts == 2 and delivery.last_status_code == 200
    assert [entry["status_code"] for entry in delivery.history] == [500, 200]
    assert [entry["attempt"] for entry in delivery.history] == [1, 2]
    assert all(entry["error"] is None and entry["elapsed_ms"] >= 0 for entry in delivery.history)
    assert delivery.next_attempt_at is None

    assert len(receiver.requests) == 2
    secret = App.objects.get(pk=run.app_id).webhook_secret
    assert secret.startswith("whsec_")
    for request in receiver.requests:
        assert request.path == "/hooks/keyflow"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"] == "Keyflow-Webhooks/1"
        assert request.headers["X-Keyflow-Event"] == "run.finished"
        assert request.headers["X-Keyflow-Delivery"] == str(delivery.id)
        assert json.loads(request.body) == delivery.body == run_body(run)
        signature = request.headers["X-Keyflow-Signature"]
        assert verify(secret, signature, request.body)
        assert not verify("whsec_" + "x" * 43, signature, request.body)
        assert not verify(secret, signature, request.body.replace(b"succeeded", b"failed"))


def test_always_failing_receiver_ends_failed_after_max_attempts(
    make_run, receiver, allow_private, eager, django_capture_on_commit_callbacks
):
    allow_private.KEYFLOW_WEBHOOK_MAX_ATTEMPTS = 3
    receiver.fail_first = 1000
    run = make_run(receiver.url)
    delivery = schedule(run, run_body(run), django_capture_on_commit_callbacks)

    delivery.refresh_from_db()
    assert delivery.status == Status.FAILED and delivery.delivered_at is None
    assert delivery.attempts == 3 and delivery.last_status_code == 500
    assert [entry["status_code"] for entry in delivery.history] == [500, 500, 500]
    assert len(receiver.requests) == 3
    # A late duplicate of the task changes nothing.
    assert webhook_deliver(delivery_id=delivery.id).attempts == 3
    assert len(receiver.requests) == 3


def test_service_loop_without_celery(make_run, receiver, allow_private):
    """Called directly, each call is one attempt and says when the next one is due."""
    receiver.fail_first = 2
    run = make_run(receiver.url)
    delivery = webhook_delivery_schedule(run=run, body=run_body(run))
    codes = []
    while delivery.status == Status.PENDING:
        before = timezone.now()
        delivery = webhook_deliver(delivery_id=delivery.id)
        codes.append(delivery.last_status_code)
        if delivery.status == Status.PENDING:
            wait = (delivery.next_attempt_at - before).total_seconds()
            assert 2 ** (delivery.attempts - 1) * 2 <= wait + 0.1 <= 2 ** (delivery.attempts - 1) * 2.5 + 1
    assert codes == [500, 500, 200] and delivery.status == Status.DELIVERED


def test_backoff_doubles_and_is_capped():
    for attempt, base in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32)]:
        assert base <= webhook_retry_delay(attempt) <= base * 1.25
    assert webhook_retry_delay(30) <= 300 * 1.25


def test_secret_never_in_history_logs_or_request(
    make_run, receiver, allow_private, eager, django_capture_on_commit_callbacks, caplog
):
    caplog.set_level(logging.DEBUG)
    receiver.fail_first = 1
    run = make_run(receiver.url)
    delivery = schedule(run, run_body(run), django_capture_on_commit_callbacks)

    # And a connection failure, whose error text is recorded.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    other = make_run(f"http://127.0.0.1:{port}/gone")
    allow_private.KEYFLOW_WEBHOOK_MAX_ATTEMPTS = 2
    unreachable = schedule(other, run_body(other), django_capture_on_commit_callbacks)
    unreachable.refresh_from_db()
    assert unreachable.status == Status.FAILED
    assert [entry["status_code"] for entry in unreachable.history] == [None, None]
    assert all(entry["error"].startswith("connection failed") for entry in unreachable.history)
    assert all(len(entry["error"]) <= 160 for entry in unreachable.history)

    delivery.refresh_from_db()
    assert delivery.status == Status.DELIVERED
    assert "Webhook delivery" in caplog.text  # the log was captured at all
    stored = json.dumps([delivery.history, unreachable.history, delivery.body,
                         webhook_deliveries_for_run(run), webhook_deliveries_for_run(other)])
    for secret in (run.app.webhook_secret, other.app.webhook_secret):
        bare = secret.removeprefix("whsec_")
        assert len(bare) >= 40
        for text in (stored, caplog.text):
            assert bare not in text
        for request in receiver.requests:
            assert bare.encode() not in request.body and bare not in json.dumps(request.headers)


def test_refused_at_delivery_when_the_host_now_resolves_private(make_run, receiver, settings, monkeypatch):
    """DNS rebinding: the URL was public at submission; each attempt checks it again."""
    settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE = False
    settings.KEYFLOW_WEBHOOK_MAX_ATTEMPTS = 2
    real = socket.getaddrinfo

    def rebound(host, port, *args, **kwargs):
        if host == "hooks.rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    run = make_run(f"http://hooks.rebind.test:{receiver.port}/hook")
    delivery = webhook_delivery_schedule(run=run, body=run_body(run))
    delivery = webhook_deliver(delivery_id=delivery.id)
    delivery = webhook_deliver(delivery_id=delivery.id)
    assert delivery.status == Status.FAILED
    assert [entry["status_code"] for entry in delivery.history] == [None, None]
    assert delivery.history[0]["error"].startswith("refused: callback_url host hooks.rebind.test")
    assert receiver.requests == []


def test_connects_to_the_checked_address_keeping_the_host_name(
    make_run, receiver, allow_private, monkeypatch
):
    real = socket.getaddrinfo
    lookups = []

    def resolve(host, port, *args, **kwargs):
        if host == "hooks.pinned.test":
            lookups.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    run = make_run(f"http://hooks.pinned.test:{receiver.port}/hook?tenant=alpha")
    delivery = webhook_delivery_schedule(run=run, body=run_body(run))
    delivery = webhook_deliver(delivery_id=delivery.id)
    assert delivery.status == Status.DELIVERED
    assert lookups == ["hooks.pinned.test"]  # resolved once, by the check; never by httpx
    (request,) = receiver.requests
    assert request.headers["Host"] == f"hooks.pinned.test:{receiver.port}"
    assert request.path == "/hook?tenant=alpha"


def test_redirects_are_not_followed(make_run, receiver, allow_private):
    receiver.status = 302
    allow_private.KEYFLOW_WEBHOOK_MAX_ATTEMPTS = 1
    run = make_run(receiver.url)
    delivery = webhook_delivery_schedule(run=run, body=run_body(run))
    delivery = webhook_deliver(delivery_id=delivery.id)
    assert delivery.status == Status.FAILED and delivery.last_status_code == 302
    assert len(receiver.requests) == 1


def test_no_callback_url_no_delivery(make_run):
    run = make_run("")
    assert webhook_delivery_schedule(run=run, body=run_body(run)) is None
    assert webhook_deliveries_for_run(run) == []


def test_scheduling_twice_keeps_one_delivery(make_run, receiver, allow_private):
    run = make_run(receiver.url)
    first = webhook_delivery_schedule(run=run, body=run_body(run))
    second = webhook_delivery_schedule(run=run, body={"other": "body"})
    assert first.pk == second.pk
    assert WebhookDelivery.objects.filter(run=run).count() == 1


def test_body_over_the_limit_keeps_ids_and_status_only(make_run, receiver, allow_private, settings):
    settings.KEYFLOW_WEBHOOK_MAX_BODY = 300
    run = make_run(receiver.url)
    body = run_body(run)
    body["data"]["outputs"] = {"answer": "x" * 1000}
    delivery = webhook_delivery_schedule(run=run, body=body)
    assert delivery.body == {
        "workflow_run_id": str(run.id), "task_id": str(run.task_id), "status": "succeeded",
        "truncated": True,
    }
    webhook_deliver(delivery_id=delivery.id)
    assert json.loads(receiver.requests[0].body) == delivery.body


def test_selector_shows_deliveries_for_the_run_detail(make_run, receiver, allow_private):
    receiver.fail_first = 1
    run = make_run(receiver.url)
    delivery = webhook_delivery_schedule(run=run, body=run_body(run))
    webhook_deliver(delivery_id=delivery.id)
    (shown,) = webhook_deliveries_for_run(run)
    assert set(shown) == {"id", "url", "status", "attempts", "last_status_code", "history"}
    assert shown["id"] == str(delivery.id) and shown["url"] == receiver.url
    assert (shown["status"], shown["attempts"], shown["last_status_code"]) == ("pending", 1, 500)
    assert set(shown["history"][0]) == {"attempt", "at", "status_code", "error", "elapsed_ms"}


def test_resume_queues_a_delivery_whose_message_was_lost(
    make_run, receiver, allow_private, eager
):
    run = make_run(receiver.url)
    delivery = webhook_delivery_schedule(run=run, body=run_body(run))  # on_commit never runs here
    assert receiver.requests == []
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(hours=1)
    )
    assert webhook_deliveries_resume_tenant() == 1
    delivery.refresh_from_db()
    assert delivery.status == Status.DELIVERED and len(receiver.requests) == 1
    assert webhook_deliveries_resume_tenant() == 0


def test_admin_lists_deliveries_read_only(make_run, receiver, allow_private, admin_client, tenant_a):
    from django.db import connection

    run = make_run(receiver.url)
    delivery = webhook_delivery_schedule(run=run, body=run_body(run))
    secret = run.app.webhook_secret
    connection.set_schema_to_public()

    base = "/admin/webhooks/webhookdelivery/"
    listing = admin_client.get(base)
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "127.0.0.1" in page and "Pending" in page
    assert f"{base}add/" not in page
    assert admin_client.get(f"{base}add/").status_code == 403
    detail = admin_client.get(f"{base}{delivery.id}/change/")
    assert detail.status_code == 200 and secret not in detail.content.decode()
    assert admin_client.post(f"{base}{delivery.id}/change/", {"status": "delivered"}).status_code == 403
    assert admin_client.post(f"{base}{delivery.id}/delete/", {"post": "yes"}).status_code == 403
