"""Schemathesis checks of Keyflow's own contract, loaded by the fuzzing run (`hooks`)."""

from __future__ import annotations

import schemathesis


@schemathesis.check
def dify_error_body(ctx, response, case):
    """A 4xx answers Dify's body: {"status": <the HTTP status>, "code": str, "message": str}."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{response.status_code} without a JSON body: {response.text[:200]!r}"
        ) from None
    if not (isinstance(body, dict) and set(body) == {"status", "code", "message"}):
        raise AssertionError(f"{response.status_code} body is not Dify's error body: {body!r}"[:500])
    if body["status"] != response.status_code:
        raise AssertionError(f"body status {body['status']!r} is not the HTTP status {response.status_code}")
    if not (isinstance(body["code"], str) and body["code"] and isinstance(body["message"], str)):
        raise AssertionError(f"code and message must be strings: {body!r}"[:500])
    return None
