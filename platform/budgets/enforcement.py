"""Admission of a run: refuse it before it is queued when a credential of its plan or its
end user is over a budget or a rate limit.

Spend caps are checked against what was counted so far: runs already admitted may take a
budget past its cap by their own usage, and the next run is refused. Requests per minute
are checked and reserved in one atomic script, so concurrent submissions from any number
of processes never admit more than the limit.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from budgets import counters
from budgets.errors import CODE_BUDGET, CODE_RATE, QuotaExceeded
from budgets.periods import NONE, Window
from budgets.rules import BudgetRule, cost_from_units, cost_units
from budgets.selectors import budget_rules, counter_seed, spend_from_steps
from credentials.resolution import SOURCE_INLINE, PlannedCredential

logger = logging.getLogger(__name__)

# A counter rebuilt by one process may expire again before the script reads it; give up
# (and let the request through unchecked) only after this many rebuilds in a row.
MAX_ADMIT_ATTEMPTS = 3


@dataclass(frozen=True)
class _Check:
    rule: BudgetRule
    subject: str  # the end user for an end-user budget, else ""
    window: Window

    def who(self) -> str:
        if self.rule.credential_id:
            return f"credential {self.rule.credential_id}"
        return f"end user {self.subject[:64]!r}"

    def with_key(self) -> str:
        return " with this app key" if self.rule.app_key_id else ""


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _money(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _span(window: Window, period: str) -> str:
    if period == NONE:
        return "since the budget was set or last reset"
    return "today (UTC)" if period == "day" else "this month (UTC)"


def _resets(window: Window) -> str:
    if window.end is None:
        return "an admin can reset it"
    return f"it resets at {window.end:%Y-%m-%dT%H:%M:%SZ}"


def _seconds(ms: int | float) -> int:
    return max(1, math.ceil(float(ms) / 1000))


def budget_admit(*, app, token, user: str, plan: Mapping[str, PlannedCredential],
                 now: datetime | None = None) -> None:
    """Refuse the run with QuotaExceeded (429) when a budget or rate limit of its
    credentials or of its end user is used up; else reserve one request in each
    requests-per-minute window. Nothing is written when the run is refused.

    Without any budget for the plan's credentials or the app key: one Redis round trip,
    no SQL query. With Redis unreachable, spend caps are checked in the database instead.
    (`app` is part of the signature for budgets of apps, which do not exist yet.)"""
    credential_ids = sorted({
        planned.credential_id for planned in plan.values()
        if planned.source != SOURCE_INLINE and planned.credential_id
    })
    app_key_id = token.id if token is not None else None
    now = now or timezone.now()
    try:
        rules = budget_rules(credential_ids=credential_ids, app_key_id=app_key_id)
        if not rules:
            return
        checks = [_Check(rule, "", rule.window(now)) for rule in rules.by_credential.values()]
        checks += [_Check(rule, user, rule.window(now)) for rule in rules.by_app_key.values()]
        _admit(checks, now)
    except counters.UNAVAILABLE as exc:
        logger.warning("Redis unreachable (%s): budgets checked in the database, rate limits not "
                       "enforced", type(exc).__name__)
        _admit_from_database(credential_ids=credential_ids, app_key_id=app_key_id, user=user, now=now)


def _admit_from_database(*, credential_ids: list[str], app_key_id, user: str, now: datetime) -> None:
    """Without Redis: spend caps checked against the stored steps (the source of truth);
    rate limits, which need a shared atomic counter, are not enforced meanwhile."""
    from django.db.models import Q

    from budgets.models import Budget

    query = Q(credential_id__in=credential_ids)
    if app_key_id is not None:
        query |= Q(app_key_id=app_key_id)
    for budget in Budget.objects.filter(query):
        rule = BudgetRule.of(budget)
        if not rule.has_spend_cap:
            continue
        check = _Check(rule, "" if rule.credential_id else user, rule.window(now))
        tokens, cost = spend_from_steps(rule=rule, subject=check.subject, window=check.window)
        if rule.token_budget is not None and tokens >= rule.token_budget:
            _refuse_budget(check, "tokens", str(tokens), now)
        if rule.cost_budget is not None and cost_units(cost) >= rule.cost_cap_units:
            _refuse_budget(check, "cost", str(cost_units(cost)), now)


def _admit(checks: list[_Check], now: datetime) -> None:
    schema = connection.schema_name
    now_ms = _millis(now)
    minute = now_ms // counters.RATE_WINDOW_MS
    spend = [c for c in checks if c.rule.has_spend_cap]
    tpm = [c for c in checks if c.rule.tokens_per_minute]
    rpm = [c for c in checks if c.rule.requests_per_minute]
    keys = [counters.spend_key(schema, c.rule.id, c.subject, c.window.key) for c in spend]
    keys += [counters.tpm_key(schema, c.rule.id, c.subject, minute) for c in tpm]
    keys += [counters.rpm_key(schema, c.rule.id, c.subject) for c in rpm]
    seeds: dict[int, list[str]] = {}
    for _attempt in range(MAX_ADMIT_ATTEMPTS):
        args: list = [now_ms, f"{now_ms}:{uuid.uuid4().hex}", len(spend), len(tpm), len(rpm)]
        for index, check in enumerate(spend, start=1):
            cost_cap = check.rule.cost_cap_units
            args += [
                check.rule.token_budget if check.rule.token_budget is not None else -1,
                cost_cap if cost_cap is not None else -1,
                *seeds.get(index, ["", "", ""]),
            ]
        for check in tpm:
            args += [check.rule.tokens_per_minute, (minute + 1) * counters.RATE_WINDOW_MS - now_ms]
        args += [check.rule.requests_per_minute for check in rpm]
        answer = counters.admit_script()(keys=keys, args=args)
        verdict = answer[0].decode()
        if verdict != "missing":
            break
        for index in answer[1]:
            check = spend[int(index) - 1]
            seeds[int(index)] = counter_seed(rule=check.rule, subject=check.subject,
                                             window=check.window, now=now)
    else:
        return  # counters kept vanishing (Redis evicting under pressure): do not block runs
    if verdict == "ok":
        return
    position, used, retry_ms = int(answer[1]), answer[2].decode(), answer[3]
    if verdict in ("tokens", "cost"):
        _refuse_budget(spend[position - 1], verdict, used, now)
    if verdict == "tpm":
        check = tpm[position - 1]
        raise QuotaExceeded(
            f"Rate limit: {check.who()} may use {check.rule.tokens_per_minute} tokens per minute"
            f"{check.with_key()} ({used} used this minute); retry in {_seconds(retry_ms)} s.",
            code=CODE_RATE, retry_after=_seconds(retry_ms),
        )
    check = rpm[position - 1]
    raise QuotaExceeded(
        f"Rate limit: {check.who()} may make {check.rule.requests_per_minute} requests per "
        f"minute{check.with_key()}; retry in {_seconds(retry_ms)} s.",
        code=CODE_RATE, retry_after=_seconds(retry_ms),
    )


def _refuse_budget(check: _Check, what: str, used: str, now: datetime) -> None:
    rule, window = check.rule, check.window
    if what == "tokens":
        amount = f"{used} of its {rule.token_budget} tokens"
    else:
        amount = f"{_money(cost_from_units(used))} of its {_money(rule.cost_budget)} USD"
    if rule.app_key_id:
        amount = amount.replace("of its", "of the") + " each end user of this app key may spend"
    raise QuotaExceeded(
        f"Budget exceeded: {check.who()} has used {amount} {_span(window, rule.period)}; "
        f"{_resets(window)}.",
        code=CODE_BUDGET, retry_after=window.seconds_left(now),
    )
