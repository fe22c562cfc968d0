"""Tenant admin: webhook deliveries, read-only (they are written by the workers only)."""

from __future__ import annotations

from django.contrib import admin

from config.admin_sites import tenant_admin_site
from webhooks.models import WebhookDelivery


@admin.register(WebhookDelivery, site=tenant_admin_site)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["run", "url_host", "status", "attempts", "last_status_code", "created_at"]
    list_filter = ["status", "last_status_code", "created_at"]
    list_select_related = ["run"]
    date_hierarchy = "created_at"
    fields = ["id", "run", "url", "status", "attempts", "last_status_code", "history", "body",
              "created_at", "delivered_at", "next_attempt_at"]
    readonly_fields = fields

    @admin.display(description="Host")
    def url_host(self, obj):
        return obj.url_host

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
