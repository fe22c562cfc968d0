"""Webhook writes: check a callback URL, schedule a run's delivery, make one attempt.

A delivery is at-least-once: receivers deduplicate on the `X-Keyflow-Delivery` header.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from api.errors import ApiError
from webhooks.models import WebhookDelivery
from webhooks.signing import body_encode, delivery_headers
from workflows.models import WorkflowRun

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
DNS_TIMEOUT_SECONDS = 3.0
# Addresses of one host tried in turn when a connection cannot be made.
MAX_ADDRESSES_TRIED = 3
# Backoff before attempt n+1: 2, 4, 8, 16, 32 … seconds, capped, plus up to 25 % jitter.
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0
# A pending delivery this far past its next attempt lost its task message: queue it again.
RESUME_AFTER_SECONDS = 600
MAX_ERROR_LENGTH = 160

# NAT64: the low 32 bits are the IPv4 address the packet really goes to.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidCallbackUrl(ApiError):
    status = 400
    code = "invalid_callback_url"
    message = "callback_url is not a valid public http(s) URL."


@dataclass(frozen=True)
class CallbackTarget:
    """A checked callback URL and the addresses it may be delivered to."""

    url: httpx.URL
    addresses: tuple[str, ...]

    def url_for(self, address: str) -> httpx.URL:
        return self.url.copy_with(host=address)

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")

    @property
    def sni_hostname(self) -> str:
        return self.url.raw_host.decode("ascii")


def _address_forbidden(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that stand for an IPv4 address are judged by that address.
        if address.ipv4_mapped is not None:
            return _address_forbidden(address.ipv4_mapped)
        if address in _NAT64:
            return _address_forbidden(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None and _address_forbidden(address.sixtofour):
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _getaddrinfo(host: str, port: int) -> list[str]:
    """The host's addresses, in the resolver's order; a lookup slower than
    DNS_TIMEOUT_SECONDS counts as a failure (getaddrinfo itself takes no timeout)."""
    found: dict = {}

    def lookup() -> None:
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return  # no addresses: refused as unresolvable

    thread = threading.Thread(target=lookup, name="webhook-dns", daemon=True)
    thread.start()
    thread.join(DNS_TIMEOUT_SECONDS)
    if "infos" not in found:
        return []
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in found["infos"]:
        if sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    return addresses


def callback_target(url: str) -> CallbackTarget:
    """Check a callback URL and resolve its host; every address must be allowed."""
    if not isinstance(url, str) or not url:
        raise InvalidCallbackUrl("callback_url must be a non-empty string.")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidCallbackUrl(f"callback_url is longer than {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise InvalidCallbackUrl("callback_url must not contain spaces or control characters.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError, ValueError):
        raise InvalidCallbackUrl("callback_url is not a valid URL.") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidCallbackUrl("callback_url must be an http or https URL.")
    if parsed.userinfo:
        raise InvalidCallbackUrl("callback_url must not contain a user name or password.")
    host = parsed.host
    if not host:
        raise InvalidCallbackUrl("callback_url has no host.")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidCallbackUrl(f"callback_url for host {host} has an invalid port.")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)

    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = _getaddrinfo(parsed.raw_host.decode("ascii"), port)
    if not addresses:
        raise InvalidCallbackUrl(f"callback_url host {host} could not be resolved.")
    if not settings.KEYFLOW_WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            if _address_forbidden(ipaddress.ip_address(address)):
                raise InvalidCallbackUrl(
                    f"callback_url host {host} resolves to a loopback, private, link-local or "
                    "reserved address; callbacks must go to a public address."
                )
    return CallbackTarget(url=parsed, addresses=tuple(addresses))


def callback_url_check(url: str) -> str:
    """Validate a callback URL at submission (raises InvalidCallbackUrl); returns it."""
    callback_target(url)
    return url


def _body_for_delivery(*, run: WorkflowRun, body: dict) -> dict:
    """The body as JSON will carry it; over KEYFLOW_WEBHOOK_MAX_BODY bytes only its short
    top-level fields are kept, flagged `truncated` (the receiver then fetches the run)."""
    body = json.loads(json.dumps(body, cls=DjangoJSONEncoder))
    if len(body_encode(body)) <= settings.KEYFLOW_WEBHOOK_MAX_BODY:
        return body
    kept = {
        key: value for key, value in body.items()
        if value is None or isinstance(value, bool | int | float)
        or (isinstance(value, str) and len(value) <= 256)
    }
    kept.setdefault("workflow_run_id", str(run.id))
    kept.setdefault("task_id", str(run.task_id))
    kept.setdefault("status", run.status)
    kept["truncated"] = True
    return kept


@transaction.atomic
def webhook_delivery_schedule(*, run: WorkflowRun, body: dict) -> WebhookDelivery | None:
    """When the run has a callback_url, record its delivery and queue it on commit.
    Idempotent: a run re-finished after a lost worker keeps its first delivery."""
    if not run.callback_url:
        return None
    # Serializes two finishers of the same run, so only one delivery is ever created.
    WorkflowRun.objects.select_for_update().filter(pk=run.pk).values_list("pk").first()
    existing = WebhookDelivery.objects.filter(run=run).order_by("created_at").first()
    if existing is not None:
        return existing
    delivery = WebhookDelivery.objects.create(
        run=run, url=run.callback_url, body=_body_for_delivery(run=run, body=body),
        next_attempt_at=timezone.now(),
    )
    transaction.on_commit(lambda: webhook_delivery_enqueue(delivery=delivery))
    return delivery


def webhook_delivery_enqueue(*, delivery: WebhookDelivery) -> bool:
    """Hand the delivery to the workers. If the broker is down it stays pending and
    webhook_deliveries_resume queues it again later."""
    from webhooks.tasks import webhook_deliver_task

    try:
        webhook_deliver_task.apply_async(
            args=[str(delivery.id)],
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
        return True
    except Exception:  # broker unreachable: webhook_deliveries_resume retries
        logger.exception("Could not queue webhook delivery %s now", delivery.id)
        return False


def webhook_retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return delay * random.uniform(1.0, 1.25)


def _short_error(label: str, exc: BaseException | None = None) -> str:
    detail = " ".join(str(exc).split()) if exc is not None else ""
    text = f"{label}: {detail}" if detail else label
    return text[:MAX_ERROR_LENGTH]


@dataclass(frozen=True)
class _AttemptResult:
    status_code: int | None
    error: str | None
    elapsed_ms: int


def _post(*, delivery: WebhookDelivery, secret: str) -> _AttemptResult:
    """POST the body once, to an address checked just now (a host re-pointed at a private
    address after submission is refused; the connection never re-resolves the name)."""
    started = time.monotonic()

    def result(status_code: int | None = None, error: str | None = None) -> _AttemptResult:
        return _AttemptResult(status_code, error, int((time.monotonic() - started) * 1000))

    try:
        target = callback_target(delivery.url)
    except InvalidCallbackUrl as exc:
        return result(error=_short_error("refused", exc))
    content = body_encode(delivery.body)
    headers = delivery_headers(secret=secret, delivery_id=delivery.id, body=content)
    headers["Host"] = target.host_header
    # TLS is verified against the URL's host name, not the address connected to.
    extensions = {"sni_hostname": target.sni_hostname} if target.url.scheme == "https" else {}
    error = "no address to connect to"
    with httpx.Client(
        timeout=settings.KEYFLOW_WEBHOOK_TIMEOUT, follow_redirects=False, trust_env=False
    ) as client:
        for address in target.addresses[:MAX_ADDRESSES_TRIED]:
            try:
                # Streamed and closed unread: only the status matters, however large the
                # answer.
                with client.stream(
                    "POST", target.url_for(address), content=content, headers=headers,
                    extensions=extensions,
                ) as response:
                    return result(status_code=response.status_code)
            except httpx.ConnectTimeout as exc:
                error = _short_error("connect timeout", exc)
            except httpx.ConnectError as exc:
                error = _short_error("connection failed", exc)
            except httpx.TimeoutException as exc:
                return result(error=_short_error("timeout", exc))
            except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
                return result(error=_short_error(type(exc).__name__, exc))
    return result(error=error)


def webhook_deliver(*, delivery_id) -> WebhookDelivery | None:
    """One attempt of a pending delivery, recorded in its history. 2xx: delivered; anything
    else: pending with next_attempt_at set, or failed after KEYFLOW_WEBHOOK_MAX_ATTEMPTS.
    Never raises for HTTP failures."""
    delivery = WebhookDelivery.objects.select_related("run__app").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return delivery
    max_attempts = max(1, settings.KEYFLOW_WEBHOOK_MAX_ATTEMPTS)
    if delivery.attempts >= max_attempts:
        WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING).update(
            status=WebhookDelivery.Status.FAILED, next_attempt_at=None
        )
        delivery.refresh_from_db()
        return delivery

    secret = delivery.run.app.webhook_secret
    if secret:
        outcome = _post(delivery=delivery, secret=secret)
    else:
        outcome = _AttemptResult(None, "the app has no webhook secret", 0)
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        delivery.attempts += 1
        delivery.last_status_code = outcome.status_code
        delivery.history = [*delivery.history, {
            "attempt": delivery.attempts,
            "at": now.isoformat(),
            "status_code": outcome.status_code,
            "error": outcome.error,
            "elapsed_ms": outcome.elapsed_ms,
        }]
        succeeded = outcome.status_code is not None and 200 <= outcome.status_code < 300
        if delivery.status != WebhookDelivery.Status.PENDING:
            pass  # a concurrent attempt already settled it; keep its outcome
        elif succeeded:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
        elif delivery.attempts >= max_attempts:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.next_attempt_at = None
        else:
            delivery.next_attempt_at = now + timedelta(seconds=webhook_retry_delay(delivery.attempts))
        delivery.save(update_fields=[
            "attempts", "last_status_code", "history", "status", "delivered_at", "next_attempt_at",
        ])
    logger.info(
        "Webhook delivery %s of run %s: attempt %s, status %s, %s",
        delivery.id, delivery.run_id, delivery.attempts,
        outcome.status_code if outcome.status_code is not None else "none", delivery.status,
    )
    return delivery


def webhook_deliveries_resume_tenant() -> int:
    """In the current schema: queue again pending deliveries whose task message was lost
    (broker down when they were scheduled, or a retry never published)."""
    now = timezone.now()
    queued = 0
    for delivery in WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at__lt=now - timedelta(seconds=RESUME_AFTER_SECONDS),
    ).only("id"):
        # Due again from now, so the next sweep does not queue it a second time.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now)
        queued += webhook_delivery_enqueue(delivery=delivery)
    return queued


def webhook_deliveries_resume() -> dict:
    """Across all active tenants."""
    from django_tenants.utils import schema_context

    from tenants.selectors import tenant_list

    totals = {"tenants": 0, "requeued": 0}
    for tenant in tenant_list():
        if not tenant.is_active:
            continue
        with schema_context(tenant.schema_name):
            totals["requeued"] += webhook_deliveries_resume_tenant()
        totals["tenants"] += 1
    if totals["requeued"]:
        logger.info("Webhook deliveries resumed: %s", totals)
    return totals
