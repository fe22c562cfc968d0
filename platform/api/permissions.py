"""Who may call the management API: a kf- token of the tenant, or its staff's admin session."""

from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission

from api.auth import ApiClient, ManagementTokenAuthentication


class IsTenantManager(BasePermission):
    message = "A management token (kf-…) or a tenant admin session is required."

    def has_permission(self, request, view):
        user = request.user
        if getattr(request, "tenant", None) is None or user is None:
            return False
        if isinstance(user, ApiClient):
            return user.tenant.pk == request.tenant.pk
        return bool(user.is_authenticated and user.is_staff)


MANAGEMENT_AUTHENTICATION = [ManagementTokenAuthentication, SessionAuthentication]


def request_actor(request) -> str:
    """How audit records name whoever made this request."""
    user = request.user
    if isinstance(user, ApiClient):
        return f"token:{user.token.hint}"
    return f"admin:{user.get_username()}"
