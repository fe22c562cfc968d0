"""The Service API for chat and completion apps and conversations, compatible with Dify's."""

from __future__ import annotations

import time

from adrf.views import APIView as AsyncAPIView
from django.conf import settings
from django.db.models import Q
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from api.auth import AppTokenAuthentication, IsAppClient
from api.errors import NotFound, error_body
from api.serializers import JsonAlwaysNegotiation
from api.tenancy import in_tenant, in_tenant_worker_thread
from workflows import presenters
from workflows import service_api_bodies as bodies
from workflows.backpressure import admission_passed, backlog_shed
from workflows.conversations import (
    NotChatApp,
    chat_message_submit,
    completion_message_submit,
    conversation_delete,
    conversation_get,
    conversation_name_generate,
    conversation_rename,
)
from workflows.errors import AppUnavailable, RunNotFound
from workflows.models import App, Conversation, Message, WorkflowRun
from workflows.selectors import workflow_run_get
from workflows.service_api import (
    REFUSED_RESPONSES,
    RESPONSE_MODES,
    RETRY_AFTER,
    StopInput,
    _ServiceApi,
    app_for_request,
    refuse_unqueued,
    relay_events,
    sse_response,
    wait_for_end,
    with_platform_time,
)
from workflows.services import workflow_run_request_stop


def chat_app(request) -> App:
    app = app_for_request(request)
    if app.mode != App.Mode.CHAT:
        raise NotChatApp()
    return app


def completion_app(request) -> App:
    app = app_for_request(request)
    if app.mode != App.Mode.COMPLETION:
        raise AppUnavailable()
    return app


class _MessageInput(serializers.Serializer):
    """Unknown fields are ignored, as Dify does."""

    inputs = serializers.DictField(required=False, default=dict, allow_null=True)
    response_mode = serializers.ChoiceField(choices=RESPONSE_MODES, required=False, allow_null=True,
                                            default="blocking")
    user = serializers.CharField(max_length=255)
    files = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True,
                                  default=list, max_length=0,
                                  help_text="File inputs are not supported yet: send none.")
    credential_overrides = serializers.JSONField(required=False, default=None)
    callback_url = serializers.CharField(required=False, allow_blank=True, default="", max_length=2048)


class ChatInput(_MessageInput):
    query = serializers.CharField(trim_whitespace=False, allow_blank=True)
    conversation_id = serializers.CharField(required=False, allow_blank=True, allow_null=True, default="")
    auto_generate_name = serializers.BooleanField(required=False, default=True)
    remember_credential_overrides = serializers.BooleanField(
        required=False, default=False,
        help_text="Keep this first message's stored-credential overrides for the whole conversation.",
    )


class CompletionInput(_MessageInput):
    query = serializers.CharField(required=False, allow_blank=True, default="",
                                  help_text="Legacy; the prompt reads inputs.query.")


class _MessageApi(AsyncAPIView):
    authentication_classes = [AppTokenAuthentication]
    permission_classes = [IsAppClient]
    content_negotiation_class = JsonAlwaysNegotiation
    input_class: type[serializers.Serializer]
    mode: str

    def submit(self, request, data: dict, mode: str, idempotency_key: str) -> Message:  # pragma: no cover
        raise NotImplementedError

    async def post(self, request):
        started = time.monotonic()
        tenant = request.tenant
        serializer = self.input_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        mode = data["response_mode"] or WorkflowRun.ResponseMode.BLOCKING
        idempotency_key = (request.headers.get("Idempotency-Key") or "")[:255]
        if not idempotency_key:  # a retry must still find its first message
            backlog_shed(schema=tenant.schema_name, response_mode=mode)

        def submit():
            message = self.submit(request, data, mode, idempotency_key)
            enqueued = getattr(message.run, "enqueued", True)
            message = Message.objects.select_related("run").get(pk=message.pk)
            message.run.enqueued = enqueued
            return message

        try:
            message = await in_tenant(tenant, submit)
        finally:
            admission_passed()
        await refuse_unqueued(tenant, message.run, mode)
        schema, run_id = tenant.schema_name, message.run_id
        if mode == WorkflowRun.ResponseMode.ASYNC:
            body = {"task_id": str(message.run.task_id), "message_id": str(message.id),
                    "conversation_id": str(message.conversation_id) if message.conversation_id else None,
                    "status": message.run.status}
            return with_platform_time(Response(body, status=202), message.run, started)
        if mode == WorkflowRun.ResponseMode.STREAMING:
            return sse_response(relay_events(schema, run_id, tenant))
        await wait_for_end(schema, run_id, settings.KEYFLOW_BLOCKING_TIMEOUT, tenant)
        message = await in_tenant(tenant, lambda: Message.objects.select_related("run", "app").get(pk=message.pk))
        run = message.run
        if run.status == WorkflowRun.Status.FAILED:
            body = error_body(400, run.error_code or "completion_request_error", run.error)
            return with_platform_time(Response(body, status=400), run, started)
        return with_platform_time(Response(presenters.message_blocking_body(message, self.mode)), run, started)

    def finalize_response(self, request, response, *args, **kwargs):
        if not isinstance(response, Response):
            return response
        return super().finalize_response(request, response, *args, **kwargs)


class ChatMessagesApi(_MessageApi):
    input_class = ChatInput
    mode = App.Mode.CHAT

    @extend_schema(
        operation_id="chat_messages", request=ChatInput,
        parameters=[RETRY_AFTER],
        responses={**bodies.sse_or(bodies.MessageBlockingBody, "blocking: the answer"),
                   202: OpenApiResponse(bodies.MessageQueuedBody, description="async: queued"),
                   **REFUSED_RESPONSES},
        summary="Send a chat message",
    )
    async def post(self, request):
        return await super().post(request)

    def submit(self, request, data, mode, idempotency_key):
        return chat_message_submit(
            app=chat_app(request), token=request.user.token, query=data["query"],
            inputs=data["inputs"], user=data["user"], response_mode=mode,
            conversation_id=data["conversation_id"] or None,
            auto_generate_name=data["auto_generate_name"],
            credential_overrides=data["credential_overrides"],
            remember_overrides=data["remember_credential_overrides"],
            callback_url=data["callback_url"], idempotency_key=idempotency_key,
        )


class CompletionMessagesApi(_MessageApi):
    input_class = CompletionInput
    mode = App.Mode.COMPLETION

    @extend_schema(
        operation_id="completion_messages", request=CompletionInput,
        parameters=[RETRY_AFTER],
        responses={**bodies.sse_or(bodies.MessageBlockingBody, "blocking: the answer"),
                   202: OpenApiResponse(bodies.MessageQueuedBody, description="async: queued"),
                   **REFUSED_RESPONSES},
        summary="Send a completion request",
    )
    async def post(self, request):
        return await super().post(request)

    def submit(self, request, data, mode, idempotency_key):
        return completion_message_submit(
            app=completion_app(request), token=request.user.token, inputs=data["inputs"] or {},
            user=data["user"], response_mode=mode, credential_overrides=data["credential_overrides"],
            callback_url=data["callback_url"], idempotency_key=idempotency_key,
        )


STOP_RESULT = inline_serializer("MessageStopResult", {"result": serializers.CharField()})


class _MessageStopApi(_ServiceApi):
    def app(self, request) -> App:  # pragma: no cover
        raise NotImplementedError

    def post(self, request, task_id):
        serializer = StopInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        app = self.app(request)
        try:
            run = workflow_run_get(app=app, task_id=task_id, user=serializer.validated_data["user"])
        except RunNotFound:
            return Response({"result": "success"})  # as Dify: the same answer for any task id
        workflow_run_request_stop(run=run)
        return Response({"result": "success"})


class ChatStopApi(_MessageStopApi):
    def app(self, request):
        return chat_app(request)

    @extend_schema(operation_id="chat_messages_stop", request=StopInput, responses=STOP_RESULT,
                   summary="Stop a chat answer")
    def post(self, request, task_id):
        return super().post(request, task_id)


class CompletionStopApi(_MessageStopApi):
    def app(self, request):
        return completion_app(request)

    @extend_schema(operation_id="completion_messages_stop", request=StopInput, responses=STOP_RESULT,
                   summary="Stop a completion")
    def post(self, request, task_id):
        return super().post(request, task_id)


class MessagesApi(_ServiceApi):
    class QuerySerializer(serializers.Serializer):
        conversation_id = serializers.CharField()
        user = serializers.CharField(max_length=255)
        first_id = serializers.CharField(required=False, allow_blank=True)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)

    @extend_schema(operation_id="messages_list", parameters=[QuerySerializer], responses=bodies.MessagesBody,
                   summary="Messages of a conversation, oldest first")
    def get(self, request):
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        conversation = conversation_get(app=chat_app(request), conversation_id=params["conversation_id"],
                                        user=params["user"])
        messages = Message.objects.filter(conversation=conversation).select_related("run")
        if params.get("first_id"):
            first = messages.filter(pk=_uuid_or_404(params["first_id"], "First Message Not Exists.")).first()
            if first is None:
                raise NotFound("First Message Not Exists.")
            messages = messages.filter(Q(created_at__lt=first.created_at)
                                       | Q(created_at=first.created_at, id__lt=first.id))
        limit = params["limit"]
        page = list(messages.order_by("-created_at", "-id")[: limit + 1])
        has_more = len(page) > limit
        page = list(reversed(page[:limit]))
        return Response({"limit": limit, "has_more": has_more,
                         "data": [presenters.message_history_item(m) for m in page]})


def _uuid_or_404(value: str, message: str):
    import uuid

    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError):
        raise NotFound(message) from None


SORTS = {"created_at": ("created_at", "id"), "-created_at": ("-created_at", "-id"),
         "updated_at": ("updated_at", "id"), "-updated_at": ("-updated_at", "-id")}


class ConversationsApi(_ServiceApi):
    class QuerySerializer(serializers.Serializer):
        user = serializers.CharField(max_length=255)
        last_id = serializers.CharField(required=False, allow_blank=True)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)
        sort_by = serializers.ChoiceField(choices=list(SORTS), required=False, default="-updated_at")

    @extend_schema(operation_id="conversations_list", parameters=[QuerySerializer],
                   responses=bodies.ConversationsBody, summary="The end user's conversations")
    def get(self, request):
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        app = chat_app(request)
        conversations = Conversation.objects.filter(app=app, end_user=params["user"])
        order = SORTS[params["sort_by"]]
        if params.get("last_id"):
            last = conversations.filter(pk=_uuid_or_404(params["last_id"], "Last Conversation Not Exists.")).first()
            if last is None:
                raise NotFound("Last Conversation Not Exists.")
            field = order[0].lstrip("-")
            value = getattr(last, field)
            if order[0].startswith("-"):
                conversations = conversations.filter(Q(**{f"{field}__lt": value}) | Q(**{field: value, "id__lt": last.id}))
            else:
                conversations = conversations.filter(Q(**{f"{field}__gt": value}) | Q(**{field: value, "id__gt": last.id}))
        limit = params["limit"]
        page = list(conversations.order_by(*order)[: limit + 1])
        return Response({"limit": limit, "has_more": len(page) > limit,
                         "data": [presenters.conversation_item(c) for c in page[:limit]]})


class ConversationDeleteApi(_ServiceApi):
    @extend_schema(operation_id="conversations_delete", request=StopInput, responses={204: None},
                   summary="Delete a conversation")
    def delete(self, request, conversation_id):
        serializer = StopInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        conversation = conversation_get(app=chat_app(request), conversation_id=conversation_id,
                                        user=serializer.validated_data["user"])
        conversation_delete(conversation=conversation)
        return Response(status=204)


class RenameInput(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=255)
    auto_generate = serializers.BooleanField(required=False, default=False)
    user = serializers.CharField(max_length=255)


class ConversationRenameApi(AsyncAPIView):
    authentication_classes = [AppTokenAuthentication]
    permission_classes = [IsAppClient]
    content_negotiation_class = JsonAlwaysNegotiation

    @extend_schema(operation_id="conversations_rename", request=RenameInput, responses=bodies.ConversationBody,
                   summary="Rename a conversation, or have it named by the credential that served it")
    async def post(self, request, conversation_id):
        serializer = RenameInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def rename():
            conversation = conversation_get(app=chat_app(request), conversation_id=conversation_id, user=data["user"])
            if data["auto_generate"]:
                return conversation_name_generate(conversation=conversation)
            return conversation_rename(conversation=conversation, name=data["name"])

        # Auto-naming waits on a provider: keep it off the thread every sync request shares.
        conversation = await in_tenant_worker_thread(request.tenant, rename)
        return Response(presenters.conversation_item(conversation))
