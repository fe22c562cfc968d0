"""A Dify client written for Dify's own Service API (dify-client-python, strict pydantic
models) works against Keyflow by changing only the base URL and key."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

dify_client = pytest.importorskip("dify_client")
from dify_client import Client, models  # noqa: E402


@pytest.fixture
def dify(platform_, workspaces):
    return Client(api_key=workspaces["eone"].app_keys["summarizer"], api_base=f"{platform_.base_url}/v1")


def test_blocking_workflow_run_parses_as_dify_response(dify):
    request = models.WorkflowsRunRequest(
        inputs={"text": "compatible"}, response_mode=models.ResponseMode.BLOCKING, user="dify-user"
    )
    response = dify.run_workflows(request)
    assert isinstance(response, models.WorkflowsRunResponse)
    assert response.data.status == "succeeded"
    assert response.data.outputs == {"summary": "Echo: Summarize this text: compatible"}
    assert response.workflow_run_id == response.data.id


def test_streaming_workflow_run_parses_every_event(dify):
    request = models.WorkflowsRunRequest(
        inputs={"text": "compatible stream"}, response_mode=models.ResponseMode.STREAMING, user="dify-user"
    )
    events = list(dify.run_workflows(request))
    names = [event.event for event in events]
    assert names[0] == "workflow_started" and names[-1] == "workflow_finished"
    assert "text_chunk" in names and "node_finished" in names
    # The client's union of data models may leave `data` as a plain dict; either way it parsed.
    finished = events[-1].data
    status = finished["status"] if isinstance(finished, dict) else finished.status
    assert status == "succeeded"


def test_errors_map_to_dify_exceptions(platform_, workspaces):
    from dify_client import errors

    bad = Client(api_key="app-not-a-key", api_base=f"{platform_.base_url}/v1")
    request = models.WorkflowsRunRequest(inputs={"text": "x"}, response_mode=models.ResponseMode.BLOCKING, user="u")
    with pytest.raises(errors.DifyAPIError) as info:
        bad.run_workflows(request)
    assert info.value.status == 401
    missing_input = models.WorkflowsRunRequest(inputs={}, response_mode=models.ResponseMode.BLOCKING, user="u")
    good = Client(api_key=workspaces["eone"].app_keys["summarizer"], api_base=f"{platform_.base_url}/v1")
    with pytest.raises(errors.DifyAPIError) as info:
        good.run_workflows(missing_input)
    assert info.value.status == 400


def test_stop_parses(dify):
    response = dify.stop_workflows("00000000-0000-0000-0000-000000000000", models.StopRequest(user="u"))
    assert response.result == "success"
