"""URLs of a tenant's hosts: its own admin and the APIs."""

from django.urls import path

from config.admin_sites import tenant_admin_site
from config.urls_api import urlpatterns as api_urlpatterns

urlpatterns = [
    path("admin/", tenant_admin_site.urls),
    *api_urlpatterns,
]
