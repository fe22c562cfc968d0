"""Client processes for end-to-end budget tests: plain HTTP, no Django (they are spawned)."""

from __future__ import annotations

import time

import httpx


def post_runs(base_url: str, key: str, bodies: list[dict], start_at: float) -> list[dict]:
    """POST each body to /v1/workflows/run in turn, from `start_at` (a wall-clock time, so
    several processes start together); what each answer said."""
    time.sleep(max(0.0, start_at - time.time()))
    answers = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        for body in bodies:
            response = http.post("/v1/workflows/run", json=body)
            answers.append({
                "status": response.status_code,
                "body": response.json(),
                "retry_after": response.headers.get("Retry-After"),
                "at": time.monotonic(),
            })
    return answers
