"""The Service API for workflow apps, compatible with Dify's (/v1, Bearer app-…)."""

from __future__ import annotations

import asyncio
import json
import time

from adrf.views import APIView as AsyncAPIView
from django.conf import settings
from django.db import connection
from django.http import StreamingHttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from redis.exceptions import RedisError
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.auth import AppTokenAuthentication, IsAppClient
from api.errors import ApiError
from api.pagination import PageLimitPagination
from api.schema import ERROR_COMPONENT
from api.serializers import JsonAlwaysNegotiation
from api.tenancy import TenantContextMixin, in_tenant
from runevents import streams
from workflows import presenters
from workflows import service_api_bodies as bodies
from workflows.backpressure import admission_passed, backlog_shed
from workflows.errors import AppDisabled, AppModeMismatch, RunNotFound
from workflows.events import final_payload
from workflows.models import App, WorkflowRun
from workflows.selectors import workflow_run_get, workflow_run_list
from workflows.services import (
    workflow_run_refuse_unqueued,
    workflow_run_request_stop,
    workflow_run_submit,
)

RESPONSE_MODES = [choice for choice, _ in WorkflowRun.ResponseMode.choices]

# What a run submission answers when it is refused before anything is stored.
REFUSED_RESPONSES = {429: OpenApiResponse(
    {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"},
    description="Refused at once, nothing stored: too many runs are waiting for a worker "
    "(`too_many_requests`), or a budget or rate limit of the request applies "
    "(`quota_exceeded`, `too_many_requests`). Retry-After gives the seconds to wait.",
)}
RETRY_AFTER = OpenApiParameter("Retry-After", int, OpenApiParameter.HEADER, response=[429],
                               description="Seconds to wait before trying again.")


def app_for_request(request, *, mode: str | None = None) -> App:
    """The app of the request's key, in the key's tenant (Dify: a deleted or disabled app
    is 403 `forbidden`; the wrong route for the app's mode is 400)."""
    app = App.objects.filter(pk=request.user.token.app_id).first()
    if app is None or app.deleted_at is not None:
        raise AppDisabled("The app no longer exists.")
    if not app.enabled:
        raise AppDisabled()
    if mode is not None and app.mode != mode:
        raise AppModeMismatch()
    return app


class _ServiceApi(TenantContextMixin, APIView):
    authentication_classes = [AppTokenAuthentication]
    permission_classes = [IsAppClient]
    content_negotiation_class = JsonAlwaysNegotiation


class WorkflowRunInput(serializers.Serializer):
    """Like Dify, unknown fields are ignored (clients send fields of newer versions)."""

    inputs = serializers.DictField(required=False, default=dict)
    response_mode = serializers.ChoiceField(
        choices=RESPONSE_MODES, required=False, allow_null=True, default="blocking"
    )
    user = serializers.CharField(max_length=255)
    files = serializers.ListField(
        child=serializers.DictField(), required=False, allow_null=True, default=list, max_length=0,
        help_text="File inputs are not supported yet: send none.",
    )
    credential_overrides = serializers.JSONField(
        required=False, default=None,
        help_text="Per provider: a stored credential id, or an object with a one-off key "
        "(e.g. {\"api_key\": \"…\"}) where the app key allows one-off keys.",
    )
    callback_url = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=2048,
        help_text="Where the final body is POSTed (signed) when the run ends.",
    )


PING = "event: ping\n\n"
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'), ensure_ascii=False)}\n\n"


async def relay_events(schema: str, run_id, tenant=None):
    """Server-Sent Events of a run; like Dify, a ping every 10 s of wall time. If Redis
    becomes unreachable, the run is followed in the database and its final event sent."""
    interval = settings.KEYFLOW_STREAM_PING_SECONDS
    next_ping = time.monotonic() + interval
    try:
        async for payload in streams.follow(schema, run_id, block_ms=1000):
            if time.monotonic() >= next_ping:
                next_ping += interval
                yield PING
            if payload is not None:
                yield sse(payload)
    except RedisError:
        if tenant is None:
            raise
        run = await poll_until_finished(tenant, run_id, settings.KEYFLOW_BLOCKING_TIMEOUT)
        if run is not None:
            yield sse(await in_tenant(tenant, lambda: final_payload(WorkflowRun.objects.select_related("app").get(pk=run_id))))
        else:
            yield sse({"event": "error", "workflow_run_id": str(run_id), "status": 503,
                       "code": "service_unavailable",
                       "message": "The run's events cannot be followed right now; poll the run."})


async def poll_until_finished(tenant, run_id, timeout: float):
    """The finished run, read from the database every half second; None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await in_tenant(tenant, lambda: WorkflowRun.objects.filter(pk=run_id).first())
        if run is None or run.is_finished:
            return run
        await asyncio.sleep(0.5)
    return None


class ServiceUnavailable(ApiError):
    status = 503
    code = "service_unavailable"


async def refuse_unqueued(tenant, run, mode: str) -> None:
    """A blocking or streaming run the broker could not take is failed and refused (503), so
    it never runs behind its client's back; an async run stays queued for the sweeper."""
    if getattr(run, "enqueued", True) is False and mode != WorkflowRun.ResponseMode.ASYNC:
        await in_tenant(tenant, workflow_run_refuse_unqueued, run_id=run.pk)
        raise ServiceUnavailable(
            "The run could not be queued: the broker is unreachable. Nothing was run; try again shortly.",
            headers={"Retry-After": "5"},
        )


def sse_response(events) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type=SSE_CONTENT_TYPE)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def wait_for_final(schema: str, run_id, timeout: float) -> tuple[dict, dict] | None:
    """The run's final event and its private fields, or None after `timeout` seconds.
    Raises RedisError if Redis is unreachable."""
    deadline = time.monotonic() + timeout

    async def consume() -> tuple[dict, dict] | None:
        async for entry in streams.follow(schema, run_id, block_ms=1000, private=True):
            if entry is not None and entry[0].get("event") in streams.FINAL_EVENTS:
                return entry
            if time.monotonic() > deadline:
                return None
        return None

    try:
        return await asyncio.wait_for(consume(), timeout=timeout + 1)
    except TimeoutError:
        return None


async def wait_for_end(schema: str, run_id, timeout: float, tenant=None) -> bool:
    """True when the run finished within `timeout` seconds (followed in the database if
    Redis is unreachable)."""
    deadline = time.monotonic() + timeout
    try:
        return await wait_for_final(schema, run_id, timeout) is not None
    except RedisError:
        if tenant is None:
            raise
        return await poll_until_finished(tenant, run_id, max(0.0, deadline - time.monotonic())) is not None


def with_platform_time(response, run: WorkflowRun, started: float):
    """Keyflow's own share of the request's time: total minus time waiting on providers."""
    total_ms = (time.monotonic() - started) * 1000
    response["X-Keyflow-Platform-Time-Ms"] = f"{max(0.0, total_ms - run.provider_time * 1000):.1f}"
    return response


class WorkflowRunApi(AsyncAPIView):
    authentication_classes = [AppTokenAuthentication]
    permission_classes = [IsAppClient]
    content_negotiation_class = JsonAlwaysNegotiation

    @extend_schema(
        operation_id="workflows_run",
        request=WorkflowRunInput,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description="A retried submission with the same key returns the first run."),
                    RETRY_AFTER],
        responses={
            **bodies.sse_or(bodies.WorkflowRunBlockingBody, "blocking: the finished run"),
            202: OpenApiResponse(bodies.WorkflowRunQueuedBody, description="async: the queued run"),
            **REFUSED_RESPONSES,
        },
        summary="Run a workflow",
    )
    async def post(self, request):
        started = time.monotonic()
        tenant = request.tenant
        serializer = WorkflowRunInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        idempotency_key = (request.headers.get("Idempotency-Key") or "")[:255]
        mode = data["response_mode"] or WorkflowRun.ResponseMode.BLOCKING
        if not idempotency_key:  # a retry must still find its first run
            backlog_shed(schema=tenant.schema_name, response_mode=mode)

        def submit():
            app = app_for_request(request, mode=App.Mode.WORKFLOW)
            return workflow_run_submit(
                app=app, token=request.user.token, inputs=data["inputs"], user=data["user"],
                response_mode=mode, credential_overrides=data["credential_overrides"],
                idempotency_key=idempotency_key, callback_url=data["callback_url"],
            ).run

        try:
            run = await in_tenant(tenant, submit)
        finally:
            admission_passed()
        await refuse_unqueued(tenant, run, mode)
        schema = tenant.schema_name
        if mode == WorkflowRun.ResponseMode.ASYNC:
            body = {"workflow_run_id": str(run.id), "task_id": str(run.task_id), "status": run.status,
                    "data": presenters.run_detail_body(run)}
            return with_platform_time(Response(body, status=202), run, started)
        if mode == WorkflowRun.ResponseMode.STREAMING:
            return sse_response(relay_events(schema, run.id, tenant))
        try:
            final = await wait_for_final(schema, run.id, settings.KEYFLOW_BLOCKING_TIMEOUT)
        except RedisError:  # followed in the database instead
            final = None
            await poll_until_finished(tenant, run.id, settings.KEYFLOW_BLOCKING_TIMEOUT)
        if final is not None and final[0].get("event") == "workflow_finished":
            # The final event holds the finished run: no second database round trip.
            event, private = final
            body = presenters.run_blocking_body_from_event(event)
            run.provider_time = float(private.get("provider_time", 0.0))
            return with_platform_time(Response(body), run, started)
        run = await in_tenant(tenant, lambda: WorkflowRun.objects.get(pk=run.pk))
        return with_platform_time(Response(presenters.run_blocking_body(run)), run, started)

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, StreamingHttpResponse):
            return response
        return super().finalize_response(request, response, *args, **kwargs)


class WorkflowRunDetailApi(_ServiceApi):
    @extend_schema(operation_id="workflows_run_detail", responses=bodies.RunDetailBody,
                   summary="A workflow run's detail")
    def get(self, request, workflow_run_id):
        from webhooks.selectors import webhook_deliveries_for_run

        app = app_for_request(request)
        run = workflow_run_get(app=app, run_id=workflow_run_id)
        body = presenters.run_detail_body(run)
        body["metadata"]["webhook_deliveries"] = webhook_deliveries_for_run(run)
        return Response(body)


class StopInput(serializers.Serializer):
    user = serializers.CharField(max_length=255)


class WorkflowTaskStopApi(_ServiceApi):
    @extend_schema(
        operation_id="workflows_task_stop", request=StopInput,
        responses=inline_serializer("StopResult", {"result": serializers.CharField()}),
        summary="Stop a running workflow task",
    )
    def post(self, request, task_id):
        serializer = StopInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        app = app_for_request(request, mode=App.Mode.WORKFLOW)
        # Like Dify: the same answer for an unknown, finished or foreign task.
        try:
            run = workflow_run_get(app=app, task_id=task_id, user=serializer.validated_data["user"])
        except RunNotFound:
            return Response({"result": "success"})
        workflow_run_request_stop(run=run)
        return Response({"result": "success"})


PAGE_PARAMETERS = [
    OpenApiParameter("page", int, OpenApiParameter.QUERY, required=False, description="1 to 99999"),
    OpenApiParameter("limit", int, OpenApiParameter.QUERY, required=False, description="1 to 100"),
]


class WorkflowLogsApi(_ServiceApi):
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["succeeded", "failed", "stopped"], required=False)
        keyword = serializers.CharField(required=False, max_length=255)
        created_by_end_user_session_id = serializers.CharField(required=False, max_length=255)

    @extend_schema(operation_id="workflows_logs", parameters=[FilterSerializer, *PAGE_PARAMETERS],
                   responses=bodies.WorkflowLogsBody, summary="Runs of this app")
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        app = app_for_request(request)
        runs = workflow_run_list(
            app=app, status=filters.validated_data.get("status"),
            end_user=filters.validated_data.get("created_by_end_user_session_id"),
            keyword=filters.validated_data.get("keyword"),
        )
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(runs, request, self)
        return paginator.get_paginated_response([
            {
                "id": str(run.id),
                "workflow_run": {
                    "id": str(run.id), "version": "published", "status": run.status,
                    "error": run.error or None, "elapsed_time": round(run.elapsed_time, 6),
                    "total_tokens": run.total_tokens, "total_steps": run.total_steps,
                    "created_at": presenters.timestamp(run.created_at),
                    "finished_at": presenters.timestamp(run.finished_at),
                },
                "created_from": "service-api",
                "created_by_role": "end_user",
                "created_by_account": None,
                "created_by_end_user": {"id": run.end_user, "type": "service_api",
                                        "is_anonymous": False, "session_id": run.end_user},
                "created_at": presenters.timestamp(run.created_at),
            }
            for run in page
        ])


class AppInfoApi(_ServiceApi):
    @extend_schema(operation_id="app_info", responses=bodies.AppInfoBody, summary="App information")
    def get(self, request):
        app = app_for_request(request)
        return Response({"name": app.name, "description": app.description, "tags": [],
                         "mode": app.mode, "author_name": connection.tenant.name})


class AppParametersApi(_ServiceApi):
    @extend_schema(operation_id="app_parameters", responses=bodies.AppParametersBody, summary="App input form")
    def get(self, request):
        from workflows.parameters import app_parameters

        return Response(app_parameters(app_for_request(request)))

