"""Executes a claimed run node by node in the tenant's schema, persisting each node and
publishing Dify-shaped events.

A run re-delivered after its worker died resumes: nodes that already succeeded are not
executed again (their stored outputs are reused), so no LLM step is paid for twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from budgets.accounting import budget_spend
from credentials.providers.base import (
    ChatMessage,
    ChatParams,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
)
from credentials.resolution import CredentialUnavailable, credential_resolve
from credentials.services import credential_touch
from runevents import streams
from workflows.commits import progress_commit
from workflows.events import events_for
from workflows.graph import (
    EndNode,
    GraphWalk,
    IfElseNode,
    LlmNode,
    StartNode,
    TemplateNode,
    evaluate_condition,
)
from workflows.llm_calls import CallStopped, StreamInterrupted, llm_call
from workflows.models import NodeExecution, WorkflowRun
from workflows.pricing import cost_estimate
from workflows.services import (
    graph_check,
    inline_credentials_destroy,
    workflow_run_claim,
)
from workflows.templating import TemplateRenderError, render

logger = logging.getLogger(__name__)


def heartbeat_seconds() -> float:
    """Workers report four times per stale threshold, so a live run is never taken over."""
    return max(1.0, settings.KEYFLOW_RUN_STALE_SECONDS / 4)


class NodeFailure(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class RunStopped(Exception):
    pass


def provider_failure(exc: ProviderError, *, provider: str, credential_id: str | None) -> NodeFailure:
    who = f"credential {credential_id}" if credential_id else "the one-off key"
    if isinstance(exc, ProviderAuthError):
        return NodeFailure(
            "credential_invalid",
            f"{provider} rejected {who} (HTTP {exc.status}): {exc.message}",
        )
    if isinstance(exc, ProviderRateLimited):
        return NodeFailure("rate_limit_error", f"{provider} kept rate-limiting {who}: {exc.message}")
    if isinstance(exc, ProviderBadRequest):
        return NodeFailure("completion_request_error", f"{provider} refused the request: {exc.message}")
    if isinstance(exc, ProviderTimeout):
        return NodeFailure("provider_timeout", f"{provider} did not answer in time: {exc.message}")
    if isinstance(exc, StreamInterrupted):
        return NodeFailure("completion_request_error", exc.message)
    return NodeFailure("completion_request_error", f"{provider} failed: {exc.message}")


class Heartbeat:
    """Reports the run as alive every few seconds from a side thread, so long provider
    calls are not mistaken for a dead worker."""

    def __init__(self, schema: str, run: WorkflowRun):
        # The schema name comes from the tenant record (validated when it was created).
        self.sql = f'UPDATE "{schema}"."workflows_workflowrun" SET heartbeat_at = now() WHERE id = %s AND claimed_by = %s'  # noqa: S608
        self.args = [run.pk, run.claimed_by]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{run.pk}")

    def _beat(self):
        try:
            while not self._stop.wait(heartbeat_seconds()):
                with connection.cursor() as cursor:
                    cursor.execute(self.sql, self.args)
        except Exception:  # the sweeper takes over if heartbeats stop
            logger.exception("Heartbeat of run %s failed", self.args[0])
        finally:
            connection.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def workflow_run_execute(*, run_id) -> None:
    """Claim and execute a run (the task's one service)."""
    close_old_connections()
    run = workflow_run_claim(run_id=run_id)
    if run is None:
        logger.info("Run %s needs nothing from this worker", run_id)
        return
    RunExecution(run).execute()


class RunExecution:
    def __init__(self, run: WorkflowRun):
        self.run = run
        self.schema = connection.schema_name
        self.graph = graph_check(run.graph)
        self.streaming = run.response_mode == WorkflowRun.ResponseMode.STREAMING
        self.started = time.monotonic()
        self.provider_seconds = 0.0
        self.variables: dict[str, dict] = {}
        self.index = 0
        self.last_node_id = ""
        self._stop_checked = 0.0
        self.events = events_for(run)
        self.history = conversation_history(run)
        # Node records are written in as few statements as possible: a node that takes no
        # time (start, template, if/else, end) is stored with the next write; an LLM node is
        # stored before its paid call and again after it, so it is never paid for twice.
        self.executions: dict[str, NodeExecution] = {}
        self.unsaved: list[NodeExecution] = []
        self.has_inline = any(p.get("source") == "inline" for p in (run.credential_plan or {}).values())

    def stop_requested(self) -> bool:
        now = time.monotonic()
        if now - self._stop_checked < 0.25:
            return False
        self._stop_checked = now
        return streams.stop_requested(self.schema, self.run.pk)

    # -- the run --

    def execute(self) -> None:
        try:
            with Heartbeat(self.schema, self.run):
                self._execute()
                self._name_conversation()
        except Exception as exc:  # never leave a run running on an unexpected error
            logger.exception("Run %s failed unexpectedly", self.run.pk)
            self.finish(WorkflowRun.Status.FAILED, code="internal_error",
                        error=f"Internal error ({type(exc).__name__}); the run was stopped.")
            raise
        finally:
            self.destroy_inline()

    def destroy_inline(self) -> None:
        if self.has_inline:
            inline_credentials_destroy(run_id=self.run.pk)
            self.has_inline = False

    def _name_conversation(self) -> None:
        """After a conversation's first answer, name it (when the client asked for that)."""
        if not self._naming_pending():
            return
        run = self.run
        conversation = run.conversation
        from workflows.conversations import conversation_name_generate

        try:
            conversation_name_generate(conversation=conversation, run=run)
        except Exception:  # naming is a courtesy: the answer is already delivered
            logger.exception("Naming conversation %s failed", conversation.pk)

    def _execute(self) -> None:
        walk = GraphWalk(self.graph)
        if self.run.attempts > 1:  # resumed: earlier attempts' records are reused
            self.executions = {e.node_id: e for e in NodeExecution.objects.filter(run=self.run)}
        finished = {
            node_id: execution for node_id, execution in self.executions.items()
            if execution.status == NodeExecution.Status.SUCCEEDED
        }
        self.index = len(finished)
        if not finished:
            self.events.started()
        try:
            while not walk.done():
                ready = walk.ready()
                if not ready:
                    raise NodeFailure("internal_error", "The workflow cannot make progress.")
                for node_id in ready:
                    walk.start(node_id)
                    done = finished.get(node_id)
                    if done is not None:
                        outputs = done.outputs or {}
                    else:
                        if self.run.stop_requested or self.stop_requested():
                            raise RunStopped()
                        outputs = self.run_node(self.graph.nodes[node_id])
                    self.variables[node_id] = outputs
                    self.last_node_id = node_id
                    node = self.graph.nodes[node_id]
                    walk.complete(node_id, branch=outputs.get("result") if isinstance(node, IfElseNode) else None)
        except RunStopped:
            self.finish(WorkflowRun.Status.STOPPED, code="stopped", error="Stopped by request.")
            return
        except NodeFailure as failure:
            self.finish(WorkflowRun.Status.FAILED, code=failure.code, error=failure.message)
            return
        outputs: dict = {}
        for end in self.graph.ends:
            if end.id in self.variables:
                outputs.update(self.variables[end.id])
        self.finish(WorkflowRun.Status.SUCCEEDED, outputs=outputs)

    def finish(self, status: str, *, outputs: dict | None = None, code: str = "", error: str = "") -> None:
        run = self.run
        executions = self.executions.values()
        prompt = sum(e.prompt_tokens for e in executions)
        completion = sum(e.completion_tokens for e in executions)
        now = timezone.now()
        started_at = run.started_at or now
        result = {
            "status": status, "outputs": outputs, "error": error, "error_code": code,
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "total_price": sum((e.total_price for e in executions), Decimal("0")),
            "total_steps": len(executions), "finished_at": now,
            "elapsed_time": (now - started_at).total_seconds(),
            "provider_time": run.provider_time + self.provider_seconds,
        }
        with transaction.atomic():  # the last nodes and the result: one commit
            self.save_pending()
            updated = WorkflowRun.objects.filter(pk=run.pk, status=WorkflowRun.Status.RUNNING).update(**result)
        if updated:
            for name, value in result.items():
                setattr(run, name, value)
        else:  # ended meanwhile by someone else (stop, sweeper): what they wrote stands
            run.refresh_from_db()
        if not self._naming_pending():
            # Destroyed before anyone hears the run ended: a client that gets its answer
            # can rely on the one-off key being gone.
            self.destroy_inline()
        if updated:
            run_ended(run, self.events)

    def _naming_pending(self) -> bool:
        """A new conversation still to be named by the credential that served it."""
        run = self.run
        return bool(
            run.conversation_id and run.status == WorkflowRun.Status.SUCCEEDED
            and not run.conversation.name
        )

    # -- nodes --

    def run_node(self, node) -> dict:
        self.index += 1
        earlier = self.executions.get(node.id)  # a record left by an earlier attempt
        execution = NodeExecution(
            id=earlier.id if earlier else uuid.uuid4(), run=self.run, node_id=node.id,
            node_type=node.type, title=node.title or node.id, index=self.index,
            predecessor_node_id=self.last_node_id, status=NodeExecution.Status.RUNNING,
            created_at=timezone.now(),
        )
        self.executions[node.id] = execution
        self.unsaved.append(execution)
        if isinstance(node, LlmNode):
            with progress_commit():  # made durable by the step's result
                self.save_pending()
        self.events.node_started(execution)
        started = time.monotonic()
        try:
            outputs = self._dispatch(node, execution)
        except (NodeFailure, RunStopped) as exc:
            execution.status = (
                NodeExecution.Status.STOPPED if isinstance(exc, RunStopped) else NodeExecution.Status.FAILED
            )
            execution.error = getattr(exc, "message", "Stopped by request.")
            self._close(execution, started)
            raise
        execution.status = NodeExecution.Status.SUCCEEDED
        execution.outputs = outputs
        self._close(execution, started)
        return outputs

    def _close(self, execution: NodeExecution, started: float) -> None:
        execution.elapsed_time = time.monotonic() - started
        execution.finished_at = timezone.now()
        if execution.node_type == LlmNode.type or execution.status != NodeExecution.Status.SUCCEEDED:
            if execution in self.unsaved:
                self.save_pending()
            else:
                execution.save(force_update=True)
        self.events.node_finished(execution)

    def save_pending(self) -> None:
        """Store the node records not stored yet (inserted, or over an earlier attempt's
        record of the same node), in the caller's transaction."""
        if not self.unsaved:
            return
        # One row per statement: for several rows Django inserts arrays through UNNEST, whose
        # client-side quoting of JSON arrays costs more CPU than the extra round trip saves.
        for execution in self.unsaved:
            NodeExecution.objects.bulk_create(
                [execution], update_conflicts=True, unique_fields=["run", "node_id"],
                update_fields=NODE_FIELDS,
            )
        self.unsaved = []

    def _render(self, node_id: str, template: str) -> str:
        try:
            return render(template, self.variables)
        except TemplateRenderError as exc:
            raise NodeFailure("invalid_param", f'node "{node_id}": {exc}') from None

    def _dispatch(self, node, execution: NodeExecution) -> dict:
        if isinstance(node, StartNode):
            execution.inputs = dict(self.run.inputs)
            return {v.name: self.run.inputs.get(v.name) for v in node.variables}
        if isinstance(node, TemplateNode):
            return {"output": self._render(node.id, node.template)}
        if isinstance(node, IfElseNode):
            result = evaluate_condition(node, self.variables)
            execution.process_data = {"conditions": [c.to_dict() for c in node.conditions],
                                      "logical_operator": node.logical_operator}
            return {"result": result}
        if isinstance(node, EndNode):
            outputs = {}
            for output in node.outputs:
                outputs[output.name] = self.variables.get(output.node_id, {}).get(output.var)
            execution.inputs = outputs
            return outputs
        if isinstance(node, LlmNode):
            return self._llm(node, execution)
        raise NodeFailure("internal_error", f'node "{node.id}": unsupported type {node.type}')

    def _llm(self, node: LlmNode, execution: NodeExecution) -> dict:
        planned = self.run.credential_plan.get(node.provider)
        if planned is None:
            raise NodeFailure("provider_not_initialize", f'node "{node.id}": no credential planned for {node.provider}.')
        credential_id = planned["credential_id"] if planned["source"] != "inline" else None
        execution.provider = node.provider
        execution.model = node.model
        execution.credential_id = credential_id
        execution.credential_source = planned["source"]
        execution.credential_fingerprint = planned["fingerprint"]
        messages = [ChatMessage(role=m.role, content=self._render(node.id, m.text)) for m in node.messages]
        if self.history:
            # A chat turn: earlier turns go right before the new question.
            messages = [*messages[:-1], *self.history, messages[-1]]
        execution.process_data = {
            "model_provider": node.provider, "model_name": node.model,
            "prompts": [{"role": m.role, "text": m.content} for m in messages],
        }
        try:
            credential = credential_resolve(provider=node.provider, planned=planned, user=self.run.end_user)
        except CredentialUnavailable as exc:
            raise NodeFailure("credential_unavailable", f'node "{node.id}": {exc.message}') from None
        parameters = dict(node.parameters)
        params = ChatParams(
            temperature=parameters.get("temperature"), max_tokens=parameters.get("max_tokens"),
            top_p=parameters.get("top_p"), stop=tuple(parameters["stop"]) if parameters.get("stop") else None,
            user=self.run.end_user,
        )

        def relay(delta: str) -> None:
            self.events.delta(node.id, delta)

        try:
            result = llm_call(
                provider_id=node.provider, credential=credential, fingerprint=planned["fingerprint"],
                model=node.model, messages=messages, params=params,
                on_delta=relay if self.streaming else None, should_stop=self.stop_requested,
            )
        except CallStopped:
            raise RunStopped() from None
        except ProviderError as exc:
            raise provider_failure(exc, provider=node.provider, credential_id=credential_id) from None
        finally:
            if credential_id:
                credential_touch(credential_id=credential_id, schema=self.schema)
        self.provider_seconds += result.provider_seconds
        execution.provider_attempts = result.attempts
        usage = result.usage
        cost = cost_estimate(provider=node.provider, model=node.model,
                             prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
        execution.prompt_tokens = usage.prompt_tokens
        execution.completion_tokens = usage.completion_tokens
        execution.total_tokens = usage.prompt_tokens + usage.completion_tokens
        execution.total_price = cost.total_price
        execution.process_data["usage"] = {
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": execution.total_tokens, "priced": cost.priced,
        }
        budget_spend(run=self.run, execution=execution)
        return {"text": result.text}


# Everything of a node record a later attempt may rewrite (not its identity).
NODE_FIELDS = [
    f.name for f in NodeExecution._meta.concrete_fields if f.name not in ("id", "run", "node_id")
]


def workflow_run_fail_lost(*, run_id, reason: str) -> int:
    """Fail a run whose worker was lost or that never started; publish its end."""
    now = timezone.now()
    updated = WorkflowRun.objects.filter(
        pk=run_id, status__in=[WorkflowRun.Status.QUEUED, WorkflowRun.Status.RUNNING]
    ).update(status=WorkflowRun.Status.FAILED, error=f"The run failed: {reason}.",
             error_code="run_lost", finished_at=now)
    if updated:
        run = WorkflowRun.objects.select_related("app").get(pk=run_id)
        run_ended(run, events_for(run))
        inline_credentials_destroy(run_id=run.pk)
    return updated


def run_ended(run: WorkflowRun, events) -> None:
    """Tell listeners the run ended and hand its final body to the webhook, if any."""
    body = events.finished()
    if run.callback_url:
        from webhooks.services import webhook_delivery_schedule

        webhook_delivery_schedule(run=run, body=body)


def conversation_history(run: WorkflowRun) -> list[ChatMessage]:
    """Earlier turns of the run's conversation, oldest first, as many as the app sends."""
    if not run.conversation_id:
        return []
    from workflows.models import Message

    limit = int((run.app.model_config or {}).get("history_messages", 10))
    if limit <= 0:
        return []
    earlier = list(
        Message.objects.filter(conversation_id=run.conversation_id, status=WorkflowRun.Status.SUCCEEDED)
        .exclude(run=run).order_by("-created_at")[:limit]
    )
    history: list[ChatMessage] = []
    for message in reversed(earlier):
        history += [ChatMessage(role="user", content=message.query),
                    ChatMessage(role="assistant", content=message.answer)]
    return history
