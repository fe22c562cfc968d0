"""Webhook signatures: HMAC-SHA256 over "<timestamp>." + body, keyed with the app's secret.

Header: `X-Keyflow-Signature: t=<unix seconds>,v1=<hex digest>`. Receivers check it with
`verify()` (or the few lines in docs/webhooks.md) before trusting a delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

SIGNATURE_HEADER = "X-Keyflow-Signature"
DELIVERY_HEADER = "X-Keyflow-Delivery"
EVENT_HEADER = "X-Keyflow-Event"
EVENT_RUN_FINISHED = "run.finished"
USER_AGENT = "Keyflow-Webhooks/1"
SCHEME = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `f"{timestamp}.".encode() + body` with the secret (UTF-8) as key."""
    message = f"{int(timestamp)}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={int(timestamp)},{SCHEME}={sign(secret, timestamp, body)}"


def body_encode(body: dict) -> bytes:
    """The exact bytes sent (and signed) for a body: compact UTF-8 JSON."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def delivery_headers(*, secret: str, delivery_id, body: bytes, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: EVENT_RUN_FINISHED,
        DELIVERY_HEADER: str(delivery_id),
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
    }


def _parse(header_value: str) -> tuple[int, list[str]] | None:
    timestamp = None
    signatures: list[str] = []
    for item in header_value.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            return None
        if name == "t":
            if timestamp is not None or not value.isdigit():
                return None
            timestamp = int(value)
        elif name == SCHEME:
            signatures.append(value)
        # Unknown schemes are ignored, so a future v2 can be sent alongside v1.
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify(
    secret: str, header_value: str, body: bytes, *, tolerance: int = 300, now: float | None = None
) -> bool:
    """True when the header carries a v1 signature of this body by this secret, made within
    `tolerance` seconds of `now` (either way). Compares in constant time."""
    if not isinstance(header_value, str) or not isinstance(body, bytes | bytearray):
        return False
    parsed = _parse(header_value)
    if parsed is None:
        return False
    timestamp, signatures = parsed
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, bytes(body))
    # Check every candidate (no early exit) so timing says nothing about which one matched.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched
