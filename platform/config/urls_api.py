"""The Service API (/v1) and management API (/api), the same on every host."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from tenants.apis import TenantDetailApi

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/tenant", TenantDetailApi.as_view(), name="api-tenant"),
]
