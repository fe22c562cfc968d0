"""Tenant admin for apps (graph JSON validated on save), their keys, runs and usage."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db import connection

from config.admin_sites import tenant_admin_site
from credentials.resolution import OverridePolicy, PolicyInvalid
from tenants.models import ApiToken
from tenants.services import api_token_revoke
from workflows.chat import compile_model_config
from workflows.errors import GraphInvalid
from workflows.models import (
    App,
    AppCredentialBinding,
    Conversation,
    Message,
    NodeExecution,
    WorkflowRun,
)
from workflows.services import app_delete, app_key_issue, app_webhook_secret_rotate, graph_check


class AppForm(forms.ModelForm):
    class Meta:
        model = App
        fields = ["name", "mode", "description", "enabled", "graph", "model_config"]
        widgets = {
            "graph": forms.Textarea(attrs={"rows": 24, "cols": 100, "style": "font-family: monospace"}),
            "model_config": forms.Textarea(attrs={"rows": 10, "cols": 100, "style": "font-family: monospace"}),
        }

    def clean(self):
        cleaned = super().clean()
        mode = cleaned.get("mode")
        try:
            if mode == App.Mode.WORKFLOW and "graph" in cleaned:
                graph_check(cleaned["graph"])
            elif mode in (App.Mode.CHAT, App.Mode.COMPLETION) and "model_config" in cleaned:
                cleaned["graph"] = compile_model_config(mode=mode, config=cleaned["model_config"])
        except GraphInvalid as exc:
            self.add_error("graph" if mode == App.Mode.WORKFLOW else "model_config", exc.message)
        return cleaned


class AppCredentialBindingInline(admin.TabularInline):
    model = AppCredentialBinding
    extra = 0
    autocomplete_fields = []
    verbose_name = "credential bound to this app"


@admin.register(App, site=tenant_admin_site)
class AppAdmin(admin.ModelAdmin):
    form = AppForm
    list_display = ["name", "mode", "enabled", "updated_at", "key_count"]
    list_filter = ["mode", "enabled"]
    search_fields = ["name"]
    inlines = [AppCredentialBindingInline]
    actions = ["issue_key", "rotate_webhook_secret"]
    readonly_fields = ["id", "keys"]
    exclude = ["webhook_secret", "deleted_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(deleted_at__isnull=True)

    def delete_model(self, request, obj):
        app_delete(tenant=request.tenant, app=obj)  # keeps its runs for usage reports

    def delete_queryset(self, request, queryset):
        for app in queryset:
            app_delete(tenant=request.tenant, app=app)

    @admin.action(description="Rotate the webhook secret (the new one is shown once)")
    def rotate_webhook_secret(self, request, queryset):
        for app in queryset:
            secret = app_webhook_secret_rotate(app=app)
            messages.warning(request, f"{app.name}: new webhook secret (shown once): {secret}")

    @admin.display(description="API keys")
    def key_count(self, obj):
        return ApiToken.objects.filter(app_id=obj.id, revoked_at__isnull=True).count()

    @admin.display(description="API keys (hint, policy, last used)")
    def keys(self, obj):
        from django.utils.html import format_html_join

        rows = ApiToken.objects.filter(app_id=obj.id, tenant=connection.tenant).order_by("-created_at")
        return format_html_join(
            "\n", "<div><code>{}…</code> {} · {} · last used {}{}</div>",
            ((t.hint, t.name or "", json.dumps(t.policy), t.last_used_at or "never",
              " · REVOKED" if t.revoked_at else "") for t in rows),
        ) or "—"

    @admin.action(description="Issue an API key (default policy: overrides allowed, no one-off keys)")
    def issue_key(self, request, queryset):
        for app in queryset:
            issued = app_key_issue(tenant=request.tenant, app=app, name=f"admin:{request.user.get_username()}")
            messages.warning(request, f"{app.name}: new API key (shown once, store it now): {issued.token}")


class AppKeyForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name", "policy"]

    def clean_policy(self):
        try:
            return OverridePolicy.from_dict(self.cleaned_data["policy"]).to_dict()
        except PolicyInvalid as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(ApiToken, site=tenant_admin_site)
class AppKeyAdmin(admin.ModelAdmin):
    """App keys of this tenant: policy visible and editable, token never shown again."""

    form = AppKeyForm

    list_display = ["hint", "name", "app_name", "created_at", "last_used_at", "revoked_at"]
    fields = ["hint", "name", "app_id", "policy", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["hint", "app_id", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_selected"]

    def get_queryset(self, request):
        return ApiToken.objects.filter(tenant=request.tenant, scope=ApiToken.Scope.APP)

    def has_add_permission(self, request):
        return False  # issued from the app list ("Issue an API key"), shown once

    @admin.display(description="App")
    def app_name(self, obj):
        app = App.objects.filter(pk=obj.app_id).first()
        return app.name if app else "(deleted app)"

    def save_model(self, request, obj, form, change):
        obj.save(update_fields=["name", "policy"])

    def delete_model(self, request, obj):
        api_token_revoke(token=obj)

    def delete_queryset(self, request, queryset):
        for token in queryset:
            api_token_revoke(token=token)

    @admin.action(description="Revoke selected keys")
    def revoke_selected(self, request, queryset):
        for token in queryset:
            api_token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


class NodeExecutionInline(admin.TabularInline):
    model = NodeExecution
    extra = 0
    can_delete = False
    fields = ["index", "node_id", "node_type", "status", "provider", "model", "credential_source",
              "credential_id", "total_tokens", "total_price", "elapsed_time", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WorkflowRun, site=tenant_admin_site)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = ["id", "app", "status", "response_mode", "end_user", "total_tokens",
                    "total_price", "elapsed_time", "created_at"]
    list_filter = ["status", "response_mode", "app"]
    search_fields = ["end_user", "id"]
    inlines = [NodeExecutionInline]
    exclude = ["graph"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in WorkflowRun._meta.fields if f.name != "graph"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["created_at", "query", "answer", "status", "credential_source", "credential_id",
              "total_tokens", "total_price"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Conversation, site=tenant_admin_site)
class ConversationAdmin(_ReadOnlyAdmin):
    list_display = ["name", "app", "end_user", "created_at", "updated_at"]
    list_filter = ["app"]
    search_fields = ["end_user", "name"]
    inlines = [MessageInline]


@admin.register(Message, site=tenant_admin_site)
class MessageAdmin(_ReadOnlyAdmin):
    list_display = ["created_at", "app", "end_user", "status", "provider", "model", "credential_source",
                    "credential_id", "total_tokens", "total_price", "latency"]
    list_filter = ["app", "status", "provider", "credential_source"]
    search_fields = ["end_user", "credential_id", "query"]
