"""Reads on budgets (current tenant's schema): lookups, the enforcement index, and spend."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import QuerySet, Sum
from django.utils import timezone

from budgets import counters
from budgets.errors import BudgetNotFound
from budgets.models import Budget, BudgetEvent
from budgets.periods import Window
from budgets.rules import BudgetRule, cost_from_units, cost_units
from tenants.models import ApiToken
from workflows.errors import AppKeyNotFound
from workflows.models import NodeExecution
from workflows.pricing import CURRENCY
from workflows.usage import LLM_NODE_TYPE


def _uuid_or_none(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def budget_list(*, scope: str | None = None, credential_id=None, app_key_id=None) -> QuerySet[Budget]:
    queryset = Budget.objects.select_related("credential")
    if scope:
        queryset = queryset.filter(scope=scope)
    if credential_id is not None:
        queryset = queryset.filter(credential_id=credential_id)
    if app_key_id is not None:
        queryset = queryset.filter(app_key_id=app_key_id)
    return queryset.order_by("-created_at", "id")


def budget_get(*, budget_id) -> Budget:
    """A budget of the current tenant; malformed, foreign and missing ids are the same 404."""
    key = _uuid_or_none(budget_id)
    budget = Budget.objects.select_related("credential").filter(pk=key).first() if key else None
    if budget is None:
        raise BudgetNotFound()
    return budget


def budget_app_key_get(*, tenant, app_key_id) -> ApiToken:
    """An app key of `tenant`; another tenant's, a management key or a missing one is the
    same AppKeyNotFound."""
    key = _uuid_or_none(app_key_id)
    token = (
        ApiToken.objects.filter(pk=key, tenant=tenant, scope=ApiToken.Scope.APP).first() if key else None
    )
    if token is None:
        raise AppKeyNotFound()
    return token


def budget_event_list(*, budget_id) -> QuerySet[BudgetEvent]:
    return BudgetEvent.objects.filter(budget_id=budget_id).order_by("-at", "-id")


# --- the enforcement index -------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    by_credential: dict[str, BudgetRule]
    by_app_key: dict[str, BudgetRule]

    def __bool__(self) -> bool:
        return bool(self.by_credential or self.by_app_key)


def budget_rules(*, credential_ids=(), app_key_id=None) -> Rules:
    """The budgets of these credentials and this app key, from the tenant's index in Redis:
    one round trip, and no SQL query unless the index must be loaded again."""
    schema = connection.schema_name
    credential_ids = [str(c) for c in credential_ids if c]
    fields = [counters.credential_field(c) for c in credential_ids]
    if app_key_id:
        fields.append(counters.app_key_field(app_key_id))
    if not fields:
        return Rules({}, {})
    generation, found = counters.index_read(schema, fields)
    if found is None:
        entries = {_index_field(budget): BudgetRule.of(budget).to_json() for budget in Budget.objects.all()}
        counters.index_write(schema, generation, entries)
        found = {name: entries[name] for name in fields if name in entries}
    rules = {name: BudgetRule.from_json(value) for name, value in found.items()}
    return Rules(
        by_credential={c: rules[f] for c in credential_ids if (f := counters.credential_field(c)) in rules},
        by_app_key={str(app_key_id): rules[f] for f in [counters.app_key_field(app_key_id)] if f in rules}
        if app_key_id else {},
    )


def _index_field(budget: Budget) -> str:
    if budget.credential_id:
        return counters.credential_field(budget.credential_id)
    return counters.app_key_field(budget.app_key_id)


# --- spend -----------------------------------------------------------------------------------


def spend_from_steps(*, rule: BudgetRule, subject: str, window: Window,
                     exclude_execution_id=None) -> tuple[int, Decimal]:
    """Tokens and cost of the LLM steps counted toward this budget (for an end-user budget,
    of `subject`) in the window: the sums usage reports make over the same steps."""
    steps = NodeExecution.objects.filter(node_type=LLM_NODE_TYPE, run__created_at__gte=window.start)
    if window.end is not None:
        steps = steps.filter(run__created_at__lt=window.end)
    if rule.credential_id:
        steps = steps.filter(credential_id=rule.credential_id)
    else:
        steps = steps.filter(run__api_token_id=rule.app_key_id, run__end_user=subject)
    if exclude_execution_id is not None:
        steps = steps.exclude(pk=exclude_execution_id)
    sums = steps.aggregate(tokens=Sum("total_tokens"), cost=Sum("total_price"))
    return int(sums["tokens"] or 0), Decimal(sums["cost"] or 0)


def counter_ttl(window: Window, now: datetime) -> int:
    if window.end is None:
        return counters.OPEN_WINDOW_TTL_SECONDS
    return max(60, int((window.end - now).total_seconds()) + counters.WINDOW_GRACE_SECONDS)


def counter_seed(*, rule: BudgetRule, subject: str, window: Window, now: datetime,
                 exclude_execution_id=None) -> list[str]:
    """Arguments that create a missing spend counter from the database: tokens, cost, ttl."""
    tokens, cost = spend_from_steps(rule=rule, subject=subject, window=window,
                                    exclude_execution_id=exclude_execution_id)
    return [str(tokens), str(cost_units(cost)), str(counter_ttl(window, now))]


@dataclass(frozen=True)
class Spend:
    """Where a budget (for one end user, with end-user budgets) stands now."""

    user: str | None
    period: str
    window: Window
    tokens_used: int
    token_budget: int | None
    cost_used: Decimal
    cost_budget: Decimal | None
    soft_threshold_percent: int | None
    requests_last_minute: int
    tokens_this_minute: int

    @property
    def token_percent(self) -> float | None:
        return _percent(self.tokens_used, self.token_budget)

    @property
    def cost_percent(self) -> float | None:
        return _percent(self.cost_used, self.cost_budget)

    @property
    def percent(self) -> float | None:
        values = [p for p in (self.token_percent, self.cost_percent) if p is not None]
        return max(values) if values else None

    @property
    def state(self) -> str:
        """ok, warning (past the soft threshold) or exceeded (at or past a cap)."""
        percent = self.percent
        if percent is None:
            return "ok"
        if percent >= 100:
            return "exceeded"
        if self.soft_threshold_percent is not None and percent >= self.soft_threshold_percent:
            return "warning"
        return "ok"

    def as_dict(self) -> dict:
        return {
            "user": self.user,
            "period": self.period,
            "period_start": self.window.period_start if self.period != "none" else None,
            "period_end": self.window.end,
            "counting_since": self.window.start,
            "tokens_used": self.tokens_used,
            "token_budget": self.token_budget,
            "token_percent": self.token_percent,
            "cost_used": self.cost_used,
            "cost_budget": self.cost_budget,
            "cost_percent": self.cost_percent,
            "currency": CURRENCY,
            "percent": self.percent,
            "soft_threshold_percent": self.soft_threshold_percent,
            "state": self.state,
            "requests_last_minute": self.requests_last_minute,
            "tokens_this_minute": self.tokens_this_minute,
        }


def _percent(used, cap) -> float | None:
    if cap is None:
        return None
    return round(100 * float(used) / float(cap), 1)


def budget_spend_get(*, budget: Budget, user: str = "", now: datetime | None = None) -> Spend:
    """Current spend of a credential budget, or of one end user under an end-user budget,
    as enforcement counts it (the counter is rebuilt from the database when missing)."""
    now = now or timezone.now()
    rule = BudgetRule.of(budget)
    subject = user if budget.scope == Budget.Scope.END_USER else ""
    window = rule.window(now)
    schema = connection.schema_name
    key = counters.spend_key(schema, rule.id, subject, window.key)
    try:
        pipe = counters.redis_client().pipeline(transaction=False)
        pipe.hmget(key, "tokens", "cost")
        pipe.zcount(counters.rpm_key(schema, rule.id, subject),
                    int(now.timestamp() * 1000) - counters.RATE_WINDOW_MS, "+inf")
        pipe.get(counters.tpm_key(schema, rule.id, subject, int(now.timestamp()) // 60))
        (tokens, cost), requests, minute_tokens = pipe.execute()
        if tokens is None:
            seed = counter_seed(rule=rule, subject=subject, window=window, now=now)
            tokens, cost = counters.read_spend_script()(keys=[key], args=seed)
    except counters.UNAVAILABLE:  # the stored steps, the numbers the counter caches
        stored_tokens, stored_cost = spend_from_steps(rule=rule, subject=subject, window=window)
        tokens, cost, requests, minute_tokens = stored_tokens, cost_units(stored_cost), 0, 0
    return Spend(
        user=user if budget.scope == Budget.Scope.END_USER else None, period=budget.period,
        window=window, tokens_used=int(tokens or 0), token_budget=budget.token_budget,
        cost_used=cost_from_units(cost), cost_budget=budget.cost_budget,
        soft_threshold_percent=budget.soft_threshold_percent,
        requests_last_minute=int(requests or 0), tokens_this_minute=int(minute_tokens or 0),
    )


END_USERS_LISTED = 100


def budget_spend_list(*, budget: Budget, user: str | None = None, now: datetime | None = None,
                      limit: int = END_USERS_LISTED) -> list[Spend]:
    """Spend rows of a budget: the credential's, or one per end user with spend in the
    current window (the heaviest spenders first, at most `limit`)."""
    now = now or timezone.now()
    if budget.scope == Budget.Scope.CREDENTIAL:
        return [budget_spend_get(budget=budget, now=now)]
    if user:
        return [budget_spend_get(budget=budget, user=user, now=now)]
    window = BudgetRule.of(budget).window(now)
    steps = NodeExecution.objects.filter(
        node_type=LLM_NODE_TYPE, run__api_token_id=budget.app_key_id, run__created_at__gte=window.start
    )
    if window.end is not None:
        steps = steps.filter(run__created_at__lt=window.end)
    rows = (
        steps.values("run__end_user")
        .annotate(tokens=Sum("total_tokens"), cost=Sum("total_price"))
        .order_by("-cost", "-tokens", "run__end_user")[:limit]
    )
    return [budget_spend_get(budget=budget, user=row["run__end_user"], now=now) for row in rows]
