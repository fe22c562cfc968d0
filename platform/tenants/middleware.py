"""Route each request to its tenant's schema: by API token first, then by host."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.utils.deprecation import MiddlewareMixin

from api.errors import error_response
from tenants.selectors import api_token_get, tenant_get_by_host, token_looks_like_api_token

API_PATH_PREFIXES = ("/v1/", "/api/")


def bearer_token(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class TenantRoutingMiddleware(MiddlewareMixin):
    """Sets `request.tenant`, `request.api_token` and the URL conf for the request.

    - A bearer `app-…`/`kf-…` token decides the tenant on any host, so the same request
      gets the same answer wherever it is sent. An unknown or revoked token runs in the
      public schema with no tenant, and the API's authentication answers 401.
    - Otherwise the host decides: a platform host serves the operators' admin, a tenant's
      domain serves that tenant, anything else is a 404.
    - A suspended tenant answers 403 on its hosts and for its tokens; its data stays.
    """

    def process_request(self, request):
        connection.set_schema_to_public()
        request.tenant = None
        request.api_token = None

        token = bearer_token(request)
        if token is not None and token_looks_like_api_token(token):
            record = api_token_get(token=token)
            if record is not None:
                if not record.tenant.is_active:
                    return _suspended()
                request.api_token = record
                return self._enter_tenant(request, record.tenant)
            if request.path.startswith(API_PATH_PREFIXES):
                request.urlconf = settings.ROOT_URLCONF
                return None

        hostname = request.get_host().split(":")[0].lower()
        if hostname in settings.KEYFLOW_PLATFORM_HOSTS:
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            return None
        tenant = tenant_get_by_host(hostname=hostname)
        if tenant is None:
            return error_response(404, "not_found", f"No tenant is served at {hostname}.")
        if not tenant.is_active:
            return _suspended()
        return self._enter_tenant(request, tenant)

    def _enter_tenant(self, request, tenant):
        connection.set_tenant(tenant)
        request.tenant = tenant
        request.urlconf = settings.ROOT_URLCONF
        return None


def _suspended():
    return error_response(403, "tenant_suspended", "This tenant is suspended.")
