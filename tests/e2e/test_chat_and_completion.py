"""Chat and completion apps end to end, through the same worker, overrides and accounting."""

from __future__ import annotations

import time

import pytest
from django_tenants.utils import tenant_context

from fake_llm.client import key_sha256
from tests.e2e.conftest import ServiceClient

pytestmark = pytest.mark.e2e


@pytest.fixture
def one(workspaces):
    return workspaces["eone"]


def chat_client(platform_, workspace, app="chat") -> ServiceClient:
    return ServiceClient(platform_.base_url, workspace.app_keys[app])


def chat_calls(fake):
    return [c for c in fake.calls() if c["operation"] == "chat"]


def answer_calls(fake):
    """Provider calls that answered the user (not conversation naming)."""
    return [c for c in chat_calls(fake) if "short title" not in c["messages"][-1]["content"]]


@pytest.mark.parametrize("mode", ["blocking", "streaming"])
def test_three_turn_chat_sends_history_and_records_the_payer(platform_, one, fake_llm, mode):
    service = chat_client(platform_, one)
    user = f"chatter-{mode}"
    conversation_id = ""
    answers = []
    for turn, query in enumerate(["Hello there", "What did I just say?", "And before that?"]):
        if mode == "blocking":
            response = service.chat(query, user=user, conversation_id=conversation_id, inputs={"name": "Ada"})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["event"] == "message" and body["mode"] == "chat"
            assert body["id"] == body["message_id"]
            usage = body["metadata"]["usage"]
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
            assert isinstance(usage["total_price"], str) and usage["currency"] == "USD"
            answers.append(body["answer"])
            conversation_id = body["conversation_id"]
        else:
            events = service.chat_stream(query, user=user, conversation_id=conversation_id, inputs={"name": "Ada"})
            names = [e["event"] for e in events]
            assert names[-1] == "message_end" and names.count("message") >= 2
            answers.append("".join(e["answer"] for e in events if e["event"] == "message"))
            conversation_id = events[-1]["conversation_id"]
            assert events[-1]["metadata"]["usage"]["total_tokens"] > 0
        calls = answer_calls(fake_llm)
        sent = calls[-1]["messages"]
        assert sent[0] == {"role": "system", "content": "You help Ada."}
        assert sent[-1] == {"role": "user", "content": query}
        assert len(sent) == 2 + 2 * turn  # system + earlier turns (user, assistant) + this query
        assert calls[-1]["key_sha256"] == key_sha256(one.keys["openai_default"])
    assert answers[0] == "Echo: Hello there"
    history = service.http.get("/v1/messages", params={"conversation_id": conversation_id, "user": user}).json()
    assert [m["query"] for m in history["data"]] == ["Hello there", "What did I just say?", "And before that?"]
    assert [m["answer"] for m in history["data"]] == answers
    conversations = service.http.get("/v1/conversations", params={"user": user}).json()["data"]
    assert conversations[0]["id"] == conversation_id
    deadline = time.monotonic() + 10
    while not conversations[0]["name"] and time.monotonic() < deadline:
        time.sleep(0.2)
        conversations = service.http.get("/v1/conversations", params={"user": user}).json()["data"]
    assert conversations[0]["name"]  # named by the credential that served it
    naming = [c for c in chat_calls(fake_llm) if "short title" in c["messages"][-1]["content"]]
    assert [c["key_sha256"] for c in naming] == [key_sha256(one.keys["openai_default"])]


def test_overrides_apply_per_message_unless_remembered(platform_, one, fake_llm):
    service = chat_client(platform_, one)
    other = str(one.credentials["openai_other"].id)
    first = service.chat("first", user="payer", credential_overrides={"openai": other}).json()
    conversation_id = first["conversation_id"]
    service.chat("second", user="payer", conversation_id=conversation_id)
    keys = [c["key_sha256"] for c in answer_calls(fake_llm)]
    assert keys == [key_sha256(one.keys["openai_other"]), key_sha256(one.keys["openai_default"])]
    fake_llm.reset()
    first = service.chat("first", user="payer", credential_overrides={"openai": other},
                         remember_credential_overrides=True).json()
    second = service.chat("second", user="payer", conversation_id=first["conversation_id"]).json()
    assert second["metadata"]["credentials"][0]["source"] == "override"
    keys = {c["key_sha256"] for c in answer_calls(fake_llm)}
    assert keys == {key_sha256(one.keys["openai_other"])}


def test_end_users_see_only_their_own_conversations(platform_, one):
    service = chat_client(platform_, one)
    mine = service.chat("private", user="alice").json()["conversation_id"]
    for method, path, kwargs in (
        ("get", "/v1/messages", {"params": {"conversation_id": mine, "user": "mallory"}}),
        ("delete", f"/v1/conversations/{mine}", {"json": {"user": "mallory"}}),
        ("post", f"/v1/conversations/{mine}/name", {"json": {"user": "mallory", "name": "x"}}),
    ):
        response = service.http.request(method.upper(), path, **kwargs)
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    continued = service.chat("hijack", user="mallory", conversation_id=mine)
    assert continued.status_code == 404
    assert service.http.get("/v1/conversations", params={"user": "mallory"}).json()["data"] == []
    renamed = service.http.post(f"/v1/conversations/{mine}/name", json={"user": "alice", "name": "Mine"})
    assert renamed.json()["name"] == "Mine"
    assert service.http.request("DELETE", f"/v1/conversations/{mine}", json={"user": "alice"}).status_code == 204
    assert service.http.get("/v1/messages", params={"conversation_id": mine, "user": "alice"}).status_code == 404


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"query": "", "user": "u"}, 400, "invalid_param"),
    ({"query": "x" * 40_000, "user": "u"}, 400, "invalid_param"),
    ({"query": "hi"}, 400, "invalid_param"),
    ({"query": "hi", "user": "u", "conversation_id": "not-a-uuid"}, 400, "invalid_param"),
    ({"query": "hi", "user": "u", "conversation_id": "6f1f0a4e-8c7e-4a59-9d59-0a0ea0a0a0a0"}, 404, "not_found"),
    ({"query": "hi", "user": "u", "callback_url": "ftp://example.com/hook"}, 400, "invalid_callback_url"),
])
def test_bad_chat_requests_store_nothing(platform_, one, fake_llm, django_db_blocker, body, status, code):
    from workflows.models import Conversation, Message

    with django_db_blocker.unblock(), tenant_context(one.tenant):
        before = (Conversation.objects.count(), Message.objects.count())
    response = chat_client(platform_, one).http.post("/v1/chat-messages", json=body)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        assert (Conversation.objects.count(), Message.objects.count()) == before
    assert chat_calls(fake_llm) == []


def test_chat_routes_refuse_other_app_modes(platform_, one):
    response = chat_client(platform_, one, "summarizer").chat("hi")
    assert (response.status_code, response.json()["code"]) == (400, "not_chat_app")
    response = chat_client(platform_, one, "chat").http.post(
        "/v1/completion-messages", json={"inputs": {"query": "x"}, "user": "u"})
    assert (response.status_code, response.json()["code"]) == (400, "app_unavailable")


def test_stop_during_a_streamed_chat(platform_, one, fake_llm, django_db_blocker):
    import threading

    from workflows.models import Message

    fake_llm.add_fault(key_sha256=key_sha256(one.keys["openai_default"]), latency_ms=2000, times=1)
    service = chat_client(platform_, one)
    user = f"stopper-{time.monotonic_ns()}"
    events: list = []
    streaming = threading.Thread(target=lambda: events.extend(
        service.chat_stream("take your time " * 50, user=user, auto_generate_name=False)))
    streaming.start()
    task_id = None
    deadline = time.monotonic() + 10
    while task_id is None and time.monotonic() < deadline:
        with django_db_blocker.unblock(), tenant_context(one.tenant):
            message = Message.objects.filter(end_user=user).select_related("run").first()
            task_id = str(message.run.task_id) if message else None
        time.sleep(0.05)
    stop = service.http.post(f"/v1/chat-messages/{task_id}/stop", json={"user": user})
    assert stop.json() == {"result": "success"}
    streaming.join(timeout=30)
    assert events and events[-1]["event"] == "message_end"
    with django_db_blocker.unblock(), tenant_context(one.tenant):
        message = Message.objects.get(end_user=user)
        assert message.status == "stopped"
        assert len(message.answer) < len("Echo: " + "take your time " * 50)


def test_completion_blocking_and_streaming(platform_, one, fake_llm):
    service = chat_client(platform_, one, "completion")
    blocking = service.http.post("/v1/completion-messages",
                                 json={"inputs": {"query": "good morning"}, "user": "u", "response_mode": "blocking"})
    assert blocking.status_code == 200, blocking.text
    body = blocking.json()
    assert body["mode"] == "completion" and body["answer"] == "Echo: Translate to French: good morning"
    assert "conversation_id" not in body or body["conversation_id"] is None
    from httpx_sse import connect_sse

    with connect_sse(service.http, "POST", "/v1/completion-messages",
                     json={"inputs": {"query": "good night"}, "user": "u", "response_mode": "streaming"}) as source:
        events = [__import__("json").loads(s.data) for s in source.iter_sse() if s.data]
    assert events[-1]["event"] == "message_end"
    assert "".join(e["answer"] for e in events if e["event"] == "message") == "Echo: Translate to French: good night"
    assert {c["key_sha256"] for c in chat_calls(fake_llm)} == {key_sha256(one.keys["anthropic_default"])}
