"""Tenant isolation, probed from the outside.

Two tenants with canary secrets and real activity (runs of every app kind, a chat
conversation, a one-off key, a webhook delivery, app and management keys, admin users).
Tenant B then tries every endpoint of `config.urls_api` and every page of its tenant
admin with tenant A's ids, and A's tokens and admin session are tried on B's host:

- nothing of A (ids, names, end users, tokens, hints, fingerprints, canaries) ever comes back;
- a foreign id answers exactly like a missing one: same status, same body once the id is
  replaced, and no timing difference large enough to serve as an oracle;
- every write attempted with a foreign id leaves A's records as they were.

In-process requests (Django's test client, the same middleware and views as the server)
keep the hundreds of probes fast; one test repeats the tenant mix against a real uvicorn
server with concurrent requests, where async views share one thread for database work.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_tenants.utils import tenant_context

from tests.conftest import canary_key
from tests.e2e.conftest import WebhookReceiver

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CSRF_RE = re.compile(r'(name="csrfmiddlewaretoken" value=")[^"]+(")')
METHODS = ("get", "post", "put", "patch", "delete")
UNTHROTTLED = 1_000_000


# --- Two tenants with activity -----------------------------------------------------------------


@dataclasses.dataclass
class Side:
    """One tenant as the test knows it: its secrets, ids and ways in."""

    slug: str
    tag: str  # a unique word found in every name, end user and query of this tenant
    tenant: object = None
    host: str = ""
    admin_email: str = ""
    admin_password: str = ""
    keys: dict = dataclasses.field(default_factory=dict)  # credential name -> canary key
    inline_key: str = ""
    credentials: dict = dataclasses.field(default_factory=dict)  # name -> id
    apps: dict = dataclasses.field(default_factory=dict)  # kind -> id
    app_tokens: dict = dataclasses.field(default_factory=dict)  # kind -> app-… token
    app_key_ids: dict = dataclasses.field(default_factory=dict)  # kind -> ApiToken id
    mgmt_token: str = ""
    mgmt_token_id: str = ""
    runs: dict = dataclasses.field(default_factory=dict)  # label -> run id
    tasks: dict = dataclasses.field(default_factory=dict)  # label -> task id
    parked: dict = dataclasses.field(default_factory=dict)  # app kind -> queued run id
    parked_tasks: dict = dataclasses.field(default_factory=dict)
    conversation_id: str = ""
    message_ids: list = dataclasses.field(default_factory=list)
    node_ids: list = dataclasses.field(default_factory=list)
    delivery_ids: list = dataclasses.field(default_factory=list)
    budget_ids: list = dataclasses.field(default_factory=list)
    user: str = ""
    owner: str = ""
    marks: set = dataclasses.field(default_factory=set)  # strings that must never leave A

    @property
    def ids(self) -> set[str]:
        found = {*self.credentials.values(), *self.apps.values(), *self.app_key_ids.values(),
                 self.mgmt_token_id, *self.runs.values(), *self.tasks.values(),
                 *self.parked.values(), *self.parked_tasks.values(), self.conversation_id,
                 *self.message_ids, *self.node_ids, *self.delivery_ids, *self.budget_ids,
                 str(self.tenant.pk)}
        return {str(i) for i in found if i}


def _wait_finished(tenant, run_ids, timeout=60.0):
    from workflows.executor import workflow_run_execute
    from workflows.models import WorkflowRun

    with tenant_context(tenant):
        for run_id in run_ids:
            # The session's shared worker may have taken it already; claiming is atomic.
            workflow_run_execute(run_id=run_id)
        deadline = time.monotonic() + timeout
        while WorkflowRun.objects.filter(pk__in=run_ids).exclude(status__in=WorkflowRun.FINISHED).exists():
            assert time.monotonic() < deadline, "runs did not finish"
            time.sleep(0.1)
        failed = list(WorkflowRun.objects.filter(pk__in=run_ids, status="failed").values_list("error", flat=True))
        assert not failed, failed


def _populate(side: Side, fake_url: str, hook_url: str) -> Side:
    from credentials.resolution import OverridePolicy
    from credentials.services import credential_create, credential_disable
    from tenants.models import ApiToken
    from tenants.services import api_token_issue, tenant_provision
    from tests.e2e.conftest import CHAT_CONFIG, COMPLETION_CONFIG
    from webhooks.models import WebhookDelivery
    from workflows.examples import SUMMARIZER
    from workflows.models import Message, NodeExecution, WorkflowRun
    from workflows.services import app_create, app_credential_bind, app_key_issue

    tag = side.tag
    connection.set_schema_to_public()
    provisioned = tenant_provision(name=f"Isolation {tag}", slug=side.slug, admin_email=f"admin-{tag}@example.test")
    side.tenant = provisioned.tenant
    side.host = provisioned.domain.domain
    side.admin_email, side.admin_password = provisioned.admin_email, provisioned.admin_password
    side.user, side.owner = f"user-{tag}", f"owner-{tag}"
    side.keys = {name: canary_key() for name in ("openai_default", "openai_bound", "openai_byok",
                                                  "anthropic_default", "anthropic_off")}
    side.inline_key = canary_key("sk-inline-canary-")
    with tenant_context(side.tenant):
        openai_config = {"base_url": fake_url + "/v1"}
        made = {
            "openai_default": credential_create(provider="openai", name=f"default {tag}",
                                                secrets={"api_key": side.keys["openai_default"]},
                                                config=openai_config, is_default=True),
            "openai_bound": credential_create(provider="openai", name=f"bound {tag}",
                                              secrets={"api_key": side.keys["openai_bound"]}, config=openai_config),
            "openai_byok": credential_create(provider="openai", name=f"byok {tag}", owner=side.owner,
                                             secrets={"api_key": side.keys["openai_byok"]}, config=openai_config),
            "anthropic_default": credential_create(provider="anthropic", name=f"claude {tag}",
                                                   secrets={"api_key": side.keys["anthropic_default"]},
                                                   config={"base_url": fake_url}, is_default=True),
            "anthropic_off": credential_create(provider="anthropic", name=f"off {tag}",
                                               secrets={"api_key": side.keys["anthropic_off"]},
                                               config={"base_url": fake_url}),
        }
        credential_disable(credential=made["anthropic_off"])
        side.credentials = {name: str(c.id) for name, c in made.items()}
        apps = {
            "workflow": app_create(name=f"Summarizer {tag}", description=f"about {tag}", graph=SUMMARIZER),
            "chat": app_create(name=f"Chat {tag}", mode="chat", model_config=CHAT_CONFIG),
            "completion": app_create(name=f"Completion {tag}", mode="completion", model_config=COMPLETION_CONFIG),
        }
        app_credential_bind(app=apps["chat"], provider="openai", credential=made["openai_bound"])
        side.apps = {kind: str(app.id) for kind, app in apps.items()}
        # Hundreds of probes a minute: the per-key rate limit has tests of its own.
        policy = OverridePolicy(allow_inline=True, inline_endpoint_hosts=frozenset({"127.0.0.1"}),
                                rate_limit_per_minute=UNTHROTTLED)
        for kind, app in apps.items():
            issued = app_key_issue(tenant=side.tenant, app=app, name=f"key {tag}", policy=policy)
            side.app_tokens[kind], side.app_key_ids[kind] = issued.token, str(issued.record.pk)
        webhook_secrets = [app.webhook_secret for app in apps.values()]
    issued = api_token_issue(tenant=side.tenant, scope=ApiToken.Scope.MANAGEMENT, name=f"ci {tag}",
                             policy={"rate_limit_per_minute": UNTHROTTLED})
    side.mgmt_token, side.mgmt_token_id = issued.token, str(issued.record.pk)

    # Activity through the Service API, as a client would cause it.
    client = Client()

    def submit(kind, path, body):
        response = client.post(path, body, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {side.app_tokens[kind]}")
        assert response.status_code == 202, response.content
        return response.json()

    base = {"response_mode": "async", "user": side.user}
    run = submit("workflow", "/v1/workflows/run", {**base, "inputs": {"text": f"hello {tag}"},
                                                    "callback_url": hook_url})
    side.runs["workflow"], side.tasks["workflow"] = run["workflow_run_id"], run["task_id"]
    run = submit("workflow", "/v1/workflows/run", {
        **base, "user": side.owner, "inputs": {"text": f"byok {tag}"},
        "credential_overrides": {"openai": side.credentials["openai_byok"]}})
    side.runs["byok"], side.tasks["byok"] = run["workflow_run_id"], run["task_id"]
    run = submit("workflow", "/v1/workflows/run", {
        **base, "inputs": {"text": f"inline {tag}"},
        "credential_overrides": {"openai": {"api_key": side.inline_key, "base_url": fake_url + "/v1"}}})
    side.runs["inline"], side.tasks["inline"] = run["workflow_run_id"], run["task_id"]
    chat = submit("chat", "/v1/chat-messages", {**base, "query": f"question {tag}", "inputs": {"name": tag}})
    side.conversation_id = chat["conversation_id"]
    side.tasks["chat"] = chat["task_id"]
    completion = submit("completion", "/v1/completion-messages", {**base, "inputs": {"query": f"text {tag}"}})
    side.tasks["completion"] = completion["task_id"]
    with tenant_context(side.tenant):
        for label in ("chat", "completion"):
            side.runs[label] = str(WorkflowRun.objects.get(task_id=side.tasks[label]).pk)
    _wait_finished(side.tenant, list(side.runs.values()))
    with tenant_context(side.tenant):
        side.message_ids = [str(m) for m in Message.objects.values_list("id", flat=True)]
        side.node_ids = [str(n) for n in NodeExecution.objects.values_list("id", flat=True)]
        side.delivery_ids = [str(d) for d in WebhookDelivery.objects.values_list("id", flat=True)]
        # Runs that stay queued (no task is ever queued for them), so that a foreign stop
        # request that worked would show.
        from datetime import timedelta

        from django.utils import timezone

        for kind, app_id in side.apps.items():
            parked = WorkflowRun.objects.create(
                app_id=app_id, graph=apps[kind].graph, response_mode="async", end_user=side.user,
                deadline_at=timezone.now() + timedelta(hours=2))
            side.parked[kind], side.parked_tasks[kind] = str(parked.pk), str(parked.task_id)
        fingerprints = {fp[:16] for fp in
                        NodeExecution.objects.exclude(credential_fingerprint="").values_list("credential_fingerprint", flat=True)}
        # Budgets, set after the activity so that they limit nothing of it.
        from budgets.services import budget_create

        budgets = [
            budget_create(credential=made["openai_default"], token_budget=10**9, actor=f"test {tag}"),
            budget_create(app_key=ApiToken.objects.get(pk=side.app_key_ids["workflow"]), requests_per_minute=10**6,
                          actor=f"test {tag}"),
        ]
        side.budget_ids = [str(b.pk) for b in budgets]
    assert side.delivery_ids, "the webhook delivery was not recorded"

    side.marks = {tag, side.admin_email, f"Isolation {tag}", side.user, side.owner, side.mgmt_token,
                  side.mgmt_token[:10], *side.app_tokens.values(), *(t[:10] for t in side.app_tokens.values()),
                  *webhook_secrets, *fingerprints, *side.ids}
    for key in [*side.keys.values(), side.inline_key]:
        side.marks |= {key, key[4:], key[:-4]}
    return side


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, fake_llm):
    receiver = WebhookReceiver()
    hook_url = receiver.url
    suffix = uuid.uuid4().hex[:6]
    with django_db_blocker.unblock():
        a = _populate(Side(slug=f"isola{suffix}", tag=f"alphatag{suffix}"), fake_llm.url, hook_url + "/a")
        b = _populate(Side(slug=f"isolb{suffix}", tag=f"betatag{suffix}"), fake_llm.url, hook_url + "/b")
        connection.set_schema_to_public()
    yield a, b
    receiver.shutdown()
    with django_db_blocker.unblock():
        from workflows.models import WorkflowRun

        for side in (a, b):
            with tenant_context(side.tenant):
                WorkflowRun.objects.filter(pk__in=side.parked.values()).delete()
        connection.set_schema_to_public()


# --- Probing -------------------------------------------------------------------------------


@pytest.fixture
def committed(django_db_blocker):
    """Database access without a test transaction: async views hand their connection back
    to the pool after each block of work, which a test transaction would not survive. A
    foreign write that got through would stay, and the snapshots of A would show it."""
    with django_db_blocker.unblock():
        yield
    connection.set_schema_to_public()



@dataclasses.dataclass
class Probe:
    what: str
    status: int
    body: str
    content_type: str
    location: str


def _request(client: Client, method: str, path: str, *, host: str, token: str | None = None,
             body: dict | None = None, follow: bool = False) -> Probe:
    extra = {"HTTP_HOST": host}
    if token:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    kwargs = {"follow": follow, **extra}
    if body is not None:
        kwargs.update(data=json.dumps(body), content_type="application/json")
    response = getattr(client, method)(path, **kwargs)
    if hasattr(response, "streaming_content"):
        content = b"".join(response.streaming_content)
    else:
        content = response.content
    connection.set_schema_to_public()
    return Probe(what=f"{method.upper()} {path}", status=response.status_code,
                 body=content.decode(errors="replace"), content_type=response.get("Content-Type", ""),
                 location=response.get("Location", ""))


def _normalized(probe: Probe, sent: list[str]) -> tuple:
    body, location = probe.body, probe.location
    for value in sent:
        body, location = body.replace(value, "<ID>"), location.replace(value, "<ID>")
    body = CSRF_RE.sub(r"\1<CSRF>\2", body)
    return probe.status, probe.content_type, body, location


def _leaks(probe: Probe, marks: set[str], sent: list[str]) -> list[str]:
    """Marks of the other tenant found in the answer, apart from the ids the request sent."""
    body = probe.body + "\n" + probe.location
    for value in [*sent, *UUID_RE.findall(probe.what)]:
        body = body.replace(value, "<SENT>")
    return sorted(m for m in marks if m and m in body)


def _assert_same_as_missing(client, method, template, foreign: dict, *, host, token=None, body=None,
                            marks, follow=False):
    """`template` with `foreign` ids answers as with fresh random ids, and leaks nothing."""
    missing = {name: str(uuid.uuid4()) for name in foreign}

    def fill(values):
        path = template.format(**values)
        if body is None:
            return path, None
        text = json.dumps(body)
        for name, value in values.items():
            text = text.replace(f"@{name}@", value)
        return path, json.loads(text)

    results = []
    for values in (foreign, missing):
        path, payload = fill(values)
        probe = _request(client, method, path, host=host, token=token, body=payload, follow=follow)
        results.append((probe, list(values.values())))
    (got, sent_foreign), (expected, sent_missing) = results
    assert _normalized(got, sent_foreign) == _normalized(expected, sent_missing), (
        f"{got.what}: a foreign id answers differently from a missing one\n"
        f"foreign: {got.status} {got.body[:600]}\nmissing: {expected.status} {expected.body[:600]}")
    leaked = _leaks(got, marks, sent_foreign)
    assert not leaked, f"{got.what} returned {leaked}"
    return got


def _admin_client(side: Side) -> Client:
    client = Client(HTTP_HOST=side.host)
    response = client.post("/admin/login/", {"username": side.admin_email, "password": side.admin_password})
    assert response.status_code == 302, response.content[:500]
    connection.set_schema_to_public()
    return client


def _api_routes():
    """(route template with {name} placeholders, view class, methods) of every API endpoint."""
    from config.urls_api import urlpatterns

    routes = []
    for pattern in urlpatterns:
        route = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        view = pattern.callback.view_class
        methods = [m for m in METHODS if hasattr(view, m)]
        routes.append((route, sorted(pattern.pattern.converters), methods))
    return routes


# Bodies that get past input validation, so the id lookup is what answers. `@name@` is
# replaced by the id under test.
WRITE_BODIES = {
    ("/v1/workflows/tasks/{task_id}/stop", "post"): {"user": "@user@"},
    ("/v1/chat-messages/{task_id}/stop", "post"): {"user": "@user@"},
    ("/v1/completion-messages/{task_id}/stop", "post"): {"user": "@user@"},
    ("/v1/conversations/{conversation_id}", "delete"): {"user": "@user@"},
    ("/v1/conversations/{conversation_id}/name", "post"): {"name": "taken over", "user": "@user@"},
    ("/api/credentials/{credential_id}", "patch"): {"name": "taken over"},
    ("/api/apps/{app_id}", "patch"): {"name": "taken over", "enabled": False},
    ("/api/apps/{app_id}/credentials/{provider}", "put"): {"credential_id": "@own_credential@"},
    ("/api/apps/{app_id}/keys", "post"): {"name": "taken over"},
    ("/api/budgets/{budget_id}", "patch"): {"token_budget": 1},
}


def _snapshot(side: Side) -> dict:
    """What a foreign write would change in A."""
    from budgets.models import Budget
    from credentials.models import Credential
    from tenants.models import ApiToken
    from workflows.models import App, AppCredentialBinding, Conversation, WorkflowRun

    with tenant_context(side.tenant):
        state = {
            "credentials": sorted(Credential.objects.values_list(
                "id", "name", "status", "is_default", "version", "secrets", "updated_at")),
            "apps": sorted(App.objects.values_list("id", "name", "enabled", "deleted_at", "webhook_secret",
                                                   "updated_at")),
            "bindings": sorted(AppCredentialBinding.objects.values_list("app_id", "provider", "credential_id")),
            "conversations": sorted(Conversation.objects.values_list("id", "name", "updated_at")),
            "parked": sorted(WorkflowRun.objects.filter(pk__in=side.parked.values()).values_list(
                "id", "status", "stop_requested")),
            "runs": WorkflowRun.objects.count(),
            "budgets": sorted(Budget.objects.values_list("id", "token_budget", "requests_per_minute", "reset_at",
                                                         "updated_at")),
        }
    state["tokens"] = sorted(ApiToken.objects.filter(tenant=side.tenant).values_list("id", "name", "revoked_at"))
    connection.set_schema_to_public()
    return state


def _foreign_values(route: str, names: list[str], a: Side) -> list[dict]:
    """A's ids for the route's parameters (several combinations where one id is B's own)."""
    if names == ["workflow_run_id"]:
        return [{"workflow_run_id": r} for r in a.runs.values()]
    if names == ["task_id"]:
        return [{"task_id": t} for t in [*a.tasks.values(), *a.parked_tasks.values()]]
    if names == ["conversation_id"]:
        return [{"conversation_id": a.conversation_id}]
    if names == ["credential_id"]:
        return [{"credential_id": c} for c in a.credentials.values()]
    if names == ["app_id"]:
        return [{"app_id": app} for app in a.apps.values()]
    if names == ["app_id", "provider"]:
        return [{"app_id": app} for app in a.apps.values()]
    if names == ["app_id", "key_id"]:
        return [{"app_id": a.apps[kind], "key_id": a.app_key_ids[kind]} for kind in a.apps] + [
            {"key_id": key} for key in [*a.app_key_ids.values(), a.mgmt_token_id]]
    if names == ["run_id"]:
        return [{"run_id": r} for r in [*a.runs.values(), *a.parked.values()]]
    if names == ["budget_id"]:
        return [{"budget_id": budget} for budget in a.budget_ids]
    raise AssertionError(f"no foreign ids known for {route} ({names}): add them to this test")


def test_every_api_endpoint_answers_a_foreign_id_like_a_missing_one(committed, world):
    a, b = world
    before = _snapshot(a)
    session = _admin_client(b)
    anonymous = Client()
    probed = 0
    for route, names, methods in _api_routes():
        if not names:
            continue
        for method in methods:
            body = WRITE_BODIES.get((route, method))
            if route.startswith("/v1/"):
                principals = [(anonymous, token, b.host) for token in b.app_tokens.values()]
                principals += [(anonymous, token, "localhost") for token in b.app_tokens.values()]
            else:
                principals = [(anonymous, b.mgmt_token, b.host), (anonymous, b.mgmt_token, "localhost"),
                              (session, None, b.host)]
            for foreign in _foreign_values(route, names, a):
                foreign = dict(foreign)
                fixed = {}
                if "provider" in names:
                    fixed["provider"] = "openai"
                if "app_id" in names and "app_id" not in foreign:
                    fixed["app_id"] = b.apps["workflow"]
                for client, token, host in principals:
                    template = route.format(**{n: fixed.get(n, "{" + n + "}") for n in names})
                    payload = body
                    if payload is not None:
                        payload = json.loads(json.dumps(payload).replace("@user@", a.user).replace(
                            "@own_credential@", b.credentials["openai_default"]))
                    _assert_same_as_missing(client, method, template, foreign, host=host, token=token,
                                            body=payload, marks=a.marks)
                    probed += 1
    assert probed > 150
    print(f"\n[isolation] {probed} foreign-id probes of {len(_api_routes())} API routes", file=sys.stderr)
    assert _snapshot(a) == before, "a request of tenant B changed tenant A's records"


def test_query_and_body_references_to_foreign_ids_answer_like_missing_ones(committed, world):
    a, b = world
    before = _snapshot(a)
    chat, workflow = b.app_tokens["chat"], b.app_tokens["workflow"]
    cases = [
        # (method, path template, foreign ids, token, body)
        ("get", "/v1/messages?conversation_id={c}&user=" + a.user, {"c": a.conversation_id}, chat, None),
        ("get", "/v1/messages?conversation_id={c}&user=" + b.user, {"c": a.conversation_id}, chat, None),
        ("get", "/v1/messages?conversation_id=" + b.conversation_id + "&user=" + b.user + "&first_id={m}",
         {"m": a.message_ids[0]}, chat, None),
        ("get", "/v1/conversations?user=" + b.user + "&last_id={c}", {"c": a.conversation_id}, chat, None),
        ("post", "/v1/chat-messages", {"c": a.conversation_id}, chat,
         {"query": "hi", "user": a.user, "conversation_id": "@c@", "response_mode": "blocking"}),
        ("post", "/v1/workflows/run", {"c": a.credentials["openai_default"]}, workflow,
         {"inputs": {"text": "x"}, "user": b.user, "credential_overrides": {"openai": "@c@"}}),
        ("post", "/v1/workflows/run", {"c": a.credentials["openai_byok"]}, workflow,
         {"inputs": {"text": "x"}, "user": a.owner, "credential_overrides": {"openai": "@c@"}}),
        ("post", "/v1/chat-messages", {"c": a.credentials["openai_bound"]}, chat,
         {"query": "x", "user": b.user, "credential_overrides": {"openai": "@c@"}}),
        ("post", "/v1/completion-messages", {"c": a.credentials["anthropic_default"]}, b.app_tokens["completion"],
         {"inputs": {"query": "x"}, "user": b.user, "credential_overrides": {"anthropic": "@c@"}}),
        ("put", "/api/apps/" + b.apps["chat"] + "/credentials/openai", {"c": a.credentials["openai_bound"]},
         b.mgmt_token, {"credential_id": "@c@"}),
        ("get", "/api/runs?app_id={c}", {"c": a.apps["workflow"]}, b.mgmt_token, None),
        ("get", "/api/runs?credential_id={c}", {"c": a.credentials["openai_default"]}, b.mgmt_token, None),
        ("get", "/api/usage?group_by=credential&credential_id={c}", {"c": a.credentials["openai_default"]},
         b.mgmt_token, None),
        ("get", "/api/usage?group_by=user&app_id={c}", {"c": a.apps["chat"]}, b.mgmt_token, None),
        ("get", "/api/budgets?credential_id={c}", {"c": a.credentials["openai_default"]}, b.mgmt_token, None),
        ("get", "/api/budgets?app_key_id={c}", {"c": a.app_key_ids["workflow"]}, b.mgmt_token, None),
        ("post", "/api/budgets", {"c": a.credentials["openai_bound"]}, b.mgmt_token,
         {"credential_id": "@c@", "token_budget": 5}),
        ("post", "/api/budgets", {"c": a.app_key_ids["chat"]}, b.mgmt_token,
         {"app_key_id": "@c@", "requests_per_minute": 5}),
        ("post", "/api/budgets", {"c": a.mgmt_token_id}, b.mgmt_token,
         {"app_key_id": "@c@", "requests_per_minute": 5}),
    ]
    anonymous = Client()
    with tenant_context(b.tenant):
        from workflows.models import WorkflowRun

        runs_before = WorkflowRun.objects.count()
    for method, template, foreign, token, body in cases:
        _assert_same_as_missing(anonymous, method, template, foreign, host=b.host, token=token,
                                body=body, marks=a.marks)
    # Lists filtered by A's end users, owners or words are empty, as for unknown ones.
    for path in ("/v1/conversations?user=" + a.user, "/v1/workflows/logs?created_by_end_user_session_id=" + a.user,
                 "/v1/workflows/logs?keyword=" + a.tag):
        token = chat if path.startswith("/v1/conversations") else workflow
        probe = _request(anonymous, "get", path, host=b.host, token=token)
        assert probe.status == 200 and json.loads(probe.body)["data"] == [], probe
    for path in ("/api/runs?user=" + a.user, "/api/credentials?owner=" + a.owner,
                 "/api/usage?group_by=user&user=" + a.user):
        probe = _request(anonymous, "get", path, host=b.host, token=b.mgmt_token)
        assert probe.status == 200 and json.loads(probe.body)["data"] == [], probe
    with tenant_context(b.tenant):
        assert WorkflowRun.objects.count() == runs_before, "a refused request queued a run"
    connection.set_schema_to_public()
    assert _snapshot(a) == before


def test_lists_and_pages_of_b_show_nothing_of_a(committed, world):
    a, b = world
    anonymous = Client()
    pages = [("/api/tenant", b.mgmt_token), ("/api/providers", b.mgmt_token), ("/api/credentials", b.mgmt_token),
             ("/api/budgets", b.mgmt_token),
             ("/api/apps", b.mgmt_token), ("/api/runs", b.mgmt_token), ("/api/schema/", b.mgmt_token),
             ("/api/docs/", b.mgmt_token)]
    pages += [(f"/api/usage?group_by={g}", b.mgmt_token)
              for g in ("credential", "user", "app", "day", "model")]
    pages += [(f"/api/apps/{app}/keys", b.mgmt_token) for app in b.apps.values()]
    pages += [(f"/api/runs/{run}", b.mgmt_token) for run in b.runs.values()]
    pages += [(f"/api/credentials/{c}", b.mgmt_token) for c in b.credentials.values()]
    pages += [(f"/api/budgets/{budget}{tail}", b.mgmt_token) for budget in b.budget_ids
              for tail in ("", "/spend", "/events")]
    for token in b.app_tokens.values():
        pages += [("/v1/info", token), ("/v1/parameters", token), ("/v1/workflows/logs", token),
                  (f"/v1/conversations?user={b.user}", token),
                  (f"/v1/messages?conversation_id={b.conversation_id}&user={b.user}", token)]
        pages += [(f"/v1/workflows/run/{run}", token) for run in b.runs.values()]
    own_seen = 0
    for path, token in pages:
        for host in (b.host, "localhost", a.host):  # the token decides, whatever the host
            probe = _request(anonymous, "get", path, host=host, token=token)
            assert probe.status in (200, 400, 404), probe
            assert not _leaks(probe, a.marks, []), (probe.what, _leaks(probe, a.marks, []))
            own_seen += probe.status == 200 and b.tag in probe.body
    assert own_seen > 20  # the probes did see B's own data


def _admin_models():
    from config.admin_sites import tenant_admin_site

    return [(model._meta.app_label, model._meta.model_name, model) for model in tenant_admin_site._registry]


def _a_objects_of(model, a: Side) -> list[str]:
    """A's primary keys of a registered model (UUID keys only: integer keys of two schemas overlap)."""
    from budgets.models import Budget
    from credentials.models import Credential
    from tenants.models import ApiToken
    from webhooks.models import WebhookDelivery
    from workflows.models import App, Conversation, Message, WorkflowRun

    known = {
        Credential: list(a.credentials.values()), App: list(a.apps.values()),
        WorkflowRun: [*a.runs.values(), *a.parked.values()], Conversation: [a.conversation_id],
        Message: a.message_ids, WebhookDelivery: a.delivery_ids, Budget: a.budget_ids,
    }
    if issubclass(model, ApiToken):
        return [*a.app_key_ids.values(), a.mgmt_token_id]
    return known.get(model, [])


def test_tenant_admin_pages_of_b_never_show_a(committed, world):
    a, b = world
    before = _snapshot(a)
    session = _admin_client(b)
    uuid_models = 0
    for label, name, model in _admin_models():
        changelist = reverse(f"admin:{label}_{name}_changelist", urlconf="config.urls_tenant")
        probe = _request(session, "get", changelist, host=b.host)
        assert probe.status == 200, probe
        assert not _leaks(probe, a.marks, []), (probe.what, _leaks(probe, a.marks, []))
        # Searching and filtering by A's words and ids finds nothing, as for unknown ones.
        _assert_same_as_missing(session, "get", changelist + "?q={x}", {"x": a.tag}, host=b.host, marks=a.marks)
        foreign = _a_objects_of(model, a)
        if foreign:
            uuid_models += 1
            _assert_same_as_missing(session, "get", changelist + "?q={x}", {"x": foreign[0]},
                                    host=b.host, marks=a.marks)
        references = {"app": list(a.apps.values()), "run": [a.runs["workflow"]],
                      "conversation": [a.conversation_id]}
        for field, values in references.items():
            if any(f.name == field for f in model._meta.fields):
                for value in values:
                    _assert_same_as_missing(session, "get", changelist + f"?{field}__id__exact={{x}}",
                                            {"x": value}, host=b.host, marks=a.marks)
        for pk in foreign:
            for page in ("change", "history", "delete"):
                template = reverse(f"admin:{label}_{name}_{page}", args=["PK"], urlconf="config.urls_tenant")
                template = template.replace("PK", "{x}")
                _assert_same_as_missing(session, "get", template, {"x": pk}, host=b.host, marks=a.marks,
                                        follow=True)
            # A forged change or delete confirmation answers the same and changes nothing.
            template = reverse(f"admin:{label}_{name}_delete", args=["PK"], urlconf="config.urls_tenant")
            _assert_same_as_missing(session, "post", template.replace("PK", "{x}"), {"x": pk}, host=b.host,
                                    marks=a.marks, follow=True)
    assert uuid_models >= 8
    for path in ("/admin/", "/admin/usage/"):
        probe = _request(session, "get", path, host=b.host)
        assert probe.status == 200 and not _leaks(probe, a.marks, []), (probe.what, _leaks(probe, a.marks, []))
    # "View on site" resolves any content type and object id: a foreign one answers like a missing one.
    from django.contrib.contenttypes.models import ContentType

    with tenant_context(b.tenant):
        content_types = list(ContentType.objects.values_list("id", flat=True))
    connection.set_schema_to_public()
    for ct in content_types:
        for pk in [a.credentials["openai_default"], a.app_key_ids["workflow"], str(a.tenant.pk), a.runs["workflow"]]:
            _assert_same_as_missing(session, "get", f"/admin/r/{ct}/{{x}}/", {"x": pk}, host=b.host, marks=a.marks)
    assert _snapshot(a) == before


def test_a_session_and_a_tokens_on_b_host_reach_nothing_of_b(committed, world):
    a, b = world
    a_session = _admin_client(a)
    anonymous = Client()
    # A's admin cookie on B's host (and on the platform host) is no session at all.
    for host in (b.host, "localhost"):
        for path in ("/admin/", "/admin/usage/", "/admin/credentials/credential/",
                     f"/admin/credentials/credential/{b.credentials['openai_default']}/change/",
                     "/api/credentials", "/api/runs", f"/api/runs/{b.runs['workflow']}"):
            with_cookie = _request(a_session, "get", path, host=host)
            without = _request(anonymous, "get", path, host=host)
            assert _normalized(with_cookie, []) == _normalized(without, []), (host, path)
            assert with_cookie.status in (302, 401, 403), with_cookie
            assert not _leaks(with_cookie, b.marks, []), (with_cookie.what, _leaks(with_cookie, b.marks, []))
    # A's tokens on B's host answer for A (the token decides), never with B's data; with B's
    # admin session alongside, the token still decides.
    b_session = _admin_client(b)
    for client in (anonymous, b_session):
        for path in ("/api/credentials", "/api/runs", "/api/apps", "/api/usage?group_by=credential",
                     f"/api/runs/{b.runs['workflow']}", f"/api/credentials/{b.credentials['openai_default']}"):
            probe = _request(client, "get", path, host=b.host, token=a.mgmt_token)
            assert not _leaks(probe, b.marks, [b.runs["workflow"], b.credentials["openai_default"]]), probe.what
        for token in a.app_tokens.values():
            for path in ("/v1/info", "/v1/workflows/logs", f"/v1/conversations?user={b.user}",
                         f"/v1/workflows/run/{b.runs['workflow']}", "/api/credentials"):
                probe = _request(client, "get", path, host=b.host, token=token)
                assert not _leaks(probe, b.marks, [b.runs["workflow"]]), probe.what


TIMING_SAMPLES = 31


def _quartile(values: list[float]) -> float:
    return statistics.quantiles(values, n=4)[0]


def test_foreign_and_missing_ids_take_the_same_time(committed, world, capsys):
    """Interleaved requests with a foreign and a missing id. Noise from other processes only
    adds time, so the lower quartiles are compared (as an attacker would); the difference
    must stay within noise, far below what a caller could measure through a network."""
    a, b = world
    session = _admin_client(b)
    anonymous = Client()
    probes = [
        ("api credential", anonymous, "/api/credentials/{x}", b.mgmt_token, a.credentials["openai_default"]),
        ("api run", anonymous, "/api/runs/{x}", b.mgmt_token, a.runs["workflow"]),
        ("api budget", anonymous, "/api/budgets/{x}", b.mgmt_token, a.budget_ids[0]),
        ("v1 run", anonymous, "/v1/workflows/run/{x}", b.app_tokens["workflow"], a.runs["workflow"]),
        ("v1 messages", anonymous, "/v1/messages?user=" + a.user + "&conversation_id={x}", b.app_tokens["chat"],
         a.conversation_id),
        ("admin credential", session, "/admin/credentials/credential/{x}/change/", None,
         a.credentials["openai_default"]),
    ]
    report = []
    for label, client, template, token, foreign in probes:
        timings = {"foreign": [], "missing": []}
        for i in range(TIMING_SAMPLES * 2 + 2):
            kind = "foreign" if i % 2 == 0 else "missing"
            value = foreign if kind == "foreign" else str(uuid.uuid4())
            started = time.perf_counter()
            _request(client, "get", template.format(x=value), host=b.host, token=token)
            elapsed = (time.perf_counter() - started) * 1000
            if i >= 2:  # the first pair warms caches
                timings[kind].append(elapsed)
        report.append((label, *(f(timings[k]) for f in (_quartile, statistics.median)
                                for k in ("foreign", "missing"))))
    with capsys.disabled():
        print("\n[isolation timing] ms per in-process request, foreign id vs missing id "
              f"({TIMING_SAMPLES} each, interleaved):", file=sys.stderr)
        for label, foreign_q, missing_q, foreign_m, missing_m in report:
            print(f"  {label:<17} lower quartile {foreign_q:6.2f} vs {missing_q:6.2f} ({foreign_q - missing_q:+.2f})"
                  f"   median {foreign_m:6.2f} vs {missing_m:6.2f} ({foreign_m - missing_m:+.2f})", file=sys.stderr)
    for label, foreign_q, missing_q, *_ in report:
        assert abs(foreign_q - missing_q) < max(3.0, 0.3 * missing_q), (label, report)


# --- Against the real server, with concurrent requests of both tenants ----------------------------


@pytest.mark.e2e
def test_concurrent_requests_of_two_tenants_never_mix(world, web_server):
    """Async views do their database work on one shared thread, switching tenant per block:
    interleaved requests of A and B must each see only their own tenant."""
    a, b = world
    paths = {
        side.slug: [
            ("/api/credentials", side.mgmt_token), ("/api/runs", side.mgmt_token), ("/api/apps", side.mgmt_token),
            (f"/api/runs/{side.runs['workflow']}", side.mgmt_token),
            ("/api/usage?group_by=credential", side.mgmt_token),
            ("/v1/info", side.app_tokens["workflow"]), ("/v1/workflows/logs", side.app_tokens["workflow"]),
            (f"/v1/workflows/run/{side.runs['byok']}", side.app_tokens["workflow"]),
            (f"/v1/messages?conversation_id={side.conversation_id}&user={side.user}", side.app_tokens["chat"]),
            (f"/v1/conversations?user={side.user}", side.app_tokens["chat"]),
        ]
        for side in (a, b)
    }

    def worker(index: int):
        problems = []
        with httpx.Client(base_url=web_server.base_url, timeout=30) as http:
            for step in range(24):
                me, other = (a, b) if (index + step) % 2 == 0 else (b, a)
                path, token = paths[me.slug][(index * 7 + step) % len(paths[me.slug])]
                response = http.get(path, headers={"Authorization": f"Bearer {token}",
                                                   "Host": other.host if step % 3 == 0 else me.host})
                if response.status_code != 200 or me.tag not in response.text:
                    problems.append(f"{path} for {me.slug}: {response.status_code} {response.text[:200]}")
                leaked = [m for m in other.marks if m in response.text]
                if leaked:
                    problems.append(f"{path} for {me.slug} returned {other.slug}'s {leaked}")
        return problems

    with ThreadPoolExecutor(max_workers=8) as pool:
        problems = [p for found in pool.map(worker, range(8)) for p in found]
    assert not problems, problems[:10]
