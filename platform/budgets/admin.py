"""Tenant admin for budgets: limits, current spend with a bar toward the cap, an audited
reset action, and the read-only trail of events and alerts."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import connection
from django.utils.html import format_html, format_html_join

from api.errors import ApiError
from budgets.models import Budget, BudgetEvent
from budgets.selectors import budget_event_list, budget_spend_list
from budgets.services import (
    LIMIT_FIELDS,
    budget_create,
    budget_delete,
    budget_limits_check,
    budget_reset,
    budget_update,
)
from config.admin_sites import tenant_admin_site
from credentials.models import Credential
from tenants.models import ApiToken

BAR_COLOURS = {"ok": "#417690", "warning": "#b26b00", "exceeded": "#ba2121"}


def admin_actor(request) -> str:
    return f"admin:{request.user.get_username()}"


def spend_bar(spend) -> str:
    """An HTML bar toward the cap, coloured by state, with the percent beside it."""
    percent = spend.percent
    if percent is None:
        return format_html('<span title="{}">{} tokens this minute</span>', spend.state,
                           spend.tokens_this_minute)
    return format_html(
        '<span class="kf-spend" title="{}" style="display:inline-block;width:140px;height:10px;'
        'background:var(--hairline-color,#ddd);border-radius:3px;overflow:hidden;'
        'vertical-align:middle"><span style="display:block;height:100%;width:{}%;'
        'background:{}"></span></span> {}%',
        spend.state, f"{min(100.0, percent):.1f}", BAR_COLOURS[spend.state], f"{percent:.1f}",
    )


def _app_keys(tenant) -> list[tuple[str, str]]:
    keys = ApiToken.objects.filter(tenant=tenant, scope=ApiToken.Scope.APP, revoked_at__isnull=True)
    return [(str(key.id), f"{key.hint}… {key.name}".strip()) for key in keys.order_by("-created_at")]


class BudgetForm(forms.ModelForm):
    """One subject (a credential, or an app key's end users), then any of the limits."""

    app_key = forms.ChoiceField(
        required=False, label="App key (each end user)",
        help_text="Instead of a credential: the limits apply to each end user of this key.",
    )
    alert_webhook_url = forms.URLField(
        required=False, max_length=2048, assume_scheme="https",
        help_text="Alerts (threshold crossed, cap reached) are POSTed here, signed.",
    )

    class Meta:
        model = Budget
        fields = ["credential", *LIMIT_FIELDS]

    def __init__(self, *args, tenant=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        self.fields["app_key"].choices = [("", "—"), *(_app_keys(tenant) if tenant is not None else [])]
        self.fields["credential"].queryset = Credential.objects.filter(status=Credential.Status.ACTIVE)
        self.fields["credential"].required = False
        if not self.instance._state.adding:
            self.fields["credential"].disabled = True
            self.fields["app_key"].disabled = True
            self.fields["app_key"].initial = str(self.instance.app_key_id or "")

    def _post_clean(self):
        # The services check everything (and the model's constraints cannot see the app key
        # chosen here); skip the model's own validation.
        pass

    def limits(self) -> dict:
        values = {name: self.cleaned_data.get(name) for name in LIMIT_FIELDS}
        values["period"] = values["period"] or Budget.Period.MONTH
        values["alert_webhook_url"] = values["alert_webhook_url"] or ""
        return values

    def clean(self):
        cleaned = super().clean()
        if self.instance._state.adding and bool(cleaned.get("credential")) == bool(cleaned.get("app_key")):
            raise forms.ValidationError("Choose a credential or an app key (exactly one).")
        limits = self.limits()
        changed_url = self.instance._state.adding or limits["alert_webhook_url"] != self.instance.alert_webhook_url
        try:
            budget_limits_check(**limits, check_webhook=changed_url)
        except ApiError as exc:
            raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.register(Budget, site=tenant_admin_site)
class BudgetAdmin(admin.ModelAdmin):
    form = BudgetForm
    list_display = ["subject", "period", "limits", "current_spend", "updated_at"]
    list_filter = ["scope", "period"]
    actions = ["reset_selected"]
    list_select_related = ["credential"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        tenant = getattr(request, "tenant", None) or getattr(connection, "tenant", None)

        class BoundForm(form_class):
            def __init__(self, *args, **inner):
                super().__init__(*args, tenant=tenant, **inner)

        return BoundForm

    def get_fieldsets(self, request, obj=None):
        sets = [
            ("Who", {"fields": ["credential", "app_key"]}),
            ("Budget per period", {"fields": ["period", "token_budget", "cost_budget",
                                               "soft_threshold_percent", "alert_webhook_url"]}),
            ("Rate limits", {"fields": ["requests_per_minute", "tokens_per_minute"]}),
        ]
        if obj is not None:
            sets.append(("Now", {"fields": ["spend_table", "reset_at", "audit_trail"]}))
        return sets

    def get_readonly_fields(self, request, obj=None):
        return ["spend_table", "reset_at", "audit_trail"] if obj is not None else []

    @admin.display(description="Applies to")
    def subject(self, obj):
        if obj.credential_id:
            return f"Credential {obj.credential}" if obj.credential else f"Credential {obj.credential_id}"
        return f"Each end user of app key {obj.app_key_id}"

    @admin.display(description="Limits")
    def limits(self, obj):
        parts = []
        if obj.token_budget is not None:
            parts.append(f"{obj.token_budget} tokens")
        if obj.cost_budget is not None:
            parts.append(f"{obj.cost_budget.normalize():f} USD")
        if obj.requests_per_minute is not None:
            parts.append(f"{obj.requests_per_minute} req/min")
        if obj.tokens_per_minute is not None:
            parts.append(f"{obj.tokens_per_minute} tokens/min")
        return ", ".join(parts)

    @admin.display(description="Spend this period")
    def current_spend(self, obj):
        rows = budget_spend_list(budget=obj, limit=1)
        if not rows:
            return "—"
        bar = spend_bar(rows[0])
        if obj.scope == Budget.Scope.END_USER:
            return format_html("{}: {}", rows[0].user, bar)
        return bar

    @admin.display(description="Current spend")
    def spend_table(self, obj):
        rows = budget_spend_list(budget=obj)
        if not rows:
            return "No spend in this period."
        return format_html(
            "<table><tr><th>End user</th><th>Tokens</th><th>Cost (USD)</th><th>Toward the cap</th>"
            "<th>Since</th><th>Resets</th></tr>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
                (row.user or "—", f"{row.tokens_used} / {row.token_budget or '∞'}",
                 f"{row.cost_used.normalize():f} / {row.cost_budget if row.cost_budget is not None else '∞'}",
                 spend_bar(row), f"{row.window.start:%Y-%m-%d %H:%M} UTC",
                 f"{row.window.end:%Y-%m-%d %H:%M} UTC" if row.window.end else "manually")
                for row in rows
            )),
        )

    @admin.display(description="Audit trail")
    def audit_trail(self, obj):
        events = budget_event_list(budget_id=obj.id)[:20]
        if not events:
            return "—"
        return format_html_join(
            "", "{}<br>",
            ((f"{e.at:%Y-%m-%d %H:%M:%S} · {e.kind}{' · ' + e.subject if e.subject else ''} · "
              f"{e.actor or 'system'}",) for e in events),
        )

    def save_model(self, request, obj, form, change):
        actor = admin_actor(request)
        try:
            if change:
                budget_update(budget=Budget.objects.get(pk=obj.pk), actor=actor, **form.limits())
            else:
                app_key = None
                if form.cleaned_data.get("app_key"):
                    app_key = ApiToken.objects.get(pk=form.cleaned_data["app_key"])
                created = budget_create(credential=form.cleaned_data.get("credential"), app_key=app_key,
                                        actor=actor, **form.limits())
                for field in Budget._meta.concrete_fields:  # the admin's messages and log name it
                    setattr(obj, field.attname, getattr(created, field.attname))
                form.instance = created
        except ApiError as exc:  # a race the form could not see (e.g. a budget just added)
            messages.error(request, exc.message)

    def delete_model(self, request, obj):
        budget_delete(budget=obj, actor=admin_actor(request))

    def delete_queryset(self, request, queryset):
        for budget in queryset:
            budget_delete(budget=budget, actor=admin_actor(request))

    @admin.action(description="Reset spend now (audited)")
    def reset_selected(self, request, queryset):
        for budget in queryset:
            budget_reset(budget=budget, actor=admin_actor(request))
        self.message_user(request, f"Reset {queryset.count()} budget(s): spend counts from now.")


@admin.register(BudgetEvent, site=tenant_admin_site)
class BudgetEventAdmin(admin.ModelAdmin):
    list_display = ["at", "kind", "budget_id", "subject", "period_key", "actor", "delivery_status"]
    list_filter = ["kind", "delivery_status"]
    search_fields = ["subject", "actor"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
