"""URLs of a tenant's hosts: its own admin and the APIs."""

from django.urls import path

from config.admin_sites import tenant_admin_site
from config.urls_api import urlpatterns as api_urlpatterns

urlpatterns = [
    path("admin/", tenant_admin_site.urls),
    *api_urlpatterns,
]

# Dify's JSON error body on /v1/ and /api/, Django's HTML pages elsewhere (the admin).
handler400 = "api.error_views.bad_request"
handler403 = "api.error_views.permission_denied"
handler404 = "api.error_views.page_not_found"
handler500 = "api.error_views.server_error"
