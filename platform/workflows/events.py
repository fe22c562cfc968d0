"""What a run tells its listeners, by app mode: workflow events, or chat/completion
message events (Dify's shapes), all through the run's Redis stream."""

from __future__ import annotations

from django.db import connection

from runevents import streams
from workflows import presenters
from workflows.models import App, Message, NodeExecution, WorkflowRun


class WorkflowEvents:
    """Only a streaming run's client hears the events along the way; a blocking or async
    run's listeners (the waiting request, webhooks) need only the final one, so nothing
    else is published for them."""

    def __init__(self, run: WorkflowRun):
        self.run = run
        self.schema = connection.schema_name
        self.live = run.response_mode == WorkflowRun.ResponseMode.STREAMING
        self.published = 0

    def publish(self, payload: dict, *, final: bool = False) -> None:
        # The final event carries the run's provider time for the waiting request's
        # X-Keyflow-Platform-Time-Ms (so it need not read the run again).
        private = {"provider_time": self.run.provider_time} if final else None
        streams.publish(self.schema, self.run.pk, payload, first=not self.published, final=final,
                        private=private)
        self.published += 1

    def started(self) -> None:
        if self.live:
            self.publish(presenters.workflow_started(self.run))

    def node_started(self, execution: NodeExecution) -> None:
        if self.live:
            self.publish(presenters.node_started(self.run, execution))

    def node_finished(self, execution: NodeExecution) -> None:
        if self.live:
            self.publish(presenters.node_finished(self.run, execution))

    def delta(self, node_id: str, text: str) -> None:
        self.publish(presenters.text_chunk(self.run, node_id, text))

    def finished(self) -> dict:
        """Publish the final event; return the body a webhook receives."""
        self.publish(presenters.workflow_finished(self.run), final=True)
        return presenters.run_blocking_body(self.run)


class MessageEvents(WorkflowEvents):
    """Chat and completion runs: `message` chunks, then `message_end` (or `error`)."""

    def __init__(self, run: WorkflowRun):
        super().__init__(run)
        self.message = Message.objects.select_related("run").get(run=run)
        self.answer: list[str] = []

    def started(self) -> None:
        Message.objects.filter(pk=self.message.pk).update(status="running")

    def node_started(self, execution: NodeExecution) -> None:
        pass

    def node_finished(self, execution: NodeExecution) -> None:
        if execution.node_type == "llm" and execution.status == NodeExecution.Status.SUCCEEDED:
            self.answer = [execution.outputs.get("text", "")]
            self._record_llm(execution)

    def delta(self, node_id: str, text: str) -> None:
        self.answer.append(text)
        self.publish(presenters.message_chunk(self.message, text))

    def _record_llm(self, execution: NodeExecution) -> None:
        message = self.message
        message.provider, message.model = execution.provider, execution.model
        message.credential_id = execution.credential_id
        message.credential_source = execution.credential_source
        message.credential_fingerprint = execution.credential_fingerprint
        message.prompt_tokens = execution.prompt_tokens
        message.completion_tokens = execution.completion_tokens
        message.total_tokens = execution.total_tokens
        message.total_price = execution.total_price

    def finished(self) -> dict:
        run, message = self.run, self.message
        message.run = run
        message.answer = (run.outputs or {}).get("answer", "".join(self.answer))
        message.status = run.status
        message.error = run.error
        message.latency = run.elapsed_time
        message.save()
        mode = run.app.mode if run.app_id else App.Mode.CHAT
        if run.status == WorkflowRun.Status.FAILED:
            self.publish(presenters.message_error(message, code=run.error_code or "completion_request_error",
                                                  text=run.error), final=True)
        else:
            self.publish(presenters.message_end(message), final=True)
        if message.conversation_id:
            message.conversation.save(update_fields=["updated_at"])
        return presenters.message_blocking_body(message, mode)


def events_for(run: WorkflowRun) -> WorkflowEvents:
    if run.app.mode == App.Mode.WORKFLOW:
        return WorkflowEvents(run)
    return MessageEvents(run)


def final_payload(run: WorkflowRun) -> dict:
    """The run's final event, built from the database alone (for when Redis is unreachable)."""
    if run.app.mode == App.Mode.WORKFLOW:
        return presenters.workflow_finished(run)
    message = Message.objects.select_related("run").get(run=run)
    if run.status == WorkflowRun.Status.FAILED:
        return presenters.message_error(message, code=run.error_code or "completion_request_error", text=run.error)
    return presenters.message_end(message)
