"""URLs of the platform hosts: the operators' admin, plus the token-routed APIs."""

from django.urls import path

from config.admin_sites import platform_admin_site
from config.urls_api import urlpatterns as api_urlpatterns

urlpatterns = [
    path("admin/", platform_admin_site.urls),
    *api_urlpatterns,
]
