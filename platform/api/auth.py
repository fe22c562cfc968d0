"""Authentication of API clients by the tokens in the public index (app-…, kf-…)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from tenants.models import ApiToken

# last_used_at is informative; writing it on every request would cost a write per call.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class ApiClient:
    """The authenticated principal of a token-authenticated request."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __init__(self, token: ApiToken) -> None:
        self.token = token
        self.tenant = token.tenant

    def __str__(self) -> str:
        return f"token {self.token.hint}…"


def token_touch(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


class _ScopedTokenAuthentication(BaseAuthentication):
    scope: str = ""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        record: ApiToken | None = getattr(request._request, "api_token", None)
        if record is None or record.scope != self.scope:
            raise AuthenticationFailed("Access token is invalid.")
        token_touch(record)
        return ApiClient(record), record

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ManagementTokenAuthentication(_ScopedTokenAuthentication):
    """`Authorization: Bearer kf-…`: a tenant's management API."""

    scope = ApiToken.Scope.MANAGEMENT


class AppTokenAuthentication(_ScopedTokenAuthentication):
    """`Authorization: Bearer app-…`: one app's Service API."""

    scope = ApiToken.Scope.APP


class IsAppClient(BasePermission):
    message = "An app API key (app-…) is required."

    def has_permission(self, request, view):
        user = request.user
        return isinstance(user, ApiClient) and user.token.scope == ApiToken.Scope.APP
