"""Dify-shaped bodies and events for runs (field for field with Dify's Service API)."""

from __future__ import annotations

import json
from decimal import Decimal

from workflows.models import NodeExecution, WorkflowRun
from workflows.pricing import CURRENCY


def timestamp(value) -> int | None:
    return int(value.timestamp()) if value else None


def money(value: Decimal | None) -> str:
    return format((value or Decimal("0")).quantize(Decimal("0.0000001")), "f")


def run_credentials(run: WorkflowRun) -> list[dict]:
    """Who paid: per provider, the kind of credential and its id (never a secret)."""
    return [
        {"provider": provider, "source": planned["source"],
         "credential_id": planned["credential_id"] if planned["source"] != "inline" else None,
         "fingerprint": planned["fingerprint"][:16]}
        for provider, planned in sorted(run.credential_plan.items())
    ]


def run_data(run: WorkflowRun) -> dict:
    """The `data` object of a blocking response and of workflow_finished."""
    return {
        "id": str(run.id),
        "workflow_id": str(run.app_id),
        "status": run.status,
        "outputs": run.outputs or {},
        "error": run.error or None,
        "elapsed_time": round(run.elapsed_time, 6),
        "total_tokens": run.total_tokens,
        "total_steps": run.total_steps,
        "created_at": timestamp(run.created_at),
        "finished_at": timestamp(run.finished_at),
        "metadata": {
            "credentials": run_credentials(run),
            "usage": {
                "prompt_tokens": run.prompt_tokens,
                "completion_tokens": run.completion_tokens,
                "total_tokens": run.total_tokens,
                "total_price": money(run.total_price),
                "currency": run.currency or CURRENCY,
                "latency": round(run.elapsed_time, 6),
            },
        },
    }


def run_blocking_body(run: WorkflowRun) -> dict:
    return {"workflow_run_id": str(run.id), "task_id": str(run.task_id), "data": run_data(run)}


def run_blocking_body_from_event(finished: dict) -> dict:
    """The blocking body of a run, from its workflow_finished event (the same `data`, less
    the fields only the event has)."""
    data = {k: v for k, v in finished["data"].items() if k not in FINISHED_EVENT_ONLY}
    return {"workflow_run_id": finished["workflow_run_id"], "task_id": finished["task_id"], "data": data}


def run_detail_body(run: WorkflowRun) -> dict:
    """GET /v1/workflows/run/{id}."""
    return {
        "id": str(run.id),
        "workflow_id": str(run.app_id),
        "status": run.status,
        # Dify sends the detail's inputs as a JSON-encoded string.
        "inputs": json.dumps(run.inputs),
        "outputs": run.outputs or {},
        "error": run.error or None,
        "total_steps": run.total_steps,
        "total_tokens": run.total_tokens,
        "created_at": timestamp(run.created_at),
        "finished_at": timestamp(run.finished_at),
        "elapsed_time": round(run.elapsed_time, 6),
        "metadata": {"credentials": run_credentials(run)},
    }


def event(run: WorkflowRun, name: str, data: dict) -> dict:
    return {"event": name, "task_id": str(run.task_id), "workflow_run_id": str(run.id), "data": data}


def workflow_started(run: WorkflowRun) -> dict:
    return event(run, "workflow_started", {
        "id": str(run.id), "workflow_id": str(run.app_id), "sequence_number": 1,
        "inputs": run.inputs, "created_at": timestamp(run.created_at),
    })


def node_data(execution: NodeExecution, *, finished: bool) -> dict:
    data = {
        "id": str(execution.id),
        "node_id": execution.node_id,
        "node_type": execution.node_type,
        "title": execution.title,
        "index": execution.index,
        "predecessor_node_id": execution.predecessor_node_id or None,
        "inputs": execution.inputs,
        "created_at": timestamp(execution.created_at),
        "extras": {},
        "parallel_id": None,
        "parallel_start_node_id": None,
        "parent_parallel_id": None,
        "parent_parallel_start_node_id": None,
        "iteration_id": None,
        "loop_id": None,
    }
    if finished:
        metadata = None
        if execution.node_type == "llm":
            metadata = {
                "total_tokens": execution.total_tokens,
                "total_price": money(execution.total_price),
                "currency": execution.currency,
                "provider": execution.provider,
                "model": execution.model,
                "credential_source": execution.credential_source,
                "credential_id": str(execution.credential_id) if execution.credential_id else None,
            }
        data.update(
            process_data=execution.process_data,
            outputs=execution.outputs,
            status=execution.status,
            error=execution.error or None,
            elapsed_time=round(execution.elapsed_time, 6),
            execution_metadata=metadata,
            finished_at=timestamp(execution.finished_at),
            files=[],
        )
    return data


def node_started(run: WorkflowRun, execution: NodeExecution) -> dict:
    return event(run, "node_started", node_data(execution, finished=False))


def node_finished(run: WorkflowRun, execution: NodeExecution) -> dict:
    return event(run, "node_finished", node_data(execution, finished=True))


def text_chunk(run: WorkflowRun, node_id: str, text: str) -> dict:
    return event(run, "text_chunk", {"text": text, "from_variable_selector": [node_id, "text"]})


FINISHED_EVENT_ONLY = ("created_by", "exceptions_count", "files")


def workflow_finished(run: WorkflowRun) -> dict:
    data = run_data(run)
    data.update(created_by={"id": run.end_user, "user": run.end_user}, exceptions_count=0, files=[])
    return event(run, "workflow_finished", data)


# --- Chat and completion messages ------------------------------------------------------------


def message_usage(message) -> dict:
    """Dify's metadata.usage for a message: tokens, unit prices, prices, latency."""
    from workflows.pricing import PRICE_UNIT, cost_estimate

    cost = cost_estimate(provider=message.provider, model=message.model,
                         prompt_tokens=message.prompt_tokens, completion_tokens=message.completion_tokens)
    return {
        "prompt_tokens": message.prompt_tokens,
        "prompt_unit_price": format(cost.prompt_unit_price, "f"),
        "prompt_price_unit": format(PRICE_UNIT, "f"),
        "prompt_price": money(cost.prompt_price),
        "completion_tokens": message.completion_tokens,
        "completion_unit_price": format(cost.completion_unit_price, "f"),
        "completion_price_unit": format(PRICE_UNIT, "f"),
        "completion_price": money(cost.completion_price),
        "total_tokens": message.total_tokens,
        "total_price": money(message.total_price),
        "currency": message.currency or CURRENCY,
        "latency": round(message.latency, 6),
    }


def message_metadata(message) -> dict:
    return {
        "usage": message_usage(message),
        "retriever_resources": [],
        "credentials": run_credentials(message.run),
    }


def _message_ids(message) -> dict:
    ids = {"task_id": str(message.run.task_id), "id": str(message.id), "message_id": str(message.id)}
    if message.conversation_id:
        ids["conversation_id"] = str(message.conversation_id)
    return ids


def message_blocking_body(message, mode: str) -> dict:
    body = {"event": "message", **_message_ids(message), "mode": mode, "answer": message.answer,
            "metadata": message_metadata(message), "created_at": timestamp(message.created_at)}
    if "conversation_id" not in body and mode == "chat":
        body["conversation_id"] = None
    return body


def message_chunk(message, text: str) -> dict:
    return {"event": "message", **_message_ids(message), "answer": text,
            "created_at": timestamp(message.created_at)}


def message_end(message) -> dict:
    return {"event": "message_end", **_message_ids(message), "metadata": message_metadata(message)}


def message_error(message, *, code: str, text: str, status: int = 400) -> dict:
    payload = {"event": "error", **_message_ids(message), "status": status, "code": code,
               "message": text, "created_at": timestamp(message.created_at)}
    payload.pop("id")
    return payload


def message_history_item(message) -> dict:
    """GET /v1/messages item."""
    return {
        "id": str(message.id),
        "conversation_id": str(message.conversation_id),
        "parent_message_id": None,
        "inputs": message.inputs,
        "query": message.query,
        "answer": message.answer,
        "status": "normal" if message.status != "failed" else "error",
        "error": message.error or None,
        "message_files": [],
        "feedback": None,
        "retriever_resources": [],
        "agent_thoughts": [],
        "created_at": timestamp(message.created_at),
        "metadata": {"credentials": run_credentials(message.run)},
    }


def conversation_item(conversation) -> dict:
    return {
        "id": str(conversation.id),
        "name": conversation.name,
        "inputs": conversation.inputs,
        "status": "normal",
        "introduction": "",
        "created_at": timestamp(conversation.created_at),
        "updated_at": timestamp(conversation.updated_at),
    }
