"""Seed one tenant for the benchmarks and print what the clients need, as one JSON line.

Run with the stack's environment: `python bench/seed.py` (DATABASE_URL etc. set).
With BENCH_TENANTS=N (--env), N-1 more tenants are provisioned, and with BENCH_SPREAD=K the
first K-1 of them get the same app, credential and key as "bench": the clients then spread
their requests over K tenants' keys ("tokens").
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "platform"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django  # noqa: E402

django.setup()

from django_tenants.utils import tenant_context  # noqa: E402

from credentials.resolution import OverridePolicy  # noqa: E402
from credentials.services import credential_create  # noqa: E402
from tenants.services import tenant_provision  # noqa: E402
from workflows.examples import SUMMARIZER  # noqa: E402
from workflows.services import app_create, app_key_issue  # noqa: E402

BENCH_KEY = "sk-bench-default-0123456789abcdef"
OTHER_KEY = "sk-bench-override-0123456789abcdef"


def main() -> None:
    fake_url = os.environ["KEYFLOW_FAKE_LLM_URL"]
    tenant = tenant_provision(name="Bench", slug="bench", admin_email="admin@bench.test").tenant
    with tenant_context(tenant):
        default = credential_create(provider="openai", name="default", secrets={"api_key": BENCH_KEY},
                                    config={"base_url": fake_url + "/v1"}, is_default=True)
        other = credential_create(provider="openai", name="other", secrets={"api_key": OTHER_KEY},
                                  config={"base_url": fake_url + "/v1"})
        app = app_create(name="Summarizer", graph=SUMMARIZER)
        policy = OverridePolicy(allow_inline=True, inline_endpoint_hosts=frozenset({"127.0.0.1"}))
        token = app_key_issue(tenant=tenant, app=app, policy=policy).token
    tokens = [token] + spread_tenants(fake_url, int(os.environ.get("BENCH_TENANTS", "1")),
                                      int(os.environ.get("BENCH_SPREAD", "1")))
    llm = next(n for n in SUMMARIZER["nodes"] if n["type"] == "llm")
    print(json.dumps({
        "token": token, "tokens": tokens, "tenant": tenant.schema_name, "default_credential": str(default.id),
        "other_credential": str(other.id), "api_key": BENCH_KEY, "other_key": OTHER_KEY,
        "base_url": fake_url + "/v1", "model": llm["model"], "messages": llm["messages"],
        "max_tokens": llm["parameters"]["max_tokens"],
    }))


def spread_tenants(fake_url: str, count: int, spread: int) -> list[str]:
    tokens = []
    for i in range(1, count):
        tenant = tenant_provision(name=f"Scale {i}", slug=f"scale-{i:04d}", admin_email=f"a@s{i}.test").tenant
        if i < spread:
            with tenant_context(tenant):
                credential_create(provider="openai", name="default", secrets={"api_key": BENCH_KEY},
                                  config={"base_url": fake_url + "/v1"}, is_default=True)
                app = app_create(name="Summarizer", graph=SUMMARIZER)
                tokens.append(app_key_issue(tenant=tenant, app=app).token)
        if i % 100 == 0:
            print(f"[bench] {i}/{count} tenants", file=sys.stderr, flush=True)
    return tokens


if __name__ == "__main__":
    main()
