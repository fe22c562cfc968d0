"""Two admin sites: the platform operators' (public schema) and each tenant's own."""

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User


class PlatformAdminSite(admin.AdminSite):
    site_header = "Keyflow platform"
    site_title = "Keyflow platform"
    index_title = "Tenants and operators"


class TenantAdminSite(admin.AdminSite):
    site_header = "Keyflow"
    site_title = "Keyflow"
    index_title = "Workspace administration"

    def each_context(self, request):
        context = super().each_context(request)
        tenant = getattr(request, "tenant", None)
        if tenant is not None:
            context["site_header"] = f"Keyflow · {tenant.name}"
        return context


platform_admin_site = PlatformAdminSite(name="platform_admin")
tenant_admin_site = TenantAdminSite(name="admin")

for site in (platform_admin_site, tenant_admin_site):
    site.register(User, UserAdmin)
    site.register(Group, GroupAdmin)
