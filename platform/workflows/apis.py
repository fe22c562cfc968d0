"""Management API for apps, their credential bindings and keys, runs and usage.

App keys are shown once, when issued; runs and usage carry credential ids, sources and
fingerprint prefixes, never a secret.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import datetime, time, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response

from api.errors import ApiError
from api.pagination import PageLimitPagination
from api.permissions import request_actor
from api.serializers import StrictInputSerializer
from api.views import ManagementApiView
from credentials.models import Credential
from credentials.providers.registry import provider_registry
from credentials.resolution import OverridePolicy
from tenants.services import api_token_revoke
from workflows import presenters
from workflows.errors import BindingNotFound
from workflows.models import App, AppCredentialBinding, NodeExecution, WorkflowRun
from workflows.pricing import CURRENCY
from workflows.selectors import (
    app_get,
    app_key_get,
    app_key_list,
    app_list,
    run_get,
    workflow_run_list,
)
from workflows.services import (
    app_create,
    app_credential_bind,
    app_delete,
    app_key_issue,
    app_update,
    app_webhook_secret_rotate,
)
from workflows.usage import USAGE_GROUPS, USAGE_SOURCES, usage_summary

logger = logging.getLogger(__name__)

FINGERPRINT_PREFIX = 16
MAX_POLICY_HOSTS = 50
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# The same plain list as the Service API's input, so the schema names one ResponseMode enum.
RESPONSE_MODES = [choice for choice, _ in WorkflowRun.ResponseMode.choices]


# --- Shared pieces -----------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.STR)
class DayOrInstantField(serializers.Field):
    """A query bound: a date (YYYY-MM-DD, its midnight; with `day_end`, the next midnight so
    the whole day is included) or an ISO 8601 datetime (a naive one is in UTC)."""

    default_error_messages = {"invalid": "Enter a date (YYYY-MM-DD) or an ISO 8601 datetime."}

    def __init__(self, *, day_end: bool = False, **kwargs):
        self.day_end = day_end
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        text = str(data).strip()
        try:
            day = parse_date(text)
            moment = None if day else parse_datetime(text)
        except ValueError:
            day = moment = None
        if day is not None:
            try:
                moment = datetime.combine(day + timedelta(days=1 if self.day_end else 0), time.min)
            except OverflowError:
                moment = None
        if moment is None:
            self.fail("invalid")
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, timezone.get_default_timezone())
        return moment

    def to_representation(self, value):
        return value.isoformat()


def _id_parameter(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(name, str, OpenApiParameter.PATH, description=f"{what} UUID")


APP_ID = _id_parameter("app_id", "App")
KEY_ID = _id_parameter("key_id", "App key")
RUN_ID = _id_parameter("run_id", "Run")
PROVIDER = OpenApiParameter("provider", str, OpenApiParameter.PATH, description="Provider id, e.g. openai")


# --- Apps --------------------------------------------------------------------------------


class CredentialBindingOutputSerializer(serializers.Serializer):
    provider = serializers.CharField()
    credential_id = serializers.UUIDField()


class AppOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    mode = serializers.ChoiceField(choices=App.Mode.choices)
    description = serializers.CharField(allow_blank=True)
    graph = serializers.DictField()
    model_config = serializers.DictField()
    enabled = serializers.BooleanField()
    credentials = CredentialBindingOutputSerializer(
        source="credential_bindings.all", many=True,
        help_text="Credentials bound to the app, used before the tenant default.",
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


GRAPH_IS_FOR_WORKFLOWS = (
    "Only workflow apps take a graph; chat and completion apps are described by model_config."
)


def _app_body(app: App) -> dict:
    return AppOutputSerializer(app_get(app_id=app.id)).data


class AppListCreateApi(ManagementApiView):
    class FilterSerializer(serializers.Serializer):
        mode = serializers.ChoiceField(choices=App.Mode.choices, required=False)
        enabled = serializers.BooleanField(required=False, allow_null=True, default=None)

    @extend_schema_serializer(component_name="AppCreateInput")
    class InputSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=200)
        mode = serializers.ChoiceField(choices=App.Mode.choices, default=App.Mode.WORKFLOW)
        description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
        graph = serializers.DictField(
            required=False, default=dict, help_text="The workflow graph (workflow apps)."
        )
        model_config = serializers.DictField(
            required=False, default=dict, help_text="Provider, model and prompts (chat and completion apps)."
        )
        enabled = serializers.BooleanField(required=False, default=True)

        def validate(self, attrs):
            if attrs["graph"] and attrs["mode"] != App.Mode.WORKFLOW:
                raise serializers.ValidationError({"graph": GRAPH_IS_FOR_WORKFLOWS})
            return attrs

    @extend_schema(
        operation_id="apps_list", parameters=[FilterSerializer],
        responses=AppOutputSerializer(many=True), summary="List apps",
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(app_list(**filters.validated_data), request, self)
        return paginator.get_paginated_response(AppOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="apps_create", request=InputSerializer,
        responses={201: inline_serializer("AppCreated", {
            **AppOutputSerializer().get_fields(),
            "webhook_secret": serializers.CharField(help_text="Shown this once."),
        })},
        summary="Create an app (a workflow app's graph must validate)",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        app = app_create(
            name=data["name"], mode=data["mode"], description=data["description"],
            graph=data["graph"], model_config=data["model_config"], enabled=data["enabled"],
        )
        # The webhook secret is shown once, here and when rotated.
        return Response({**_app_body(app), "webhook_secret": app.webhook_secret},
                        status=status.HTTP_201_CREATED)


class AppDetailApi(ManagementApiView):
    @extend_schema_serializer(component_name="AppUpdate")
    class UpdateSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
        graph = serializers.DictField(required=False)
        model_config = serializers.DictField(required=False)
        enabled = serializers.BooleanField(required=False)

    @extend_schema(operation_id="apps_retrieve", parameters=[APP_ID], responses=AppOutputSerializer,
                   summary="Get an app")
    def get(self, request, app_id):
        return Response(AppOutputSerializer(app_get(app_id=app_id)).data)

    @extend_schema(
        operation_id="apps_update", parameters=[APP_ID], request=UpdateSerializer,
        responses=AppOutputSerializer, summary="Update an app (a new graph is validated again)",
    )
    def patch(self, request, app_id):
        app = app_get(app_id=app_id)
        serializer = self.UpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if "graph" in serializer.validated_data and app.mode != App.Mode.WORKFLOW:
            raise serializers.ValidationError({"graph": GRAPH_IS_FOR_WORKFLOWS})
        app = app_update(app=app, **serializer.validated_data)
        return Response(_app_body(app))

    @extend_schema(operation_id="apps_delete", parameters=[APP_ID], responses={204: None},
                   summary="Delete an app, its runs and bindings, and revoke its keys")
    def delete(self, request, app_id):
        app = app_get(app_id=app_id)
        app_delete(tenant=request.tenant, app=app)
        logger.info("App %s deleted by %s; its keys are revoked", app_id, request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Credential bindings -----------------------------------------------------------------


def _binding_refused(code: str, message: str) -> ApiError:
    return ApiError(message, code=code, status=400)


def _known_provider(provider: str) -> str:
    registry = provider_registry()
    if provider not in registry:
        raise _binding_refused(
            "unknown_provider",
            f"Unknown provider {provider[:64]!r}; known: {', '.join(registry.ids())}.",
        )
    return provider


class AppCredentialBindingApi(ManagementApiView):
    @extend_schema_serializer(component_name="AppCredentialBindInput")
    class InputSerializer(StrictInputSerializer):
        credential_id = serializers.UUIDField()

    @extend_schema(
        operation_id="apps_credentials_bind", parameters=[APP_ID, PROVIDER], request=InputSerializer,
        responses=AppOutputSerializer,
        summary="Bind the credential the app uses for a provider (before the tenant default)",
    )
    def put(self, request, app_id, provider):
        app = app_get(app_id=app_id)
        provider = _known_provider(provider)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        credential_id = serializer.validated_data["credential_id"]
        # Another tenant's credential is not in this schema: it answers like a missing one.
        credential = Credential.objects.filter(pk=credential_id).first()
        if credential is None:
            raise _binding_refused(
                "credential_not_found", f"credential_id: credential {credential_id} not found."
            )
        if credential.provider != provider:
            raise _binding_refused(
                "credential_provider_mismatch",
                f"credential_id: credential {credential.id} is a {credential.provider} "
                f"credential, not {provider}.",
            )
        if not credential.is_active:
            raise _binding_refused(
                "credential_disabled", f"credential_id: credential {credential.id} is disabled."
            )
        app_credential_bind(app=app, provider=provider, credential=credential)
        return Response(_app_body(app))

    @extend_schema(operation_id="apps_credentials_unbind", parameters=[APP_ID, PROVIDER],
                   responses={204: None}, summary="Unbind the app's credential for a provider")
    def delete(self, request, app_id, provider):
        app = app_get(app_id=app_id)
        provider = _known_provider(provider)
        if not AppCredentialBinding.objects.filter(app=app, provider=provider).exists():
            raise BindingNotFound(f"No {provider} credential is bound to this app.")
        app_credential_bind(app=app, provider=provider, credential=None)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- App keys ----------------------------------------------------------------------------


class HostnameField(serializers.CharField):
    """A host an inline key's endpoint may use: a DNS name or an IP address, no scheme,
    port, path or wildcard. Stored lowercase, as the resolver compares them."""

    default_error_messages = {
        "host": "{value!r} is not a hostname (a DNS name or an IP address, without scheme, "
        "port or path)."
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 253)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        text = super().to_internal_value(data).lower()
        host = text[:-1] if text.endswith(".") else text
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        labels = host.split(".")
        if not host or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            self.fail("host", value=text[:100])
        return host


class AppKeyPolicySerializer(serializers.Serializer):
    allow_overrides = serializers.BooleanField()
    override_providers = serializers.ListField(child=serializers.CharField(), allow_null=True)
    allow_inline_keys = serializers.BooleanField()
    inline_endpoint_hosts = serializers.ListField(child=serializers.CharField())
    rate_limit_per_minute = serializers.IntegerField(
        required=False, help_text="The key's own request limit; absent: the platform default."
    )


class AppKeyOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    app_id = serializers.UUIDField()
    name = serializers.CharField(allow_blank=True)
    hint = serializers.CharField(help_text="The key's first characters, to recognise it.")
    policy = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(AppKeyPolicySerializer)
    def get_policy(self, obj) -> dict:
        return OverridePolicy.from_dict(obj.policy).to_dict()


class AppKeyIssuedSerializer(AppKeyOutputSerializer):
    token = serializers.CharField(help_text="The key itself: shown this once, never again.")


class AppKeyListCreateApi(ManagementApiView):
    @extend_schema_serializer(component_name="AppKeyCreateInput")
    class InputSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        allow_overrides = serializers.BooleanField(
            required=False, default=True, help_text="Callers may pass credential_overrides."
        )
        override_providers = serializers.ListField(
            child=serializers.CharField(max_length=64), required=False, allow_null=True,
            default=None, max_length=50,
            help_text="Providers callers may override; null for every provider.",
        )
        allow_inline_keys = serializers.BooleanField(
            required=False, default=False, help_text="Callers may pass a one-off key."
        )
        inline_endpoint_hosts = serializers.ListField(
            child=HostnameField(), required=False, default=list, max_length=MAX_POLICY_HOSTS,
            help_text="Hosts a one-off key's base_url may point at; empty forbids any base_url.",
        )

        def validate_override_providers(self, value):
            if value is None:
                return None
            registry = provider_registry()
            unknown = [p for p in value if p not in registry]
            if unknown:
                raise serializers.ValidationError(
                    f"Unknown provider {unknown[0][:64]!r}; known: {', '.join(registry.ids())}."
                )
            return sorted(set(value))

        def validate(self, attrs):
            if attrs["override_providers"] is not None and not attrs["allow_overrides"]:
                raise serializers.ValidationError(
                    {"override_providers": "Only meaningful when allow_overrides is true."}
                )
            if attrs["inline_endpoint_hosts"] and not attrs["allow_inline_keys"]:
                raise serializers.ValidationError(
                    {"inline_endpoint_hosts": "Only meaningful when allow_inline_keys is true."}
                )
            return attrs

    @extend_schema(
        operation_id="apps_keys_list", parameters=[APP_ID], responses=AppKeyOutputSerializer(many=True),
        summary="List the app's Service API keys (the keys themselves are never shown again)",
    )
    def get(self, request, app_id):
        app = app_get(app_id=app_id)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(app_key_list(tenant=request.tenant, app=app), request, self)
        return paginator.get_paginated_response(AppKeyOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="apps_keys_create", parameters=[APP_ID], request=InputSerializer,
        responses={201: AppKeyIssuedSerializer},
        summary="Issue a Service API key (app-…) with its override policy; the key is shown once",
    )
    def post(self, request, app_id):
        app = app_get(app_id=app_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        policy = OverridePolicy(
            allow_overrides=data["allow_overrides"],
            providers=frozenset(data["override_providers"]) if data["override_providers"] is not None else None,
            allow_inline=data["allow_inline_keys"],
            inline_endpoint_hosts=frozenset(data["inline_endpoint_hosts"]),
        )
        issued = app_key_issue(tenant=request.tenant, app=app, name=data["name"], policy=policy)
        logger.info("App key %s… issued for app %s by %s", issued.record.hint, app.id, request_actor(request))
        body = {**AppKeyOutputSerializer(issued.record).data, "token": issued.token}
        return Response(body, status=status.HTTP_201_CREATED)


class AppKeyRevokeApi(ManagementApiView):
    @extend_schema(
        operation_id="apps_keys_revoke", parameters=[APP_ID, KEY_ID], request=None,
        responses=AppKeyOutputSerializer, summary="Revoke a key: it stops working at once",
    )
    def post(self, request, app_id, key_id):
        app = app_get(app_id=app_id)
        token = api_token_revoke(token=app_key_get(tenant=request.tenant, app=app, key_id=key_id))
        logger.info("App key %s… revoked by %s", token.hint, request_actor(request))
        return Response(AppKeyOutputSerializer(token).data)


# --- Runs --------------------------------------------------------------------------------


class RunCredentialSerializer(serializers.Serializer):
    provider = serializers.CharField()
    source = serializers.ChoiceField(choices=NodeExecution.CredentialSource.choices)
    credential_id = serializers.UUIDField(allow_null=True, help_text="None for a one-off key.")
    fingerprint = serializers.CharField(help_text="Prefix of the key's keyed hash.")


class NodeExecutionOutputSerializer(serializers.Serializer):
    node_id = serializers.CharField()
    type = serializers.CharField(source="node_type")
    title = serializers.CharField(allow_blank=True)
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=NodeExecution.Status.choices)
    provider = serializers.CharField(allow_blank=True)
    model = serializers.CharField(allow_blank=True)
    credential_id = serializers.UUIDField(allow_null=True)
    credential_source = serializers.CharField(allow_blank=True)
    fingerprint = serializers.SerializerMethodField(help_text="Prefix of the key's keyed hash.")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    total_price = serializers.DecimalField(max_digits=18, decimal_places=7)
    currency = serializers.CharField()
    elapsed_time = serializers.FloatField()
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_fingerprint(self, obj) -> str:
        return obj.credential_fingerprint[:FINGERPRINT_PREFIX]


class RunOutputSerializer(serializers.Serializer):
    """A run; only its detail (GET /api/runs/{run_id}) has inputs, outputs and node executions.

    One serializer for both, rather than a detail subclass, keeps the run status enum in
    one schema component (two would make its OpenAPI enum name ambiguous)."""

    DETAIL_FIELDS = ("inputs", "outputs", "node_executions")

    id = serializers.UUIDField()
    task_id = serializers.UUIDField()
    app_id = serializers.UUIDField()
    app_name = serializers.CharField(source="app.name")
    status = serializers.ChoiceField(choices=WorkflowRun.Status.choices)
    response_mode = serializers.ChoiceField(choices=RESPONSE_MODES)
    user = serializers.CharField(source="end_user")
    error = serializers.CharField(allow_blank=True)
    error_code = serializers.CharField(allow_blank=True)
    credentials = serializers.SerializerMethodField(help_text="Who paid, per provider.")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    total_price = serializers.DecimalField(max_digits=18, decimal_places=7)
    currency = serializers.CharField()
    total_steps = serializers.IntegerField()
    elapsed_time = serializers.FloatField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    inputs = serializers.DictField(required=False, help_text="Run detail only.")
    outputs = serializers.DictField(required=False, allow_null=True, help_text="Run detail only.")
    node_executions = NodeExecutionOutputSerializer(
        many=True, source="node_executions.all", required=False, help_text="Run detail only."
    )

    @extend_schema_field(RunCredentialSerializer(many=True))
    def get_credentials(self, obj) -> list:
        return presenters.run_credentials(obj)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if kwargs.get("context", {}).get("listing"):
            for name in self.DETAIL_FIELDS:
                self.fields.pop(name)


class RunListApi(ManagementApiView):
    class FilterSerializer(serializers.Serializer):
        app_id = serializers.UUIDField(required=False)
        status = serializers.ChoiceField(choices=WorkflowRun.Status.choices, required=False)
        user = serializers.CharField(required=False, max_length=255, help_text="The end user.")
        credential_id = serializers.UUIDField(
            required=False, help_text="Runs where any step used this credential."
        )
        created_after = DayOrInstantField(
            required=False, help_text="Runs created at or after this date (YYYY-MM-DD) or datetime."
        )
        created_before = DayOrInstantField(
            required=False, help_text="Runs created before this date (YYYY-MM-DD) or datetime."
        )

        def validate(self, attrs):
            after, before = attrs.get("created_after"), attrs.get("created_before")
            if after and before and before <= after:
                raise serializers.ValidationError({"created_before": "Must be after created_after."})
            return attrs

    @extend_schema(
        operation_id="runs_list", parameters=[FilterSerializer], responses=RunOutputSerializer(many=True),
        summary="Runs of every app, newest first",
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        runs = workflow_run_list(
            status=data.get("status"), end_user=data.get("user"), credential_id=data.get("credential_id"),
        ).select_related("app")
        if "app_id" in data:
            runs = runs.filter(app_id=data["app_id"])
        if "created_after" in data:
            runs = runs.filter(created_at__gte=data["created_after"])
        if "created_before" in data:
            runs = runs.filter(created_at__lt=data["created_before"])
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(runs, request, self)
        return paginator.get_paginated_response(
            RunOutputSerializer(page, many=True, context={"listing": True}).data
        )


class RunDetailApi(ManagementApiView):
    @extend_schema(operation_id="runs_retrieve", parameters=[RUN_ID], responses=RunOutputSerializer,
                   summary="A run with its inputs, outputs and node executions")
    def get(self, request, run_id):
        return Response(RunOutputSerializer(run_get(run_id=run_id)).data)


# --- Usage -------------------------------------------------------------------------------


class UsageRowSerializer(serializers.Serializer):
    """One group's sums; only the group's own columns are present."""

    GROUP_COLUMNS = frozenset(
        {"credential_id", "credential_name", "source", "sources", "user", "app_id", "app_name",
         "day", "provider", "model"}
    )

    credential_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="group_by=credential; null for one-off keys."
    )
    credential_name = serializers.CharField(
        required=False, allow_null=True, help_text="group_by=credential; null once deleted."
    )
    source = serializers.ChoiceField(
        choices=USAGE_SOURCES, required=False,
        help_text="group_by=credential: how the credential was chosen (mixed: several ways).",
    )
    sources = serializers.ListField(child=serializers.CharField(), required=False)
    user = serializers.CharField(required=False, help_text="group_by=user: the end user.")
    app_id = serializers.UUIDField(required=False, help_text="group_by=app")
    app_name = serializers.CharField(required=False, help_text="group_by=app")
    day = serializers.DateField(required=False, help_text="group_by=day (UTC)")
    provider = serializers.CharField(required=False, help_text="group_by=model")
    model = serializers.CharField(required=False, help_text="group_by=model")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=24, decimal_places=7)
    currency = serializers.CharField()
    runs = serializers.IntegerField()
    steps = serializers.IntegerField(help_text="LLM steps")

    def to_representation(self, instance):
        body = super().to_representation(instance)
        return {
            name: value for name, value in body.items()
            if name not in self.GROUP_COLUMNS or name in instance
        }


class UsageApi(ManagementApiView):
    class FilterSerializer(serializers.Serializer):
        group_by = serializers.ChoiceField(choices=USAGE_GROUPS)
        app_id = serializers.UUIDField(required=False)
        credential_id = serializers.UUIDField(required=False)
        user = serializers.CharField(required=False, max_length=255, help_text="The end user.")
        start = DayOrInstantField(
            required=False, help_text="First day (YYYY-MM-DD) or datetime included."
        )
        end = DayOrInstantField(
            required=False, day_end=True,
            help_text="Last day included (YYYY-MM-DD), or a datetime (excluded).",
        )

        def validate(self, attrs):
            if attrs.get("start") and attrs.get("end") and attrs["end"] <= attrs["start"]:
                raise serializers.ValidationError({"end": "Must not be before start."})
            return attrs

    @extend_schema(
        operation_id="usage_summary",
        parameters=[FilterSerializer],
        responses=inline_serializer(
            "UsageSummary",
            {
                "group_by": serializers.ChoiceField(choices=USAGE_GROUPS),
                "currency": serializers.CharField(),
                "data": UsageRowSerializer(many=True),
            },
        ),
        summary="Tokens, cost, runs and LLM steps, summed by credential, user, app, day or model",
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        rows = usage_summary(
            group_by=data["group_by"], app_id=data.get("app_id"),
            credential_id=data.get("credential_id"), user=data.get("user"),
            start=data.get("start"), end=data.get("end"),
        )
        return Response({
            "group_by": data["group_by"],
            "currency": CURRENCY,
            "data": UsageRowSerializer(rows, many=True).data,
        })


class AppWebhookSecretRotateApi(ManagementApiView):
    @extend_schema(
        operation_id="apps_webhook_secret_rotate", parameters=[APP_ID], request=None,
        responses=inline_serializer("WebhookSecret", {"webhook_secret": serializers.CharField()}),
        summary="Replace the app's webhook signing secret (the new one is shown once)",
    )
    def post(self, request, app_id):
        app = app_get(app_id=app_id)
        return Response({"webhook_secret": app_webhook_secret_rotate(app=app)})
