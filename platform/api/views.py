"""Base views for the APIs."""

from rest_framework.views import APIView

from api.permissions import MANAGEMENT_AUTHENTICATION, IsTenantManager
from api.tenancy import TenantContextMixin


class ManagementApiView(TenantContextMixin, APIView):
    """The management API: a kf- token of the tenant, or its staff's admin session."""

    authentication_classes = MANAGEMENT_AUTHENTICATION
    permission_classes = [IsTenantManager]
