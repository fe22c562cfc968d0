"""Tenant admin for credentials: secrets are write-only password inputs, never rendered."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from config.admin_sites import tenant_admin_site
from credentials.errors import CredentialInvalid
from credentials.models import Credential, CredentialEvent
from credentials.providers.base import ProviderConfigError
from credentials.providers.registry import UnknownProvider, provider_registry
from credentials.services import (
    credential_create,
    credential_delete,
    credential_disable,
    credential_enable,
    credential_secrets,
    credential_set_default,
    credential_update,
    credential_validate,
)

SECRET_PREFIX = "secret__"  # noqa: S105 - a form field prefix
CONFIG_PREFIX = "config__"


def admin_actor(request) -> str:
    return f"admin:{request.user.get_username()}"


class CredentialForm(forms.ModelForm):
    """Adapts to the provider: its secret fields (write-only) and config fields."""

    provider = forms.ChoiceField(
        choices=(),
        help_text="Changing the provider reloads the form with that provider's fields.",
        widget=forms.Select(attrs={"onchange": "window.location.search='?provider='+this.value"}),
    )

    class Meta:
        model = Credential
        fields = ["name", "provider", "owner", "is_default"]

    def __init__(self, *args, provider_id: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        registry = provider_registry()
        self.fields["provider"].choices = [(p.id, p.display_name) for p in registry.all()]
        editing = not self.instance._state.adding
        provider_id = self.instance.provider if editing else (provider_id or registry.ids()[0])
        try:
            self.plugin = registry.get(provider_id)
        except UnknownProvider:
            self.plugin = registry.all()[0]
        self.fields["provider"].initial = self.plugin.id
        if editing:
            self.fields["provider"].disabled = True
            self.fields.pop("is_default", None)  # switching defaults is an action, audited
        for spec in self.plugin.secret_fields:
            help_text = spec.help_text
            if editing:
                help_text = f"Leave empty to keep the stored value. {help_text}".strip()
            self.fields[SECRET_PREFIX + spec.name] = forms.CharField(
                label=spec.label,
                required=spec.required and not editing,
                max_length=spec.max_length,
                help_text=help_text,
                strip=True,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            )
        for spec in self.plugin.config_fields:
            self.fields[CONFIG_PREFIX + spec.name] = forms.CharField(
                label=spec.label,
                required=spec.required,
                max_length=spec.max_length,
                help_text=spec.help_text,
                initial=(self.instance.config or {}).get(spec.name, "") if editing else "",
            )

    def secrets_input(self) -> dict[str, str]:
        return {
            spec.name: self.cleaned_data.get(SECRET_PREFIX + spec.name) or ""
            for spec in self.plugin.secret_fields
        }

    def config_input(self) -> dict[str, str]:
        return {
            spec.name: value
            for spec in self.plugin.config_fields
            if (value := self.cleaned_data.get(CONFIG_PREFIX + spec.name))
        }

    def clean(self):
        cleaned = super().clean()
        secrets = {k: v for k, v in self.secrets_input().items() if v}
        if not self.instance._state.adding:
            secrets = {**credential_secrets(self.instance), **secrets}
        try:
            self.plugin.clean(secrets, self.config_input())
        except ProviderConfigError as exc:
            for field, message in exc.errors.items():
                name = next(
                    (prefix + field for prefix in (SECRET_PREFIX, CONFIG_PREFIX)
                     if prefix + field in self.fields),
                    None,
                )
                self.add_error(name, message)
        if cleaned.get("is_default") and cleaned.get("owner"):
            self.add_error("is_default", "A credential owned by an end user cannot be a default.")
        if cleaned.get("is_default") and Credential.objects.filter(
            provider=self.plugin.id, is_default=True, status=Credential.Status.ACTIVE
        ).exists():
            self.add_error(
                "is_default",
                "This provider already has a default; save, then use “Set as default”.",
            )
        return cleaned




@admin.register(Credential, site=tenant_admin_site)
class CredentialAdmin(admin.ModelAdmin):
    form = CredentialForm
    list_display = [
        "name", "provider", "masked_key", "is_default", "owner", "status",
        "validation_badge", "last_used_at",
    ]
    list_filter = ["provider", "status", "is_default", "validation_status", "owner"]
    search_fields = ["name"]
    actions = ["validate_selected", "set_default", "disable_selected", "enable_selected"]
    readonly_fields = [
        "id", "masked_key", "fingerprint_short", "version", "status", "is_default",
        "validation_status", "validation_message", "validated_at", "last_used_at",
        "created_by", "created_at", "updated_by", "updated_at", "audit_trail",
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The form declares its own fields (they depend on the provider), not the fieldsets.
        kwargs.pop("fields", None)
        form_class = super().get_form(request, obj, change=change, fields=None, **kwargs)
        provider_id = request.GET.get("provider") or request.POST.get("provider")

        class BoundForm(form_class):
            def __init__(self, *args, **inner):
                super().__init__(*args, provider_id=provider_id, **inner)

        return BoundForm

    def get_fieldsets(self, request, obj=None):
        form = self.get_form(request, obj)(instance=obj)
        secret_names = [n for n in form.fields if n.startswith(SECRET_PREFIX)]
        config_names = [n for n in form.fields if n.startswith(CONFIG_PREFIX)]
        main = ["name", "provider", "owner"] + ([] if obj else ["is_default"])
        sets = [
            (None, {"fields": main}),
            ("Secret (write-only)", {"fields": secret_names}),
            ("Provider settings", {"fields": config_names}),
        ]
        if obj is not None:
            sets.append(("State", {"fields": self.readonly_fields}))
        return sets

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    @admin.display(description="Key")
    def masked_key(self, obj):
        return obj.masked if obj.hint else "…"

    @admin.display(description="Fingerprint")
    def fingerprint_short(self, obj):
        return obj.fingerprint[:16]

    @admin.display(description="Validation")
    def validation_badge(self, obj):
        colour = {"valid": "green", "invalid": "#ba2121", "error": "#b26b00"}.get(
            obj.validation_status, "#666"
        )
        return format_html('<span style="color:{}">{}</span>', colour, obj.get_validation_status_display())

    @admin.display(description="Audit trail")
    def audit_trail(self, obj):
        events = CredentialEvent.objects.filter(credential_id=obj.id)[:20]
        return format_html(
            "<br>".join(["{}"] * len(events)) or "—",
            *[f"{e.at:%Y-%m-%d %H:%M:%S} · {e.action} · {e.actor or 'system'}" for e in events],
        )

    def save_model(self, request, obj, form, change):
        actor = admin_actor(request)
        try:
            if change:
                credential_update(
                    credential=obj, actor=actor, name=form.cleaned_data["name"],
                    owner=form.cleaned_data.get("owner", ""),
                    secrets=form.secrets_input(), config=form.config_input(),
                )
            else:
                created = credential_create(
                    provider=form.plugin.id, name=form.cleaned_data["name"],
                    secrets=form.secrets_input(), config=form.config_input(),
                    is_default=form.cleaned_data.get("is_default", False),
                    owner=form.cleaned_data.get("owner", ""), actor=actor,
                )
                obj.pk = created.pk
                form.instance = created
        except CredentialInvalid as exc:  # a race the form could not see (e.g. a new default)
            messages.error(request, exc.message)

    def delete_model(self, request, obj):
        credential_delete(credential=obj, actor=admin_actor(request))

    def delete_queryset(self, request, queryset):
        for credential in queryset:
            credential_delete(credential=credential, actor=admin_actor(request))

    @admin.action(description="Validate with the provider")
    def validate_selected(self, request, queryset):
        for credential in queryset:
            result = credential_validate(credential=credential, actor=admin_actor(request))
            level = messages.SUCCESS if result.ok else messages.ERROR
            verdict = "valid" if result.ok else "failed"
            self.message_user(request, f"{credential.name}: {verdict}. {result.message}", level)

    @admin.action(description="Set as default for its provider")
    def set_default(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one credential.", messages.ERROR)
            return
        credential = queryset.get()
        try:
            credential_set_default(credential=credential, actor=admin_actor(request))
        except CredentialInvalid as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"{credential.name} is now the default for {credential.provider}.")

    @admin.action(description="Disable")
    def disable_selected(self, request, queryset):
        for credential in queryset:
            credential_disable(credential=credential, actor=admin_actor(request))
        self.message_user(request, f"Disabled {queryset.count()} credential(s).")

    @admin.action(description="Enable")
    def enable_selected(self, request, queryset):
        for credential in queryset:
            credential_enable(credential=credential, actor=admin_actor(request))
        self.message_user(request, f"Enabled {queryset.count()} credential(s).")


@admin.register(CredentialEvent, site=tenant_admin_site)
class CredentialEventAdmin(admin.ModelAdmin):
    list_display = ["at", "action", "credential_name", "credential_id", "actor"]
    list_filter = ["action"]
    search_fields = ["credential_name", "actor"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
