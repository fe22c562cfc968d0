"""Management API for budgets and rate limits of credentials and of app keys' end users."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response

from api.pagination import PageLimitPagination
from api.permissions import request_actor
from api.serializers import StrictInputSerializer
from api.views import ManagementApiView
from budgets.models import COST_DECIMALS, COST_DIGITS, Budget, BudgetEvent
from budgets.selectors import (
    budget_app_key_get,
    budget_event_list,
    budget_get,
    budget_list,
    budget_spend_get,
    budget_spend_list,
)
from budgets.services import (
    MAX_BIG,
    MAX_INT,
    budget_create,
    budget_delete,
    budget_reset,
    budget_update,
)
from credentials.selectors import credential_get
from tenants.models import ApiToken
from workflows.pricing import CURRENCY

BUDGET_ID = OpenApiParameter("budget_id", str, OpenApiParameter.PATH, description="Budget UUID")
SMALLEST_COST = Decimal(10) ** -COST_DECIMALS


class SpendSerializer(serializers.Serializer):
    user = serializers.CharField(allow_null=True, help_text="The end user (end-user budgets).")
    period = serializers.ChoiceField(choices=Budget.Period.choices)
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True, help_text="When the period resets by itself.")
    counting_since = serializers.DateTimeField(help_text="Period start, or a later manual reset.")
    tokens_used = serializers.IntegerField()
    token_budget = serializers.IntegerField(allow_null=True)
    token_percent = serializers.FloatField(allow_null=True)
    cost_used = serializers.DecimalField(max_digits=COST_DIGITS, decimal_places=COST_DECIMALS)
    cost_budget = serializers.DecimalField(max_digits=COST_DIGITS, decimal_places=COST_DECIMALS,
                                           allow_null=True)
    cost_percent = serializers.FloatField(allow_null=True)
    currency = serializers.CharField()
    percent = serializers.FloatField(allow_null=True, help_text="The larger of token and cost percent.")
    soft_threshold_percent = serializers.IntegerField(allow_null=True)
    state = serializers.ChoiceField(choices=["ok", "warning", "exceeded"])
    requests_last_minute = serializers.IntegerField()
    tokens_this_minute = serializers.IntegerField()


class BudgetOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    scope = serializers.ChoiceField(choices=Budget.Scope.choices)
    credential_id = serializers.UUIDField(allow_null=True)
    app_key_id = serializers.UUIDField(allow_null=True)
    app_id = serializers.SerializerMethodField()
    token_budget = serializers.IntegerField(allow_null=True)
    cost_budget = serializers.DecimalField(max_digits=COST_DIGITS, decimal_places=COST_DECIMALS,
                                           allow_null=True)
    currency = serializers.SerializerMethodField()
    period = serializers.ChoiceField(choices=Budget.Period.choices)
    soft_threshold_percent = serializers.IntegerField(allow_null=True)
    requests_per_minute = serializers.IntegerField(allow_null=True)
    tokens_per_minute = serializers.IntegerField(allow_null=True)
    alert_webhook_url = serializers.CharField(allow_blank=True)
    reset_at = serializers.DateTimeField(allow_null=True)
    created_by = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_by = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField()
    spend = serializers.SerializerMethodField(
        help_text="Current spend of a credential budget; end-user budgets: see /spend."
    )

    def get_app_id(self, obj) -> str | None:
        if not obj.app_key_id:
            return None
        app_ids = self.context.get("app_ids")
        if app_ids is None:
            app_ids = dict(ApiToken.objects.filter(pk=obj.app_key_id).values_list("pk", "app_id"))
        app_id = app_ids.get(obj.app_key_id)
        return str(app_id) if app_id else None

    def get_currency(self, obj) -> str:
        return CURRENCY

    @extend_schema_field(SpendSerializer(allow_null=True))
    def get_spend(self, obj) -> dict | None:
        if obj.scope != Budget.Scope.CREDENTIAL or not obj.has_spend_cap:
            return None
        return SpendSerializer(budget_spend_get(budget=obj).as_dict()).data


class BudgetCreatedSerializer(BudgetOutputSerializer):
    webhook_secret = serializers.CharField(
        help_text="Signs alert webhooks (X-Keyflow-Signature): shown this once, never again."
    )


def _body(budget: Budget, **context) -> dict:
    return BudgetOutputSerializer(budget, context=context).data


class _LimitsInput(StrictInputSerializer):
    token_budget = serializers.IntegerField(min_value=1, max_value=MAX_BIG, required=False, allow_null=True,
                                            help_text="Tokens per period (prompt + completion).")
    cost_budget = serializers.DecimalField(
        max_digits=COST_DIGITS, decimal_places=COST_DECIMALS, min_value=SMALLEST_COST,
        required=False, allow_null=True, help_text=f"{CURRENCY} per period (Keyflow's estimates).",
    )
    period = serializers.ChoiceField(choices=Budget.Period.choices, required=False)
    soft_threshold_percent = serializers.IntegerField(
        min_value=1, max_value=100, required=False, allow_null=True,
        help_text="Alert when spend passes this percent of a cap.",
    )
    requests_per_minute = serializers.IntegerField(min_value=1, max_value=MAX_INT, required=False,
                                                   allow_null=True)
    tokens_per_minute = serializers.IntegerField(min_value=1, max_value=MAX_INT, required=False,
                                                 allow_null=True)
    alert_webhook_url = serializers.CharField(max_length=2048, required=False, allow_blank=True,
                                              allow_null=True)


class BudgetListCreateApi(ManagementApiView):
    class FilterSerializer(serializers.Serializer):
        scope = serializers.ChoiceField(choices=Budget.Scope.choices, required=False)
        credential_id = serializers.UUIDField(required=False)
        app_key_id = serializers.UUIDField(required=False)

    class InputSerializer(_LimitsInput):
        credential_id = serializers.CharField(required=False, max_length=64,
                                              help_text="A credential's budget …")
        app_key_id = serializers.CharField(required=False, max_length=64,
                                           help_text="… or the budget of each end user of an app key.")

        def validate(self, attrs):
            if ("credential_id" in attrs) == ("app_key_id" in attrs):
                raise serializers.ValidationError("Give either credential_id or app_key_id (exactly one).")
            return attrs

    @extend_schema(operation_id="budgets_list", parameters=[FilterSerializer],
                   responses=BudgetOutputSerializer(many=True), summary="List budgets")
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(budget_list(**filters.validated_data), request, self)
        key_ids = [budget.app_key_id for budget in page if budget.app_key_id]
        app_ids = dict(ApiToken.objects.filter(pk__in=key_ids).values_list("pk", "app_id")) if key_ids else {}
        data = BudgetOutputSerializer(page, many=True, context={"app_ids": app_ids}).data
        return paginator.get_paginated_response(data)

    @extend_schema(operation_id="budgets_create", request=InputSerializer,
                   responses={201: BudgetCreatedSerializer},
                   summary="Set the budget of a credential, or of each end user of an app key")
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        credential = app_key = None
        if "credential_id" in data:
            credential = credential_get(credential_id=data.pop("credential_id"))
        else:
            app_key = budget_app_key_get(tenant=request.tenant, app_key_id=data.pop("app_key_id"))
        data["alert_webhook_url"] = data.get("alert_webhook_url") or ""
        budget = budget_create(credential=credential, app_key=app_key, actor=request_actor(request), **data)
        body = {**_body(budget), "webhook_secret": budget.webhook_secret}
        return Response(body, status=status.HTTP_201_CREATED)


class BudgetDetailApi(ManagementApiView):
    class UpdateSerializer(_LimitsInput):
        pass

    @extend_schema(operation_id="budgets_retrieve", parameters=[BUDGET_ID],
                   responses=BudgetOutputSerializer, summary="Get a budget with its current spend")
    def get(self, request, budget_id):
        return Response(_body(budget_get(budget_id=budget_id)))

    @extend_schema(operation_id="budgets_update", parameters=[BUDGET_ID], request=UpdateSerializer,
                   responses=BudgetOutputSerializer,
                   summary="Change limits (null clears one; at least one must remain)")
    def patch(self, request, budget_id):
        budget = budget_get(budget_id=budget_id)
        serializer = self.UpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        budget = budget_update(budget=budget, actor=request_actor(request), **serializer.validated_data)
        return Response(_body(budget))

    @extend_schema(operation_id="budgets_delete", parameters=[BUDGET_ID], responses={204: None},
                   summary="Remove a budget (its limits stop applying at once)")
    def delete(self, request, budget_id):
        budget_delete(budget=budget_get(budget_id=budget_id), actor=request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BudgetSpendApi(ManagementApiView):
    class FilterSerializer(serializers.Serializer):
        user = serializers.CharField(required=False, max_length=255,
                                     help_text="One end user (end-user budgets).")

    @extend_schema(
        operation_id="budgets_spend", parameters=[BUDGET_ID, FilterSerializer],
        responses=inline_serializer("BudgetSpendList", {"data": SpendSerializer(many=True)}),
        summary="Current period spend: the credential's, or each end user's (heaviest first)",
    )
    def get(self, request, budget_id):
        budget = budget_get(budget_id=budget_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        rows = budget_spend_list(budget=budget, user=filters.validated_data.get("user"))
        return Response({"data": SpendSerializer([row.as_dict() for row in rows], many=True).data})


class BudgetResetApi(ManagementApiView):
    @extend_schema(operation_id="budgets_reset", parameters=[BUDGET_ID], request=None,
                   responses=BudgetOutputSerializer,
                   summary="Start counting spend again from now (audited)")
    def post(self, request, budget_id):
        budget = budget_reset(budget=budget_get(budget_id=budget_id), actor=request_actor(request))
        return Response(_body(budget))


class BudgetEventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=BudgetEvent.Kind.choices)
    user = serializers.CharField(source="subject", allow_blank=True)
    period_key = serializers.CharField(allow_blank=True)
    actor = serializers.CharField(allow_blank=True)
    details = serializers.DictField()
    delivery_status = serializers.CharField(allow_blank=True)
    delivery_attempts = serializers.IntegerField()
    delivery_status_code = serializers.IntegerField(allow_null=True)
    at = serializers.DateTimeField()


class BudgetEventListApi(ManagementApiView):
    @extend_schema(operation_id="budgets_events", parameters=[BUDGET_ID],
                   responses=BudgetEventOutputSerializer(many=True),
                   summary="Audit trail and alerts of a budget, newest first")
    def get(self, request, budget_id):
        budget = budget_get(budget_id=budget_id)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(budget_event_list(budget_id=budget.id), request, self)
        return paginator.get_paginated_response(BudgetEventOutputSerializer(page, many=True).data)
