"""Two admin sites: the platform operators' (public schema) and each tenant's own."""

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.template.response import TemplateResponse
from django.urls import path, reverse

from workflows.usage import usage_report


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

    def get_urls(self):
        return [path("usage/", self.admin_view(self.usage_view), name="keyflow_usage"), *super().get_urls()]

    def get_app_list(self, request, app_label=None):
        """The usage page is listed with the workflows models, on the index and in the sidebar
        (django-tenants' index shows only sections named after a tenant app)."""
        app_list = super().get_app_list(request, app_label)
        if app_label not in (None, "workflows"):
            return app_list
        url = reverse("admin:keyflow_usage", current_app=self.name)
        section = next((app for app in app_list if app["app_label"] == "workflows"), None)
        if section is None:
            section = {"name": "Workflows", "app_label": "workflows", "app_url": url,
                       "has_module_perms": True, "models": []}
            app_list.append(section)
        section["models"].append({
            "name": "Usage report", "object_name": "UsageReport", "admin_url": url, "add_url": None,
            "view_only": True, "perms": {"view": True},
        })
        return app_list

    def usage_view(self, request):
        """Tokens and cost of the last 30 days by credential, end user, app and day."""
        context = {**self.each_context(request), "title": "Usage", **usage_report()}
        return TemplateResponse(request, "admin/keyflow_usage.html", context)


platform_admin_site = PlatformAdminSite(name="platform_admin")
tenant_admin_site = TenantAdminSite(name="admin")

for site in (platform_admin_site, tenant_admin_site):
    site.register(User, UserAdmin)
    site.register(Group, GroupAdmin)
