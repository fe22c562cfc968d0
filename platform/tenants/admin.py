"""The platform operators' admin: create, suspend, resume and delete tenants."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from config.admin_sites import platform_admin_site, tenant_admin_site
from tenants.models import ApiToken, Domain, Tenant
from tenants.services import (
    TenantError,
    api_token_issue,
    api_token_revoke,
    tenant_delete,
    tenant_provision,
    tenant_provision_check,
    tenant_resume,
    tenant_suspend,
)


class TenantCreationForm(forms.ModelForm):
    admin_email = forms.EmailField(
        help_text="The tenant's first admin. A generated password is shown once after saving."
    )

    class Meta:
        model = Tenant
        fields = ["name", "slug"]

    def clean(self):
        cleaned = super().clean()
        try:
            tenant_provision_check(
                name=cleaned.get("name", ""),
                slug=cleaned.get("slug", ""),
                admin_email=cleaned.get("admin_email", ""),
            )
        except TenantError as exc:
            raise ValidationError({exc.field or "__all__": exc.message}) from None
        return cleaned



class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Tenant, site=platform_admin_site)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "schema_name", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "slug"]
    readonly_fields = ["schema_name", "status", "created_at", "suspended_at"]
    actions = ["suspend_selected", "resume_selected"]
    inlines = [DomainInline]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = TenantCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [*self.readonly_fields, "slug"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "slug", "admin_email"]
        return ["name", "slug", "schema_name", "status", "created_at", "suspended_at"]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        provisioned = tenant_provision(
            name=form.cleaned_data["name"],
            slug=form.cleaned_data["slug"],
            admin_email=form.cleaned_data["admin_email"],
        )
        form.instance = provisioned.tenant
        obj.pk = provisioned.tenant.pk
        messages.warning(
            request,
            f"Tenant {provisioned.tenant.slug} is ready at {provisioned.admin_url}. "
            f"Admin login: {provisioned.admin_email} / {provisioned.admin_password} "
            "(shown once; store it now).",
        )

    def delete_model(self, request, obj):
        # Django's delete confirmation page is the explicit confirmation.
        tenant_delete(tenant=obj, confirm=obj.slug)

    def delete_queryset(self, request, queryset):
        for tenant in queryset:
            tenant_delete(tenant=tenant, confirm=tenant.slug)

    @admin.action(description="Suspend selected tenants")
    def suspend_selected(self, request, queryset):
        for tenant in queryset:
            tenant_suspend(tenant=tenant)
        self.message_user(request, f"Suspended {queryset.count()} tenant(s).")

    @admin.action(description="Resume selected tenants")
    def resume_selected(self, request, queryset):
        for tenant in queryset:
            tenant_resume(tenant=tenant)
        self.message_user(request, f"Resumed {queryset.count()} tenant(s).")


@admin.register(ApiToken, site=platform_admin_site)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["hint", "tenant", "scope", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["scope", "tenant"]
    readonly_fields = [f.name for f in ApiToken._meta.fields if f.name != "token_hash"]
    exclude = ["token_hash"]

    def has_add_permission(self, request):
        return False


class ManagementTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name"]



class ManagementToken(ApiToken):
    class Meta:
        proxy = True
        verbose_name = "management API token"


@admin.register(ManagementToken, site=tenant_admin_site)
class ManagementTokenAdmin(admin.ModelAdmin):
    """A tenant's own kf- tokens: created here (shown once), revoked, never shown again."""

    form = ManagementTokenForm
    list_display = ["name", "hint", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_selected"]

    def get_queryset(self, request):
        return ApiToken.objects.filter(tenant=request.tenant, scope=ApiToken.Scope.MANAGEMENT)

    def get_readonly_fields(self, request, obj=None):
        return ["hint", "created_at", "last_used_at", "revoked_at"] if obj else []

    def has_change_permission(self, request, obj=None):
        return obj is None or super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        issued = api_token_issue(
            tenant=request.tenant, scope=ApiToken.Scope.MANAGEMENT, name=form.cleaned_data["name"]
        )
        obj.pk = issued.record.pk
        messages.warning(
            request, f"New management token (shown once, store it now): {issued.token}"
        )

    def delete_model(self, request, obj):
        api_token_revoke(token=obj)

    def delete_queryset(self, request, queryset):
        for token in queryset:
            api_token_revoke(token=token)

    @admin.action(description="Revoke selected tokens")
    def revoke_selected(self, request, queryset):
        for token in queryset:
            api_token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")
