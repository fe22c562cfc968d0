"""Writes on budgets: create, update, delete and reset, each audited as a BudgetEvent and
each refreshing the enforcement index in Redis."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from budgets import counters
from budgets.errors import (
    BudgetAppKeyRevoked,
    BudgetCredentialDisabled,
    BudgetExists,
    BudgetInvalid,
    BudgetsUnavailable,
)
from budgets.models import COST_DECIMALS, COST_DIGITS, Budget, BudgetEvent
from budgets.periods import PERIODS
from credentials.models import Credential
from tenants.models import ApiToken

LIMIT_FIELDS = (
    "token_budget", "cost_budget", "period", "soft_threshold_percent",
    "requests_per_minute", "tokens_per_minute", "alert_webhook_url",
)
MAX_BIG = 2**63 - 1
MAX_INT = 2**31 - 1
MAX_COST = Decimal(10) ** (COST_DIGITS - COST_DECIMALS) - Decimal(10) ** -COST_DECIMALS


def budget_index_changed(*, schema: str) -> None:
    """Readers of the enforcement index load it again: now, and after the change commits
    (an index loaded in between, from the old rows, is then never read). Without Redis the
    change is refused (503): enforcement would not see it."""
    try:
        counters.index_invalidate(schema)
    except counters.UNAVAILABLE:
        raise BudgetsUnavailable() from None
    transaction.on_commit(lambda: counters.index_invalidate(schema), robust=True)


def _positive_int(errors: dict, name: str, value, maximum: int):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = "must be a whole number."
    elif value <= 0:
        errors[name] = "must be greater than 0 (leave it out for no limit)."
    elif value > maximum:
        errors[name] = f"must be at most {maximum}."
    return value


def _cost(errors: dict, value):
    if value is None:
        return None
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        errors["cost_budget"] = "must be a number."
        return None
    if isinstance(value, bool) or not amount.is_finite():
        errors["cost_budget"] = "must be a number."
    elif amount <= 0:
        errors["cost_budget"] = "must be greater than 0 (leave it out for no limit)."
    elif amount > MAX_COST:
        errors["cost_budget"] = f"must be at most {MAX_COST}."
    elif amount.as_tuple().exponent < -COST_DECIMALS:
        errors["cost_budget"] = f"may have at most {COST_DECIMALS} decimal places."
    return amount


def budget_limits_check(*, token_budget=None, cost_budget=None, period: str = Budget.Period.MONTH,
                        soft_threshold_percent=None, requests_per_minute=None, tokens_per_minute=None,
                        alert_webhook_url: str = "", check_webhook: bool = True) -> dict:
    """The limits cleaned, or BudgetInvalid naming every field that is wrong. The webhook
    URL is resolved and checked (InvalidCallbackUrl) when `check_webhook`."""
    errors: dict[str, str] = {}
    values = {
        "token_budget": _positive_int(errors, "token_budget", token_budget, MAX_BIG),
        "cost_budget": _cost(errors, cost_budget),
        "requests_per_minute": _positive_int(errors, "requests_per_minute", requests_per_minute, MAX_INT),
        "tokens_per_minute": _positive_int(errors, "tokens_per_minute", tokens_per_minute, MAX_INT),
        "period": period,
        "soft_threshold_percent": soft_threshold_percent,
        "alert_webhook_url": alert_webhook_url or "",
    }
    if period not in PERIODS:
        errors["period"] = f"must be one of {', '.join(PERIODS)}."
    if soft_threshold_percent is not None:
        if isinstance(soft_threshold_percent, bool) or not isinstance(soft_threshold_percent, int):
            errors["soft_threshold_percent"] = "must be a whole number."
        elif not 1 <= soft_threshold_percent <= 100:
            errors["soft_threshold_percent"] = "must be between 1 and 100."
    has_cap = token_budget is not None or cost_budget is not None
    if soft_threshold_percent is not None and not has_cap and "soft_threshold_percent" not in errors:
        errors["soft_threshold_percent"] = "needs a token_budget or a cost_budget to be a percent of."
    if values["alert_webhook_url"] and not has_cap:
        errors["alert_webhook_url"] = "needs a token_budget or a cost_budget to alert on."
    if all(values[name] is None for name in ("token_budget", "cost_budget", "requests_per_minute",
                                               "tokens_per_minute")):
        errors["limits"] = ("set at least one of token_budget, cost_budget, requests_per_minute, "
                            "tokens_per_minute.")
    if errors:
        raise BudgetInvalid("; ".join(f"{name}: {text}" for name, text in errors.items()))
    if values["alert_webhook_url"] and check_webhook:
        from webhooks.services import callback_url_check

        callback_url_check(values["alert_webhook_url"])
    return values


def _check_credential(credential: Credential) -> None:
    if not credential.is_active:
        raise BudgetCredentialDisabled(
            f"Credential {credential.id} is disabled: enable it before setting its budget."
        )


def _check_app_key(app_key: ApiToken) -> None:
    if app_key.scope != ApiToken.Scope.APP:
        raise BudgetInvalid("app_key_id: only app keys (app-…) have end-user budgets.")
    tenant = getattr(connection, "tenant", None)
    if tenant is not None and getattr(tenant, "pk", None) != app_key.tenant_id:
        raise BudgetInvalid("app_key_id: not a key of this workspace.")
    if app_key.is_revoked:
        raise BudgetAppKeyRevoked(f"App key {app_key.id} is revoked.")


def _audit(budget: Budget, kind: str, actor: str, **details) -> BudgetEvent:
    return BudgetEvent.objects.create(budget_id=budget.id, kind=kind, actor=actor, details=details)


def _subject(budget: Budget) -> dict:
    if budget.credential_id:
        return {"credential_id": str(budget.credential_id)}
    return {"app_key_id": str(budget.app_key_id)}


def _limits(budget: Budget) -> dict:
    return {
        name: (str(value) if isinstance(value, Decimal) else value)
        for name in LIMIT_FIELDS if (value := getattr(budget, name)) not in (None, "")
    }


@transaction.atomic
def budget_create(*, credential: Credential | None = None, app_key: ApiToken | None = None,
                  token_budget: int | None = None, cost_budget: Decimal | None = None,
                  period: str = Budget.Period.MONTH, soft_threshold_percent: int | None = None,
                  requests_per_minute: int | None = None, tokens_per_minute: int | None = None,
                  alert_webhook_url: str = "", actor: str = "") -> Budget:
    """Set the budget of a credential, or of each end user of an app key (one each)."""
    if (credential is None) == (app_key is None):
        raise BudgetInvalid("Give either credential_id or app_key_id (exactly one).")
    values = budget_limits_check(
        token_budget=token_budget, cost_budget=cost_budget, period=period,
        soft_threshold_percent=soft_threshold_percent, requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute, alert_webhook_url=alert_webhook_url,
    )
    if credential is not None:
        _check_credential(credential)
        subject = {"scope": Budget.Scope.CREDENTIAL, "credential": credential}
        existing = Budget.objects.filter(credential=credential).first()
        what = f"Credential {credential.id}"
    else:
        _check_app_key(app_key)
        subject = {"scope": Budget.Scope.END_USER, "app_key_id": app_key.id}
        existing = Budget.objects.filter(app_key_id=app_key.id).first()
        what = f"App key {app_key.id}"
    if existing is not None:
        raise BudgetExists(f"{what} already has budget {existing.id}; update that one.")
    try:
        with transaction.atomic():
            budget = Budget.objects.create(**subject, **values, created_by=actor, updated_by=actor)
    except IntegrityError:
        raise BudgetExists(f"{what} already has a budget; update that one.") from None
    _audit(budget, BudgetEvent.Kind.CREATED, actor, **_subject(budget), **_limits(budget))
    budget_index_changed(schema=connection.schema_name)
    return budget


@transaction.atomic
def budget_update(*, budget: Budget, actor: str = "", **changes) -> Budget:
    """Change limits (None clears one); the budget must still hold at least one."""
    unknown = set(changes) - set(LIMIT_FIELDS)
    if unknown:
        raise TypeError(f"budget_update: unknown field(s) {', '.join(sorted(unknown))}")
    current = {name: getattr(budget, name) for name in LIMIT_FIELDS}
    merged = {**current, **changes}
    if merged["alert_webhook_url"] is None:
        merged["alert_webhook_url"] = ""
    if merged["period"] is None:
        raise BudgetInvalid(f"period: must be one of {', '.join(PERIODS)}.")
    # An unchanged webhook URL is not resolved again (its host may be down just now).
    values = budget_limits_check(**merged, check_webhook=merged["alert_webhook_url"] != current["alert_webhook_url"])
    if budget.credential_id:
        _check_credential(budget.credential)
    changed = {
        name: [_plain(current[name]), _plain(values[name])]
        for name in LIMIT_FIELDS if current[name] != values[name]
    }
    if not changed:
        return budget
    for name, value in values.items():
        setattr(budget, name, value)
    budget.updated_by = actor
    budget.save()
    _audit(budget, BudgetEvent.Kind.UPDATED, actor, changed=changed)
    budget_index_changed(schema=connection.schema_name)
    return budget


def _plain(value):
    return str(value) if isinstance(value, Decimal) else value


@transaction.atomic
def budget_delete(*, budget: Budget, actor: str = "") -> None:
    _audit(budget, BudgetEvent.Kind.DELETED, actor, **_subject(budget), **_limits(budget))
    budget.delete()
    budget_index_changed(schema=connection.schema_name)


@transaction.atomic
def budget_reset(*, budget: Budget, actor: str = "", now: datetime | None = None) -> Budget:
    """Start counting again from now (for an end-user budget, for every end user). The
    period's own reset still happens at its start; alerts can fire again in the new window."""
    from budgets.selectors import budget_spend_get

    now = now or timezone.now()
    details: dict = {"period": budget.period}
    if budget.has_spend_cap and budget.scope == Budget.Scope.CREDENTIAL:
        spend = budget_spend_get(budget=budget, now=now)
        details.update(window_before=spend.window.key, tokens_used=spend.tokens_used,
                       cost_used=str(spend.cost_used))
    budget.reset_at = now
    budget.updated_by = actor
    budget.save(update_fields=["reset_at", "updated_by", "updated_at"])
    _audit(budget, BudgetEvent.Kind.MANUAL_RESET, actor, **_subject(budget), **details)
    budget_index_changed(schema=connection.schema_name)
    return budget
