"""Management API for credentials. Secrets are write-only: no response ever carries one."""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response

from api.pagination import PageLimitPagination
from api.permissions import request_actor
from api.serializers import StrictInputSerializer
from api.views import ManagementApiView
from credentials.models import Credential
from credentials.providers.registry import provider_registry
from credentials.selectors import credential_get, credential_list
from credentials.services import (
    credential_create,
    credential_delete,
    credential_disable,
    credential_enable,
    credential_set_default,
    credential_update,
    credential_validate,
)

FIELD_VALUE_MAX = 4096


class CredentialOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    provider = serializers.CharField()
    name = serializers.CharField()
    config = serializers.DictField(child=serializers.CharField())
    is_default = serializers.BooleanField()
    owner = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=Credential.Status.choices)
    hint = serializers.CharField(source="masked", help_text="Last 4 characters of the key.")
    fingerprint = serializers.SerializerMethodField(help_text="Keyed hash of the key (prefix).")
    version = serializers.IntegerField()
    validation_status = serializers.ChoiceField(choices=Credential.Validation.choices)
    validation_message = serializers.CharField(allow_blank=True)
    validated_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    created_by = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_by = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField()

    def get_fingerprint(self, obj) -> str:
        return obj.fingerprint[:16]


def _field_map():
    return serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=FIELD_VALUE_MAX, trim_whitespace=True),
        required=False,
    )


class CredentialListCreateApi(ManagementApiView):
    class FilterSerializer(serializers.Serializer):
        provider = serializers.CharField(required=False, max_length=64)
        status = serializers.ChoiceField(choices=Credential.Status.choices, required=False)
        owner = serializers.CharField(required=False, allow_blank=True, max_length=255)

    @extend_schema_serializer(component_name="CredentialCreateInput")
    class InputSerializer(StrictInputSerializer):
        provider = serializers.CharField(max_length=64)
        name = serializers.CharField(max_length=200)
        secrets = _field_map()
        config = _field_map()
        is_default = serializers.BooleanField(required=False, default=False)
        owner = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")

    @extend_schema(
        operation_id="credentials_list",
        parameters=[FilterSerializer],
        responses=CredentialOutputSerializer(many=True),
        summary="List credentials",
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(credential_list(**filters.validated_data), request, self)
        return paginator.get_paginated_response(CredentialOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="credentials_create",
        request=InputSerializer,
        responses={201: CredentialOutputSerializer},
        summary="Store a credential (secrets are encrypted and never returned)",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        credential = credential_create(
            provider=data["provider"], name=data["name"], secrets=data.get("secrets", {}),
            config=data.get("config", {}), is_default=data["is_default"], owner=data["owner"],
            actor=request_actor(request),
        )
        return Response(CredentialOutputSerializer(credential).data, status=status.HTTP_201_CREATED)


ID_PARAMETER = OpenApiParameter("credential_id", str, OpenApiParameter.PATH, description="Credential UUID")


class CredentialDetailApi(ManagementApiView):
    @extend_schema_serializer(component_name="CredentialUpdate")
    class UpdateSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=200, required=False)
        secrets = _field_map()
        config = _field_map()
        owner = serializers.CharField(required=False, allow_blank=True, max_length=255)

    @extend_schema(operation_id="credentials_retrieve", parameters=[ID_PARAMETER],
                   responses=CredentialOutputSerializer, summary="Get a credential")
    def get(self, request, credential_id):
        return Response(CredentialOutputSerializer(credential_get(credential_id=credential_id)).data)

    @extend_schema(
        operation_id="credentials_update", parameters=[ID_PARAMETER], request=UpdateSerializer,
        responses=CredentialOutputSerializer,
        summary="Update a credential; a new secret rotates the key under the same id",
    )
    def patch(self, request, credential_id):
        credential = credential_get(credential_id=credential_id)
        serializer = self.UpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        credential = credential_update(
            credential=credential, actor=request_actor(request), **serializer.validated_data
        )
        return Response(CredentialOutputSerializer(credential).data)

    @extend_schema(operation_id="credentials_delete", parameters=[ID_PARAMETER],
                   responses={204: None}, summary="Delete a credential")
    def delete(self, request, credential_id):
        credential_delete(credential=credential_get(credential_id=credential_id), actor=request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class _CredentialActionApi(ManagementApiView):
    def act(self, request, credential):  # pragma: no cover - overridden
        raise NotImplementedError

    def post(self, request, credential_id):
        credential = credential_get(credential_id=credential_id)
        credential = self.act(request, credential) or credential
        return Response(CredentialOutputSerializer(credential).data)


class CredentialSetDefaultApi(_CredentialActionApi):
    @extend_schema(operation_id="credentials_set_default", parameters=[ID_PARAMETER], request=None,
                   responses=CredentialOutputSerializer, summary="Make it its provider's default")
    def post(self, request, credential_id):
        return super().post(request, credential_id)

    def act(self, request, credential):
        return credential_set_default(credential=credential, actor=request_actor(request))


class CredentialDisableApi(_CredentialActionApi):
    @extend_schema(operation_id="credentials_disable", parameters=[ID_PARAMETER], request=None,
                   responses=CredentialOutputSerializer, summary="Disable (no run may use it)")
    def post(self, request, credential_id):
        return super().post(request, credential_id)

    def act(self, request, credential):
        return credential_disable(credential=credential, actor=request_actor(request))


class CredentialEnableApi(_CredentialActionApi):
    @extend_schema(operation_id="credentials_enable", parameters=[ID_PARAMETER], request=None,
                   responses=CredentialOutputSerializer, summary="Enable")
    def post(self, request, credential_id):
        return super().post(request, credential_id)

    def act(self, request, credential):
        return credential_enable(credential=credential, actor=request_actor(request))


class CredentialValidateApi(ManagementApiView):
    @extend_schema(
        operation_id="credentials_validate", parameters=[ID_PARAMETER], request=None,
        responses=inline_serializer(
            "CredentialValidation",
            {
                "ok": serializers.BooleanField(),
                "message": serializers.CharField(),
                "models": serializers.ListField(child=serializers.CharField()),
                "credential": CredentialOutputSerializer(),
            },
        ),
        summary="Check the key with the provider (a cheap real call)",
    )
    def post(self, request, credential_id):
        credential = credential_get(credential_id=credential_id)
        result = credential_validate(credential=credential, actor=request_actor(request))
        return Response(
            {
                "ok": result.ok,
                "message": result.message,
                "models": list(result.models)[:100],
                "credential": CredentialOutputSerializer(credential).data,
            }
        )


class ProviderFieldBody(serializers.Serializer):
    """Documentation only: one field of a provider's credentials."""

    name = serializers.CharField()
    label = serializers.CharField()
    required = serializers.BooleanField()
    secret = serializers.BooleanField()
    kind = serializers.CharField(help_text="text, url or choice")
    help_text = serializers.CharField(allow_blank=True)


class ProviderBody(serializers.Serializer):
    """Documentation only: a provider and the fields its credentials take."""

    id = serializers.CharField()
    name = serializers.CharField()
    secret_fields = ProviderFieldBody(many=True)
    config_fields = ProviderFieldBody(many=True)
    models = serializers.ListField(child=serializers.CharField())


class ProviderListApi(ManagementApiView):
    @extend_schema(
        operation_id="providers_list",
        responses=inline_serializer("ProviderList", {"data": ProviderBody(many=True)}),
        summary="Providers and the fields each credential needs",
    )
    def get(self, request):
        def field(spec):
            return {"name": spec.name, "label": spec.label, "required": spec.required,
                    "secret": spec.secret, "kind": spec.kind, "help_text": spec.help_text}

        return Response({"data": [
            {"id": p.id, "name": p.display_name,
             "secret_fields": [field(s) for s in p.secret_fields],
             "config_fields": [field(s) for s in p.config_fields],
             "models": list(p.default_models)}
            for p in provider_registry().all()
        ]})
