"""Management API endpoints about the tenant itself."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from api.auth import ManagementTokenAuthentication
from api.tenancy import TenantContextMixin


class TenantDetailApi(TenantContextMixin, APIView):
    authentication_classes = [ManagementTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="Tenant")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        name = serializers.CharField()
        slug = serializers.CharField()
        status = serializers.CharField()

    @extend_schema(responses=OutputSerializer, summary="The tenant this token belongs to")
    def get(self, request):
        return Response(self.OutputSerializer(request.tenant).data)
