"""Base views for the APIs."""

from rest_framework.views import APIView

from api.pagination import PageLimitPagination
from api.permissions import MANAGEMENT_AUTHENTICATION, IsTenantManager
from api.tenancy import TenantContextMixin


class ManagementApiView(TenantContextMixin, APIView):
    """The management API: a kf- token of the tenant, or its staff's admin session."""

    authentication_classes = MANAGEMENT_AUTHENTICATION
    permission_classes = [IsTenantManager]
    # For the schema: a GET answering a list (`responses=X(many=True)`) is documented with
    # the page envelope and page/limit parameters; its get() pages with PageLimitPagination.
    pagination_class = PageLimitPagination
