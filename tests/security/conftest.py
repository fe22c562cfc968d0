"""Fixtures of the security tests: the real web server and worker of tests/e2e, and tenants
of their own (fuzzing writes freely into them, so no other test shares them)."""

from __future__ import annotations

import dataclasses

import pytest

from tests.e2e.conftest import celery_worker, e2e_logs, web_server  # noqa: F401 - fixtures

# High enough that fuzzing is never throttled; throttling has its own tests.
UNTHROTTLED = 1_000_000


@dataclasses.dataclass
class Target:
    base_url: str
    tenant: object
    app_keys: dict  # app name -> app-… token
    management_token: str
    ids: dict  # things in the tenant: app_id, key_id, credential_id; doomed_* to delete


def target_make(slug: str, base_url: str, fake_url: str, *, rate_limit: int = UNTHROTTLED) -> Target:
    from django_tenants.utils import tenant_context

    from credentials.resolution import OverridePolicy
    from credentials.services import credential_create
    from tenants.models import ApiToken
    from tenants.services import api_token_issue, tenant_provision
    from tests.conftest import canary_key
    from tests.e2e.conftest import CHAT_CONFIG, COMPLETION_CONFIG
    from workflows.examples import SUMMARIZER
    from workflows.services import app_create, app_key_issue

    tenant = tenant_provision(name=f"Security {slug}", slug=slug, admin_email=f"admin@{slug}.test").tenant
    with tenant_context(tenant):
        credentials = [
            credential_create(provider=provider, name="default", secrets={"api_key": canary_key()},
                              config=config, is_default=True)
            for provider, config in (("openai", {"base_url": fake_url + "/v1"}),
                                     ("anthropic", {"base_url": fake_url}))
        ]
        apps = {
            "workflow": app_create(name="Summarizer", graph=SUMMARIZER),
            "chat": app_create(name="Chat", mode="chat", model_config=CHAT_CONFIG),
            "completion": app_create(name="Completion", mode="completion", model_config=COMPLETION_CONFIG),
        }
        doomed_app = app_create(name="Doomed", graph=SUMMARIZER)
        doomed_credential = credential_create(provider="openai", name="doomed",
                                              secrets={"api_key": canary_key()})
        policy = OverridePolicy(rate_limit_per_minute=rate_limit)
        issued = {name: app_key_issue(tenant=tenant, app=app, policy=policy) for name, app in apps.items()}
    management = api_token_issue(
        tenant=tenant, scope=ApiToken.Scope.MANAGEMENT, name="security tests",
        policy={"rate_limit_per_minute": rate_limit},
    )
    return Target(
        base_url=base_url, tenant=tenant, management_token=management.token,
        app_keys={name: key.token for name, key in issued.items()},
        ids={"app_id": str(apps["workflow"].id), "key_id": str(issued["workflow"].record.id),
             "credential_id": str(credentials[0].id), "doomed_app_id": str(doomed_app.id),
             "doomed_credential_id": str(doomed_credential.id)},
    )


@pytest.fixture(scope="session")
def service_target(web_server, celery_worker, fake_llm, django_db_blocker):  # noqa: F811
    """A tenant whose Service API is fuzzed (runs really execute, on the fake provider)."""
    with django_db_blocker.unblock():
        return target_make("sec-service", web_server.base_url, fake_llm.url)


@pytest.fixture(scope="session")
def management_target(web_server, fake_llm, django_db_blocker):  # noqa: F811
    """A tenant whose management API is fuzzed: fuzzing creates, changes and deletes in it,
    so it is not the tenant whose runs are fuzzed."""
    with django_db_blocker.unblock():
        return target_make("sec-management", web_server.base_url, fake_llm.url)
