"""Chat and completion messages: submission, conversations and their names."""

from __future__ import annotations

import uuid

from django.db import transaction

from api.errors import ApiError, NotFound
from credentials.providers.base import ChatMessage, ChatParams
from workflows.chat import QUERY_MAX_LENGTH
from workflows.errors import InvalidInput
from workflows.models import App, Conversation, Message, WorkflowRun
from workflows.services import workflow_run_submit

DEFAULT_CONVERSATION_NAME = "New conversation"
NAME_MAX = 255


class ConversationNotFound(NotFound):
    code = "not_found"
    message = "Conversation Not Exists."


class NotChatApp(ApiError):
    status = 400
    code = "not_chat_app"
    message = "Please check if your app mode matches the right API route."


def conversation_get(*, app: App, conversation_id, user: str) -> Conversation:
    """The end user's conversation; another user's or app's is the same 404 as a missing one."""
    try:
        key = uuid.UUID(str(conversation_id))
    except (ValueError, TypeError, AttributeError):
        raise InvalidInput("conversation_id must be a valid UUID") from None
    conversation = Conversation.objects.filter(pk=key, app=app, end_user=user).first()
    if conversation is None:
        raise ConversationNotFound()
    return conversation


def _query_clean(query: object) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("query is required.")
    if len(query) > QUERY_MAX_LENGTH:
        raise InvalidInput(f"query is longer than {QUERY_MAX_LENGTH} characters.")
    return query


def _remembered(overrides: object) -> dict:
    """Only stored-credential ids are remembered; one-off keys never are."""
    if not isinstance(overrides, dict):
        return {}
    kept = {}
    for provider, value in overrides.items():
        if isinstance(value, str):
            kept[provider] = value
        elif isinstance(value, dict) and set(value) == {"credential_id"}:
            kept[provider] = value["credential_id"]
    return kept


@transaction.atomic
def chat_message_submit(
    *, app: App, token, query: object, inputs: object, user: str, response_mode: str,
    conversation_id: str | None = None, auto_generate_name: bool = True,
    credential_overrides: object = None, remember_overrides: bool = False,
    callback_url: str = "", idempotency_key: str = "",
) -> Message:
    """A chat turn: continue or start the end user's conversation and queue the answer."""
    query = _query_clean(query)
    if conversation_id:
        conversation = conversation_get(app=app, conversation_id=conversation_id, user=user)
        run_inputs = dict(conversation.inputs)  # later turns reuse the first turn's inputs
        if credential_overrides in (None, {}) and conversation.remembered_overrides:
            credential_overrides = dict(conversation.remembered_overrides)
    else:
        if inputs is not None and not isinstance(inputs, dict):
            raise InvalidInput("inputs must be an object.")
        run_inputs = dict(inputs or {})
        conversation = Conversation(
            app=app, end_user=user, inputs=run_inputs,
            name="" if auto_generate_name else DEFAULT_CONVERSATION_NAME,
            remembered_overrides=_remembered(credential_overrides) if remember_overrides else {},
        )
    created: dict = {}

    def create_message(run: WorkflowRun) -> None:
        conversation.inputs = {k: v for k, v in run.inputs.items() if k != "query"}
        conversation.save(update_fields=["inputs", "updated_at"])
        created["message"] = Message.objects.create(
            app=app, conversation=conversation, run=run, end_user=user, query=query,
            inputs=conversation.inputs,
        )

    submission = workflow_run_submit(
        app=app, token=token, inputs={**run_inputs, "query": query}, user=user,
        response_mode=response_mode, credential_overrides=credential_overrides,
        idempotency_key=idempotency_key, expected_mode=App.Mode.CHAT,
        conversation=conversation, callback_url=callback_url, on_created=create_message,
    )
    if not submission.created:
        return Message.objects.select_related("run").get(run=submission.run)
    return created["message"]


@transaction.atomic
def completion_message_submit(
    *, app: App, token, inputs: object, user: str, response_mode: str,
    credential_overrides: object = None, callback_url: str = "", idempotency_key: str = "",
) -> Message:
    """A completion: one prompt over the inputs."""
    created: dict = {}

    def create_message(run: WorkflowRun) -> None:
        created["message"] = Message.objects.create(
            app=app, run=run, end_user=user, query=str(run.inputs.get("query", "")), inputs=run.inputs,
        )

    submission = workflow_run_submit(
        app=app, token=token, inputs=inputs, user=user, response_mode=response_mode,
        credential_overrides=credential_overrides, idempotency_key=idempotency_key,
        expected_mode=App.Mode.COMPLETION, callback_url=callback_url, on_created=create_message,
    )
    if not submission.created:
        return Message.objects.select_related("run").get(run=submission.run)
    return created["message"]


@transaction.atomic
def conversation_delete(*, conversation: Conversation) -> None:
    conversation.delete()


def conversation_rename(*, conversation: Conversation, name: str) -> Conversation:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("name is required unless auto_generate is true.")
    if len(name) > NAME_MAX:
        raise InvalidInput(f"name is longer than {NAME_MAX} characters.")
    conversation.name = name
    conversation.save(update_fields=["name", "updated_at"])
    return conversation


NAMING_PROMPT = (
    "Write a short title (at most six words, no quotes) for a conversation that starts with "
    "this message:\n\n{query}"
)


def conversation_name_messages(query: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=NAMING_PROMPT.format(query=query[:2000]))]


def conversation_name_clean(text: str, *, fallback: str) -> str:
    name = " ".join((text or "").replace('"', "").split())[:80]
    return name or fallback[:80] or DEFAULT_CONVERSATION_NAME


NAMING_PARAMS = ChatParams(max_tokens=24, temperature=0.2)


class NamingUnavailable(ApiError):
    status = 400
    code = "credential_unavailable"


def conversation_name_generate(*, conversation: Conversation, run: WorkflowRun | None = None) -> Conversation:
    """Name the conversation with an LLM call paid by the credential that served it.

    The call is recorded on the run (a node execution), so it shows up in usage like any
    other step. Never falls back to another credential.
    """
    import time

    from django.db.models import F
    from django.utils import timezone

    from budgets.accounting import budget_spend
    from credentials.providers.base import ProviderError
    from credentials.resolution import CredentialUnavailable, credential_resolve
    from workflows.llm_calls import llm_call
    from workflows.models import NodeExecution
    from workflows.pricing import cost_estimate

    if run is None:
        last = conversation.messages.select_related("run").order_by("-created_at").first()
        if last is None:
            raise InvalidInput("The conversation has no message to name it after.")
        run = last.run
    first = conversation.messages.order_by("created_at").first()
    query = first.query if first else ""
    llm = next((n for n in run.graph.get("nodes", []) if n.get("type") == "llm"), None)
    planned = run.credential_plan.get(llm["provider"]) if llm else None
    if planned is None:
        raise NamingUnavailable("No credential served this conversation.")
    try:
        credential = credential_resolve(provider=llm["provider"], planned=planned, user=conversation.end_user)
    except CredentialUnavailable as exc:
        raise NamingUnavailable(
            f"The credential that served this conversation cannot be used: {exc.message}"
        ) from None
    started = time.monotonic()
    index = NodeExecution.objects.filter(run=run).count() + 1
    try:
        result = llm_call(provider_id=llm["provider"], credential=credential,
                          fingerprint=planned["fingerprint"], model=llm["model"],
                          messages=conversation_name_messages(query), params=NAMING_PARAMS)
        text, usage, error = result.text, result.usage, ""
    except ProviderError as exc:
        text, usage, error = "", None, exc.message
    prompt = usage.prompt_tokens if usage else 0
    completion = usage.completion_tokens if usage else 0
    cost = cost_estimate(provider=llm["provider"], model=llm["model"],
                         prompt_tokens=prompt, completion_tokens=completion)
    execution = NodeExecution.objects.create(
        run=run, node_id=f"conversation_name_{uuid.uuid4().hex[:8]}", node_type="llm",
        title="Conversation name", index=index,
        status=NodeExecution.Status.FAILED if error else NodeExecution.Status.SUCCEEDED,
        outputs={"text": text}, error=error, elapsed_time=time.monotonic() - started,
        provider=llm["provider"], model=llm["model"],
        credential_id=planned["credential_id"] if planned["source"] != "inline" else None,
        credential_source=planned["source"], credential_fingerprint=planned["fingerprint"],
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
        total_price=cost.total_price, finished_at=timezone.now(),
    )
    budget_spend(run=run, execution=execution)
    WorkflowRun.objects.filter(pk=run.pk).update(
        prompt_tokens=F("prompt_tokens") + prompt, completion_tokens=F("completion_tokens") + completion,
        total_tokens=F("total_tokens") + prompt + completion, total_price=F("total_price") + cost.total_price,
    )
    conversation.name = conversation_name_clean(text, fallback=query)
    conversation.save(update_fields=["name", "updated_at"])
    return conversation
