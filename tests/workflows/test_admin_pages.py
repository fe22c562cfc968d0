"""Every tenant admin page of apps, runs, conversations and messages renders, and the app
form refuses what would not run."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from workflows.examples import SUMMARIZER
from workflows.models import App, Conversation, Message, NodeExecution, WorkflowRun
from workflows.services import app_create

# The app form carries an inline formset for credential bindings.
NO_BINDINGS = {"credential_bindings-TOTAL_FORMS": "0", "credential_bindings-INITIAL_FORMS": "0"}


@pytest.fixture
def records(db, tenant_a):
    connection.set_tenant(tenant_a)
    app = app_create(name="Admin chat", mode="chat", model_config={"provider": "openai", "model": "m"})
    conversation = Conversation.objects.create(app=app, end_user="u1", name="Hello")
    run = WorkflowRun.objects.create(app=app, graph=app.graph, response_mode="blocking", end_user="u1",
                                     deadline_at=timezone.now() + timedelta(minutes=5), conversation=conversation)
    NodeExecution.objects.create(run=run, node_id="llm", node_type="llm", index=1, provider="openai", model="m")
    message = Message.objects.create(app=app, conversation=conversation, run=run, end_user="u1", query="hi")
    connection.set_schema_to_public()
    return {"app": app, "conversation": conversation, "run": run, "message": message}


@pytest.mark.parametrize("page", [
    "/admin/workflows/app/", "/admin/workflows/app/add/", "/admin/workflows/workflowrun/",
    "/admin/workflows/conversation/", "/admin/workflows/message/", "/admin/tenants/apitoken/",
])
def test_changelists_render(admin_client, records, page):
    assert admin_client.get(page).status_code == 200


def test_detail_pages_render(admin_client, records):
    for path in (f"/admin/workflows/app/{records['app'].pk}/change/",
                 f"/admin/workflows/workflowrun/{records['run'].pk}/change/",
                 f"/admin/workflows/conversation/{records['conversation'].pk}/change/",
                 f"/admin/workflows/message/{records['message'].pk}/change/"):
        assert admin_client.get(path).status_code == 200, path


def test_app_form_refuses_an_invalid_graph_naming_the_node(admin_client, tenant_a):
    response = admin_client.post("/admin/workflows/app/add/", {
        "name": "Broken", "mode": "workflow", "description": "", "enabled": "on",
        "graph": '{"nodes": [{"id": "start", "type": "start", "variables": []}], "edges": []}',
        "model_config": "{}", **NO_BINDINGS,
    })
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    connection.set_tenant(tenant_a)
    assert not App.objects.filter(name="Broken").exists()


def test_app_form_accepts_a_valid_graph(admin_client, tenant_a):
    import json

    response = admin_client.post("/admin/workflows/app/add/", {
        "name": "Valid", "mode": "workflow", "description": "", "enabled": "on",
        "graph": json.dumps(SUMMARIZER), "model_config": "{}", **NO_BINDINGS,
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    connection.set_tenant(tenant_a)
    assert App.objects.get(name="Valid").graph == SUMMARIZER


def test_chat_app_form_compiles_its_model_config(admin_client, tenant_a):
    response = admin_client.post("/admin/workflows/app/add/", {
        "name": "Chatty", "mode": "chat", "description": "", "enabled": "on", "graph": "{}",
        "model_config": '{"provider": "nope", "model": "x"}', **NO_BINDINGS,
    })
    assert response.status_code == 200 and "unknown provider" in response.content.decode()
