"""The /_fake/ control API, over HTTP and through FakeLLMClient."""

import httpx
import pytest

from fake_llm import FakeLLMClient


def test_health(fake_llm_client):
    assert fake_llm_client.health() == {"status": "ok", "calls": 0, "faults": 0}


def test_calls_is_a_json_list(openai_client, fake_llm):
    openai_client.models.list()

    response = httpx.get(fake_llm.url + "/_fake/calls", params={"provider": "openai"})

    assert response.status_code == 200
    assert [c["operation"] for c in response.json()] == ["models"]


def test_add_list_remove_and_clear_faults(fake_llm, fake_llm_client):
    first = fake_llm_client.add_fault(status=500, model="gpt-4o", times=3)
    second = fake_llm_client.add_fault(latency_ms=10)

    rules = fake_llm_client.faults()
    assert [r["id"] for r in rules] == [first, second]
    assert rules[0] | {"id": None} == {
        "id": None,
        "key_sha256": None,
        "model": "gpt-4o",
        "provider": None,
        "operation": None,
        "status": 500,
        "retry_after": None,
        "latency_ms": 0,
        "hang": False,
        "cut_after_chunks": None,
        "echo_key": False,
        "times": 3,
    }
    assert fake_llm.faults() == rules

    fake_llm_client.remove_fault(first)
    assert [r["id"] for r in fake_llm_client.faults()] == [second]
    assert fake_llm_client.clear_faults() == 1
    assert fake_llm_client.faults() == []


def test_reset_clears_calls_and_faults(openai_client, fake_llm_client):
    openai_client.models.list()
    fake_llm_client.add_fault(status=500, model="x")

    fake_llm_client.reset()

    assert fake_llm_client.calls() == []
    assert fake_llm_client.faults() == []


def test_faults_added_over_http_apply(openai_client, fake_llm):
    response = httpx.post(fake_llm.url + "/_fake/faults", json={"status": 503, "times": 1})
    assert response.status_code == 201
    rule_id = response.json()["id"]

    with pytest.raises(Exception, match="overloaded"):
        openai_client.models.list()
    assert fake_llm.calls()[0]["fault_id"] == rule_id
    assert httpx.delete(fake_llm.url + "/_fake/faults").json() == {"cleared": 0}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/_fake/faults", {"status": 42}, 400),
        ("POST", "/_fake/faults", ["not", "a", "rule"], 400),
        ("POST", "/_fake/faults", {"status": 500, "unknown": 1}, 400),
        ("GET", "/_fake/calls?since_seq=abc", None, 400),
        ("GET", "/_fake/calls?colour=red", None, 400),
        ("DELETE", "/_fake/faults/fault-999", None, 404),
        ("GET", "/_fake/nothing", None, 404),
        ("POST", "/_fake/calls", {}, 405),
        ("GET", "/_fake/reset", None, 405),
    ],
)
def test_bad_control_requests_get_clear_errors(fake_llm, method, path, body, status):
    response = httpx.request(method, fake_llm.url + path, json=body)

    assert response.status_code == status
    assert response.json()["error"]


def test_client_raises_on_a_refused_rule(fake_llm):
    with FakeLLMClient(fake_llm.url) as client, pytest.raises(httpx.HTTPStatusError):
        client.add_fault(status=200)


def test_control_calls_are_not_recorded(fake_llm_client):
    fake_llm_client.health()
    fake_llm_client.calls()

    assert fake_llm_client.calls() == []
