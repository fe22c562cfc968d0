"""Counting spend: each LLM step's tokens and cost, as recorded on its NodeExecution, go to
the budgets of its credential and of its run's end user, and crossing a soft threshold or a
cap raises an alert once per counting window."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.utils import timezone

from budgets import counters
from budgets.periods import Window
from budgets.rules import BudgetRule, cost_from_units, cost_units
from budgets.selectors import budget_rules, counter_seed

logger = logging.getLogger(__name__)

MAX_SPEND_ATTEMPTS = 3


@dataclass(frozen=True)
class _Counted:
    rule: BudgetRule
    subject: str
    window: Window


@dataclass(frozen=True)
class Crossing:
    """A spend counter passed a soft threshold or a cap with one step."""

    rule: BudgetRule
    subject: str
    window: Window
    kind: str  # threshold_crossed or cap_reached
    measure: str  # tokens or cost
    tokens_used: int
    cost_used: object


def budget_spend(*, run, execution, now: datetime | None = None) -> list[Crossing]:
    """Count an LLM step toward the budgets of its credential and its end user. Never
    raises: the step is paid for and its run goes on whatever happens to the counters."""
    try:
        return _spend(run=run, execution=execution, now=now or timezone.now())
    except Exception:  # counting must not fail a run that already paid its provider
        logger.exception("Counting step %s of run %s toward budgets failed", execution.pk, run.pk)
        return []


def _spend(*, run, execution, now: datetime) -> list[Crossing]:
    tokens = int(execution.total_tokens or 0)
    cost = cost_units(execution.total_price)
    if tokens <= 0 and cost <= 0:
        return []
    rules = budget_rules(credential_ids=[execution.credential_id] if execution.credential_id else [],
                         app_key_id=run.api_token_id)
    if not rules:
        return []
    counted = [_Counted(rule, "", rule.window(run.created_at)) for rule in rules.by_credential.values()]
    counted += [_Counted(rule, run.end_user, rule.window(run.created_at)) for rule in rules.by_app_key.values()]
    # A run created before a reset (or before a budget without a period was set) does not
    # count toward the window that started after it.
    counted = [c for c in counted if c.window.contains(run.created_at)]
    spend = [c for c in counted if c.rule.has_spend_cap]
    tpm = [c for c in counted if c.rule.tokens_per_minute]
    if not spend and not tpm:
        return []
    schema = connection.schema_name
    minute = int(now.timestamp() * 1000) // counters.RATE_WINDOW_MS
    keys = [counters.counted_step_key(schema, execution.pk)]
    keys += [counters.spend_key(schema, c.rule.id, c.subject, c.window.key) for c in spend]
    keys += [counters.tpm_key(schema, c.rule.id, c.subject, minute) for c in tpm]
    seeds: dict[int, list[str]] = {}
    for _attempt in range(MAX_SPEND_ATTEMPTS):
        args: list = [tokens, cost, counters.COUNTED_STEP_TTL_SECONDS, len(spend), len(tpm)]
        for index in range(1, len(spend) + 1):
            args += seeds.get(index, ["", "", ""])
        answer = counters.spend_script()(keys=keys, args=args)
        verdict = answer[0].decode()
        if verdict != "missing":
            break
        for index in answer[1]:
            item = spend[int(index) - 1]
            # The step itself may be stored already: it is counted by the script, not the seed.
            seeds[int(index)] = counter_seed(rule=item.rule, subject=item.subject, window=item.window,
                                             now=now, exclude_execution_id=execution.pk)
    else:
        logger.warning("Spend counters of step %s kept vanishing; not counted", execution.pk)
        return []
    if verdict != "counted":
        return []
    totals = [int(value) for value in answer[1]]
    crossings = []
    for position, item in enumerate(spend):
        tokens_after, cost_after = totals[2 * position], totals[2 * position + 1]
        crossings += _crossings(item, tokens_after - tokens, tokens_after, cost_after - cost, cost_after)
    if crossings:
        from budgets.alerts import budget_alert_raise

        for crossing in crossings:
            budget_alert_raise(crossing=crossing)
    return crossings


def _crossings(item: _Counted, tokens_before: int, tokens_after: int,
               cost_before: int, cost_after: int) -> list[Crossing]:
    rule = item.rule
    caps = []
    if rule.token_budget is not None:
        caps.append(("tokens", rule.token_budget, tokens_before, tokens_after))
    if rule.cost_budget is not None:
        caps.append(("cost", rule.cost_cap_units, cost_before, cost_after))
    found: dict[str, Crossing] = {}
    for measure, cap, before, after in caps:
        marks = [("cap_reached", cap)]
        if rule.soft_threshold_percent is not None:
            marks.insert(0, ("threshold_crossed", cap * rule.soft_threshold_percent / 100))
        for kind, mark in marks:
            if before < mark <= after and kind not in found:
                found[kind] = Crossing(
                    rule=rule, subject=item.subject, window=item.window, kind=kind, measure=measure,
                    tokens_used=tokens_after, cost_used=cost_from_units(cost_after),
                )
    return list(found.values())
