"""Management API for apps, credential bindings, app keys and runs: what a client observes,
tenant isolation, clear Dify-style 4xx errors, no secret in any answer, a valid schema."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from credentials.services import credential_create, credential_disable
from tenants.models import ApiToken
from tenants.services import api_token_hash, api_token_issue
from tests.conftest import canary_key
from tests.workflows.test_usage import day_at_noon, llm, record_run
from workflows.examples import SUMMARIZER
from workflows.models import App, AppCredentialBinding, WorkflowRun

APP_NOT_FOUND = b'{"status":404,"code":"app_not_found","message":"App not found."}'


@pytest.fixture
def api(db, tenant_a):
    token = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.MANAGEMENT).token
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")


@pytest.fixture
def api_b(db, tenant_b):
    token = api_token_issue(tenant=tenant_b, scope=ApiToken.Scope.MANAGEMENT).token
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")


@pytest.fixture
def secrets_seen():
    """Every key stored by a test: no response may contain one."""
    return []


@pytest.fixture
def make_credential(db, secrets_seen):
    def make(tenant, **values):
        key = canary_key()
        secrets_seen.append(key)
        values = {"provider": "openai", "name": "Team key", "secrets": {"api_key": key}, **values}
        with schema_context(tenant.schema_name):
            return credential_create(**values)

    return make


def graph(**llm_changes) -> dict:
    value = copy.deepcopy(SUMMARIZER)
    value["nodes"][1].update(llm_changes)
    return value


def create_app(api, **overrides):
    body = {"name": "Summarizer", "graph": graph(), **overrides}
    return api.post("/api/apps", body, content_type="application/json")


def send(client, method: str, path: str, body=None):
    return getattr(client, method)(path, body if body is not None else {}, content_type="application/json")


def assert_error(response, status: int, code: str, fragment: str = ""):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"status", "code", "message"}
    assert (body["status"], body["code"]) == (status, code), body
    assert fragment in body["message"], body["message"]
    return body


# --- Apps --------------------------------------------------------------------------------


def test_app_create_retrieve_update_list(api):
    created = create_app(api, description="Short summaries")
    assert created.status_code == 201, created.content
    app = created.json()
    assert app["name"] == "Summarizer" and app["mode"] == "workflow" and app["enabled"] is True
    assert app["graph"] == SUMMARIZER and app["credentials"] == []
    # The webhook secret is shown once, on creation, and never again.
    assert app.pop("webhook_secret").startswith("whsec_")
    assert api.get(f"/api/apps/{app['id']}").json() == app

    patched = send(api, "patch", f"/api/apps/{app['id']}",
                   {"name": "Summaries", "graph": graph(model="gpt-4o"), "enabled": False})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Summaries" and patched.json()["enabled"] is False
    assert patched.json()["graph"]["nodes"][1]["model"] == "gpt-4o"

    config = {"provider": "openai", "model": "gpt-4o-mini"}
    chat = create_app(api, name="Helpdesk", mode="chat", graph={}, model_config=config)
    assert chat.status_code == 201, chat.content
    assert chat.json()["model_config"] == config
    assert_error(send(api, "patch", f"/api/apps/{chat.json()['id']}", {"graph": graph()}),
                 400, "invalid_param", "graph")
    create_app(api, name="Archive", enabled=False)

    listed = api.get("/api/apps").json()
    assert set(listed) == {"data", "has_more", "limit", "page", "total"}
    assert [a["name"] for a in listed["data"]] == ["Archive", "Helpdesk", "Summaries"]
    assert [a["name"] for a in api.get("/api/apps?mode=chat").json()["data"]] == ["Helpdesk"]
    assert [a["name"] for a in api.get("/api/apps?enabled=false").json()["data"]] == ["Archive", "Summaries"]
    assert [a["name"] for a in api.get("/api/apps?enabled=true&mode=workflow").json()["data"]] == []
    page = api.get("/api/apps?limit=2&page=2").json()
    assert (page["total"], page["limit"], page["page"], page["has_more"]) == (3, 2, 2, False)
    assert [a["name"] for a in page["data"]] == ["Summaries"]
    assert api.get("/api/apps?limit=2").json()["has_more"] is True
    assert_error(api.get("/api/apps?mode=agent"), 400, "invalid_param", "mode")
    assert_error(api.get("/api/apps?limit=500"), 400, "invalid_param", "limit")


def test_a_bad_graph_is_a_400_naming_the_node_and_nothing_changes(api, tenant_a):
    bad = graph(provider="nope")
    body = assert_error(create_app(api, graph=bad), 400, "invalid_graph", 'node "summarize"')
    assert "nope" in body["message"]
    assert_error(create_app(api, graph={}), 400, "invalid_graph")
    app = create_app(api).json()
    app.pop("webhook_secret")
    assert_error(send(api, "patch", f"/api/apps/{app['id']}", {"graph": bad, "name": "changed"}),
                 400, "invalid_graph", 'node "summarize"')
    assert api.get(f"/api/apps/{app['id']}").json() == app
    with schema_context(tenant_a.schema_name):
        assert App.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"mode": "agent"}, "mode"),
        ({"graph": [1, 2]}, "graph"),
        ({"enabled": "perhaps"}, "enabled"),
        ({"grahp": {}}, "grahp"),
        ({"mode": "chat", "model_config": {"provider": "openai", "model": "m"}}, "graph"),
    ],
)
def test_bad_app_input_is_a_400_naming_the_field(api, body, fragment):
    assert_error(create_app(api, **body), 400, "invalid_param", fragment)


def test_mode_cannot_be_patched(api):
    app = create_app(api).json()
    assert_error(send(api, "patch", f"/api/apps/{app['id']}", {"mode": "chat"}), 400, "invalid_param", "mode")


def test_delete_removes_the_app_and_revokes_its_keys(api, tenant_a):
    app = create_app(api).json()
    other = create_app(api, name="Other").json()
    token = send(api, "post", f"/api/apps/{app['id']}/keys").json()["token"]
    other_token = send(api, "post", f"/api/apps/{other['id']}/keys").json()["token"]
    service = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")
    assert service.get("/v1/info").status_code == 200

    assert api.delete(f"/api/apps/{app['id']}").status_code == 204
    assert api.get(f"/api/apps/{app['id']}").content == APP_NOT_FOUND
    assert service.get("/v1/info").status_code == 401
    assert ApiToken.objects.get(token_hash=api_token_hash(token)).revoked_at is not None
    other_service = Client(HTTP_AUTHORIZATION=f"Bearer {other_token}", HTTP_HOST="localhost")
    assert other_service.get("/v1/info").status_code == 200


def test_foreign_missing_and_malformed_app_ids_answer_alike(api, api_b, make_credential, tenant_a):
    own = create_app(api).json()["id"]
    credential = make_credential(tenant_a)
    key_id = send(api, "post", f"/api/apps/{own}/keys").json()["id"]
    answers = []
    for app_id in (own, str(uuid.uuid4()), "not-a-uuid", "1"):
        for method, path, body in (
            ("get", f"/api/apps/{app_id}", None),
            ("patch", f"/api/apps/{app_id}", {"name": "mine now"}),
            ("patch", f"/api/apps/{app_id}", {"graph": "bad"}),
            ("delete", f"/api/apps/{app_id}", None),
            ("put", f"/api/apps/{app_id}/credentials/openai", {"credential_id": str(credential.id)}),
            ("delete", f"/api/apps/{app_id}/credentials/openai", None),
            ("get", f"/api/apps/{app_id}/keys", None),
            ("post", f"/api/apps/{app_id}/keys", {"name": "mine"}),
            ("post", f"/api/apps/{app_id}/keys/{key_id}/revoke", None),
        ):
            response = send(api_b, method, path, body)
            answers.append((response.status_code, response.content))
    assert set(answers) == {(404, APP_NOT_FOUND)}
    assert api_b.get("/api/apps").json()["total"] == 0
    # Nothing of tenant alpha changed.
    assert api.get(f"/api/apps/{own}").json()["name"] == "Summarizer"
    assert api.get(f"/api/apps/{own}/keys").json()["data"][0]["revoked_at"] is None


def test_no_token_app_token_or_foreign_session_cannot_manage_apps(db, tenant_a, provisioned_tenants):
    assert Client().get("/api/apps", HTTP_HOST="localhost").status_code == 401
    app_token = api_token_issue(tenant=tenant_a, scope=ApiToken.Scope.APP, app_id=uuid.uuid4()).token
    response = Client(HTTP_AUTHORIZATION=f"Bearer {app_token}").get("/api/apps", HTTP_HOST="localhost")
    assert_error(response, 401, "unauthorized")

    alpha = provisioned_tenants["alpha"]
    session = Client(HTTP_HOST="alpha.localhost")
    session.post("/admin/login/", {"username": alpha.admin_email, "password": alpha.admin_password})
    assert session.get("/api/apps").status_code == 200
    created = session.post("/api/apps", {"name": "From the admin", "graph": graph()},
                           content_type="application/json")
    assert created.status_code == 201
    assert session.get("/api/apps", HTTP_HOST="beta.localhost").status_code in (401, 403)


# --- Credential bindings -----------------------------------------------------------------


def test_bind_replace_and_unbind_credentials(api, make_credential, tenant_a, secrets_seen):
    app = create_app(api).json()
    first, second = make_credential(tenant_a), make_credential(tenant_a, name="Spare key")
    claude = make_credential(tenant_a, provider="anthropic", name="Claude key")
    path = f"/api/apps/{app['id']}/credentials/openai"

    bound = send(api, "put", path, {"credential_id": str(first.id)})
    assert bound.status_code == 200
    assert bound.json()["credentials"] == [{"provider": "openai", "credential_id": str(first.id)}]
    send(api, "put", f"/api/apps/{app['id']}/credentials/anthropic", {"credential_id": str(claude.id)})
    replaced = send(api, "put", path, {"credential_id": str(second.id)}).json()
    assert replaced["credentials"] == [
        {"provider": "anthropic", "credential_id": str(claude.id)},
        {"provider": "openai", "credential_id": str(second.id)},
    ]
    assert api.get(f"/api/apps/{app['id']}").json()["credentials"] == replaced["credentials"]
    assert [a["credentials"] for a in api.get("/api/apps").json()["data"]] == [replaced["credentials"]]

    assert api.delete(path).status_code == 204
    assert api.get(f"/api/apps/{app['id']}").json()["credentials"] == [
        {"provider": "anthropic", "credential_id": str(claude.id)}
    ]
    assert_error(api.delete(path), 404, "binding_not_found", "openai")
    for response in (bound,):
        assert not any(key in response.content.decode() for key in secrets_seen)


def test_binding_refusals(api, make_credential, tenant_a, tenant_b):
    app = create_app(api).json()
    path = f"/api/apps/{app['id']}/credentials/openai"
    foreign = make_credential(tenant_b)
    missing = uuid.uuid4()
    foreign_answer = assert_error(send(api, "put", path, {"credential_id": str(foreign.id)}),
                                  400, "credential_not_found")
    missing_answer = assert_error(send(api, "put", path, {"credential_id": str(missing)}),
                                  400, "credential_not_found")
    assert foreign_answer["message"].replace(str(foreign.id), "ID") == missing_answer["message"].replace(
        str(missing), "ID") == "credential_id: credential ID not found."

    claude = make_credential(tenant_a, provider="anthropic")
    assert_error(send(api, "put", path, {"credential_id": str(claude.id)}),
                 400, "credential_provider_mismatch", "anthropic")
    disabled = make_credential(tenant_a)
    with schema_context(tenant_a.schema_name):
        credential_disable(credential=disabled)
    assert_error(send(api, "put", path, {"credential_id": str(disabled.id)}), 400, "credential_disabled")
    assert_error(send(api, "put", f"/api/apps/{app['id']}/credentials/nope",
                      {"credential_id": str(claude.id)}), 400, "unknown_provider", "nope")
    assert_error(send(api, "delete", f"/api/apps/{app['id']}/credentials/nope"), 400, "unknown_provider")
    assert_error(send(api, "put", path, {"credential_id": "abc"}), 400, "invalid_param", "credential_id")
    assert_error(send(api, "put", path, {}), 400, "invalid_param", "credential_id")
    assert_error(send(api, "put", path, {"credential_id": str(claude.id), "base_url": "http://evil"}),
                 400, "invalid_param", "base_url")
    with schema_context(tenant_a.schema_name):
        assert not AppCredentialBinding.objects.exists()


# --- App keys ----------------------------------------------------------------------------


def test_key_is_shown_once_listed_without_it_and_revocable(api, tenant_a):
    app = create_app(api).json()
    created = send(api, "post", f"/api/apps/{app['id']}/keys", {
        "name": "Production", "override_providers": ["openai"], "allow_inline_keys": True,
        "inline_endpoint_hosts": ["LLM.Example.com", "10.0.0.7"],
    })
    assert created.status_code == 201, created.content
    key = created.json()
    token = key.pop("token")
    assert token.startswith("app-") and key["hint"] == token[:10]
    assert key["policy"] == {"allow_overrides": True, "override_providers": ["openai"],
                             "allow_inline_keys": True, "inline_endpoint_hosts": ["10.0.0.7", "llm.example.com"]}
    assert (key["name"], key["app_id"], key["revoked_at"], key["last_used_at"]) == (
        "Production", app["id"], None, None)

    service = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost")
    assert service.get("/v1/info").json()["name"] == "Summarizer"

    listed = api.get(f"/api/apps/{app['id']}/keys")
    assert set(listed.json()) == {"data", "has_more", "limit", "page", "total"}
    (row,) = listed.json()["data"]
    assert set(row) == {"id", "app_id", "name", "hint", "policy", "created_at", "last_used_at", "revoked_at"}
    assert row["id"] == key["id"] and row["last_used_at"] is not None
    assert token not in listed.content.decode() and token[10:] not in listed.content.decode()

    revoked = send(api, "post", f"/api/apps/{app['id']}/keys/{key['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert token not in revoked.content.decode()
    assert_error(service.get("/v1/info"), 401, "unauthorized")
    again = send(api, "post", f"/api/apps/{app['id']}/keys/{key['id']}/revoke")
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert api.get(f"/api/apps/{app['id']}/keys").json()["data"][0]["revoked_at"] == revoked.json()["revoked_at"]


def test_default_policy_is_overrides_without_one_off_keys(api):
    app = create_app(api).json()
    key = send(api, "post", f"/api/apps/{app['id']}/keys").json()
    assert key["name"] == "" and key["policy"] == {
        "allow_overrides": True, "override_providers": None, "allow_inline_keys": False,
        "inline_endpoint_hosts": [],
    }
    closed = send(api, "post", f"/api/apps/{app['id']}/keys", {"allow_overrides": False}).json()
    assert closed["policy"]["allow_overrides"] is False
    assert api.get(f"/api/apps/{app['id']}/keys?limit=1").json()["has_more"] is True


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"override_providers": ["openai", "nope"]}, "override_providers"),
        ({"override_providers": "openai"}, "override_providers"),
        ({"allow_overrides": False, "override_providers": ["openai"]}, "override_providers"),
        ({"allow_inline_keys": True, "inline_endpoint_hosts": ["https://llm.example.com"]}, "inline_endpoint_hosts"),
        ({"allow_inline_keys": True, "inline_endpoint_hosts": ["llm.example.com:8443"]}, "inline_endpoint_hosts"),
        ({"allow_inline_keys": True, "inline_endpoint_hosts": ["*.example.com"]}, "inline_endpoint_hosts"),
        ({"allow_inline_keys": True, "inline_endpoint_hosts": ["-bad-.example.com"]}, "inline_endpoint_hosts"),
        ({"allow_inline_keys": True, "inline_endpoint_hosts": [""]}, "inline_endpoint_hosts"),
        ({"allow_inline_keys": True, "inline_endpoint_hosts": ["a/b"]}, "inline_endpoint_hosts"),
        ({"inline_endpoint_hosts": ["llm.example.com"]}, "inline_endpoint_hosts"),
        ({"allow_inline_keys": "sometimes"}, "allow_inline_keys"),
        ({"name": "x" * 201}, "name"),
        ({"scope": "management"}, "scope"),
    ],
)
def test_bad_key_policy_is_a_400_naming_the_field(api, tenant_a, body, fragment):
    app = create_app(api).json()
    assert_error(send(api, "post", f"/api/apps/{app['id']}/keys", body), 400, "invalid_param", fragment)
    assert api.get(f"/api/apps/{app['id']}/keys").json()["total"] == 0


def test_key_ids_of_other_apps_and_tenants_are_not_found(api, api_b):
    app = create_app(api).json()
    sibling = create_app(api, name="Sibling").json()
    sibling_key = send(api, "post", f"/api/apps/{sibling['id']}/keys").json()["id"]
    beta_app = create_app(api_b).json()
    beta_key = send(api_b, "post", f"/api/apps/{beta_app['id']}/keys").json()["id"]
    answers = {
        send(api, "post", f"/api/apps/{app['id']}/keys/{key_id}/revoke").content
        for key_id in (sibling_key, beta_key, str(uuid.uuid4()), "nope")
    }
    assert answers == {b'{"status":404,"code":"key_not_found","message":"App key not found."}'}
    assert api_b.get(f"/api/apps/{beta_app['id']}/keys").json()["data"][0]["revoked_at"] is None
    assert api.get(f"/api/apps/{sibling['id']}/keys").json()["data"][0]["revoked_at"] is None
    assert api.get(f"/api/apps/{app['id']}/keys").json()["total"] == 0


# --- Runs --------------------------------------------------------------------------------


@pytest.fixture
def runs(make_credential, tenant_a, tenant_b):
    """Three runs of alpha (two apps, two users, three days) and one of beta."""
    team = make_credential(tenant_a)
    customer = make_credential(tenant_a, provider="anthropic", name="Customer key", owner="user-7")
    with schema_context(tenant_b.schema_name):
        beta = App.objects.create(name="Beta", graph=graph())
        beta_run = record_run(beta, user="user-1", created_at=day_at_noon(0),
                              steps=[llm(None, "inline", "gpt-4o-mini", 1, 1, "0.0000001")])
    with schema_context(tenant_a.schema_name):
        summarizer = App.objects.create(name="Summarizer", graph=graph())
        triage = App.objects.create(name="Triage", graph=graph())
        made = {
            "old": record_run(summarizer, user="user-1", created_at=day_at_noon(3), steps=[
                llm(team, "default", "gpt-4o-mini", 100, 50, "0.0000450"),
            ]),
            "failed": record_run(summarizer, user="user-7", created_at=day_at_noon(2), status="failed", steps=[
                llm(customer, "override", "claude-3-5-haiku", 200, 100, "0.0006000"),
                llm(None, "inline", "gpt-4o-mini", 10, 5, "0.0000045", provider="openai"),
            ]),
            "new": record_run(triage, user="user-1", created_at=day_at_noon(1), steps=[
                {"node_id": "start", "node_type": "start"},
                llm(team, "app", "gpt-4o", 1000, 500, "0.0045000"),
            ]),
        }
    return {"team": team, "customer": customer, "summarizer": summarizer, "triage": triage,
            "beta_run": beta_run, **made}


def run_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [run["id"] for run in response.json()["data"]]


def test_runs_list_newest_first_with_filters(api, runs):
    new, failed, old = (str(runs[name].id) for name in ("new", "failed", "old"))
    listed = api.get("/api/runs")
    assert run_ids(listed) == [new, failed, old]
    first = listed.json()["data"][0]
    assert not {"inputs", "outputs", "node_executions"} & set(first)  # the detail's
    assert first["app_id"] == str(runs["triage"].id) and first["app_name"] == "Triage"
    assert (first["user"], first["status"], first["response_mode"]) == ("user-1", "succeeded", "blocking")
    assert first["credentials"] == [{"provider": "openai", "source": "app", "credential_id": str(runs["team"].id),
                                     "fingerprint": runs["team"].fingerprint[:16]}]

    assert run_ids(api.get("/api/runs", {"app_id": str(runs["summarizer"].id)})) == [failed, old]
    assert run_ids(api.get("/api/runs", {"status": "failed"})) == [failed]
    assert run_ids(api.get("/api/runs", {"user": "user-1"})) == [new, old]
    assert run_ids(api.get("/api/runs", {"credential_id": str(runs["team"].id)})) == [new, old]
    assert run_ids(api.get("/api/runs", {"credential_id": str(runs["customer"].id)})) == [failed]
    assert run_ids(api.get("/api/runs", {"credential_id": str(uuid.uuid4())})) == []
    two_days_ago = str(timezone.localdate() - timedelta(days=2))
    assert run_ids(api.get("/api/runs", {"created_after": two_days_ago})) == [new, failed]
    assert run_ids(api.get("/api/runs", {"created_before": two_days_ago})) == [old]
    assert run_ids(api.get("/api/runs", {"created_after": day_at_noon(2).isoformat(),
                                         "created_before": day_at_noon(1).isoformat()})) == [failed]
    assert run_ids(api.get("/api/runs", {"user": "user-1", "app_id": str(runs["summarizer"].id)})) == [old]

    page = api.get("/api/runs", {"limit": 2, "page": 2}).json()
    assert (page["total"], page["limit"], page["page"], page["has_more"]) == (3, 2, 2, False)
    assert [run["id"] for run in page["data"]] == [old]
    assert api.get("/api/runs", {"limit": 2}).json()["has_more"] is True


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"created_after": "last week"}, "created_after"),
        ({"created_before": "2024-02-30"}, "created_before"),
        ({"created_after": "2024-05-02", "created_before": "2024-05-01"}, "created_before"),
        ({"status": "lost"}, "status"),
        ({"app_id": "summarizer"}, "app_id"),
        ({"credential_id": "x"}, "credential_id"),
        ({"page": "0"}, "page"),
    ],
)
def test_bad_run_filters_are_a_400_naming_the_parameter(api, params, parameter):
    body = assert_error(api.get("/api/runs", params), 400, "invalid_param")
    assert body["message"].startswith(f"{parameter}: ")


def test_run_detail_has_its_node_executions_and_no_secret(api, runs, secrets_seen):
    response = api.get(f"/api/runs/{runs['failed'].id}")
    assert response.status_code == 200
    run = response.json()
    assert run["status"] == "failed" and run["user"] == "user-7"
    assert run["credentials"] == [
        {"provider": "anthropic", "source": "override", "credential_id": str(runs["customer"].id),
         "fingerprint": runs["customer"].fingerprint[:16]},
        {"provider": "openai", "source": "inline", "credential_id": None, "fingerprint": "f" * 16},
    ]
    first, second = run["node_executions"]
    assert first == {
        "node_id": "n0", "type": "llm", "title": "", "index": 0, "status": "succeeded",
        "provider": "anthropic", "model": "claude-3-5-haiku", "credential_id": str(runs["customer"].id),
        "credential_source": "override", "fingerprint": runs["customer"].fingerprint[:16],
        "prompt_tokens": 200, "completion_tokens": 100, "total_tokens": 300, "total_price": "0.0006000",
        "currency": "USD", "elapsed_time": 0.0, "error": "",
        "created_at": first["created_at"], "finished_at": None,
    }
    assert (second["credential_id"], second["credential_source"], second["total_price"]) == (
        None, "inline", "0.0000045")
    everything = response.content.decode() + api.get("/api/runs").content.decode()
    assert secrets_seen and not any(key in everything for key in secrets_seen)
    assert runs["customer"].fingerprint not in everything  # only its prefix


def test_foreign_missing_and_malformed_run_ids_answer_alike(api, runs):
    answers = {
        (response.status_code, response.content)
        for response in (api.get(f"/api/runs/{run_id}")
                         for run_id in (runs["beta_run"].id, uuid.uuid4(), "nope"))
    }
    assert answers == {(404, b'{"status":404,"code":"not_found","message":"Workflow run not found."}')}
    assert str(runs["beta_run"].id) not in api.get("/api/runs").content.decode()


# --- OpenAPI -----------------------------------------------------------------------------


def test_schema_documents_the_endpoints(api):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    operations = {
        operation["operationId"]
        for path in schema["paths"].values() for operation in path.values()
    }
    assert {
        "apps_list", "apps_create", "apps_retrieve", "apps_update", "apps_delete",
        "apps_credentials_bind", "apps_credentials_unbind", "apps_keys_list", "apps_keys_create",
        "apps_keys_revoke", "runs_list", "runs_retrieve", "usage_summary",
    } <= operations
    assert "/api/apps/{app_id}/keys/{key_id}/revoke" in schema["paths"]


def test_schema_validates_without_warnings(tmp_path):
    target = tmp_path / "s.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "/api/usage" in yaml.safe_load(target.read_text())["paths"]


def test_webhook_secret_rotates_and_deleted_apps_keep_their_runs(api, tenant_a):
    app = create_app(api).json()
    rotated = send(api, "post", f"/api/apps/{app['id']}/webhook-secret/rotate").json()["webhook_secret"]
    assert rotated.startswith("whsec_") and rotated != app["webhook_secret"]
    with schema_context(tenant_a.schema_name):
        run = WorkflowRun.objects.create(app_id=app["id"], graph={}, response_mode="blocking", end_user="u",
                                         deadline_at=timezone.now() + timedelta(minutes=1))
    assert send(api, "delete", f"/api/apps/{app['id']}").status_code == 204
    assert api.get(f"/api/apps/{app['id']}").status_code == 404
    assert api.get(f"/api/runs/{run.id}").status_code == 200  # billing history survives
