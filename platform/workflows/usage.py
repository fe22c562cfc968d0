"""Usage reads for billing: tokens, cost, runs and steps of LLM steps, summed per group.

Sums come from `NodeExecution` rows of llm nodes (the step that called a provider records
its credential, model, tokens and cost), joined to their run for the end user, the app and
the day. The management API and the tenant admin's usage page read the same numbers.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from credentials.models import Credential
from workflows.models import NodeExecution
from workflows.pricing import CURRENCY

GROUP_CREDENTIAL = "credential"
GROUP_USER = "user"
GROUP_APP = "app"
GROUP_DAY = "day"
GROUP_MODEL = "model"
USAGE_GROUPS = (GROUP_CREDENTIAL, GROUP_USER, GROUP_APP, GROUP_DAY, GROUP_MODEL)

# A stored credential can serve runs as an override, as the app's binding or as the
# default; its group then lists several sources and `source` says "mixed".
SOURCE_MIXED = "mixed"
USAGE_SOURCES = ("override", "app", "default", "inline", SOURCE_MIXED)

LLM_NODE_TYPE = "llm"
REPORT_DAYS = 30


def _group_columns(group_by: str) -> tuple[list[str], dict]:
    """The GROUP BY columns of a grouping: model fields, and expressions by the name each
    row gives them."""
    if group_by == GROUP_CREDENTIAL:
        return ["credential_id"], {}
    if group_by == GROUP_USER:
        return [], {"user": F("run__end_user")}
    if group_by == GROUP_APP:
        return [], {"app_id": F("run__app_id"), "app_name": F("run__app__name")}
    if group_by == GROUP_DAY:
        return [], {"day": TruncDate("run__created_at")}
    if group_by == GROUP_MODEL:
        return ["provider", "model"], {}
    raise ValueError(f"Unknown usage grouping {group_by!r}; known: {', '.join(USAGE_GROUPS)}.")


def _ordering(group_by: str) -> list:
    if group_by == GROUP_DAY:
        return ["day"]
    keys = {
        GROUP_CREDENTIAL: [F("credential_id").asc(nulls_last=True)],
        GROUP_USER: ["user"],
        GROUP_APP: ["app_name", "app_id"],
        GROUP_MODEL: ["provider", "model"],
    }[group_by]
    return ["-cost", *keys]


def usage_summary(
    *,
    group_by: str,
    app_id=None,
    credential_id=None,
    user: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[dict]:
    """Prompt, completion and total tokens, cost, runs and steps of LLM steps per group, in
    one SQL query. `start` is inclusive and `end` exclusive, on the run's creation time.

    Each row holds its group's columns (credential: credential_id, credential_name,
    source, sources; user: user; app: app_id, app_name; day: day; model: provider, model)
    and the sums. One-off (inline) keys have no stored credential: they share the group
    whose credential_id is None, with source "inline".
    """
    fields, expressions = _group_columns(group_by)
    steps = NodeExecution.objects.filter(node_type=LLM_NODE_TYPE)
    if app_id is not None:
        steps = steps.filter(run__app_id=app_id)
    if credential_id is not None:
        steps = steps.filter(credential_id=credential_id)
    if user:
        steps = steps.filter(run__end_user=user)
    if start is not None:
        steps = steps.filter(run__created_at__gte=start)
    if end is not None:
        steps = steps.filter(run__created_at__lt=end)

    extra = {}
    if group_by == GROUP_CREDENTIAL:
        extra = {
            "credential_name": Subquery(
                Credential.objects.filter(pk=OuterRef("credential_id")).order_by().values("name")[:1]
            ),
            "sources": ArrayAgg(
                "credential_source", distinct=True, order_by="credential_source",
                filter=~Q(credential_source=""),
            ),
        }
    rows = (
        steps.values(*fields, **expressions)
        .annotate(
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            total_tokens=Sum("total_tokens"),
            cost=Sum("total_price"),
            runs=Count("run_id", distinct=True),
            steps=Count("id"),
            **extra,
        )
        .order_by(*_ordering(group_by))
    )
    result = []
    for row in rows:
        row["cost"] = row["cost"] or Decimal("0")
        row["currency"] = CURRENCY
        if group_by == GROUP_CREDENTIAL:
            sources = list(row["sources"] or [])
            row["sources"] = sources
            row["source"] = sources[0] if len(sources) == 1 else (SOURCE_MIXED if sources else "")
        result.append(row)
    return result


def usage_report(*, days: int = REPORT_DAYS, today: date | None = None) -> dict:
    """The admin's usage page: the last `days` days summed by credential, end user, app and
    day, plus a bar per day (cost, or tokens when nothing was priced) for the chart."""
    today = today or timezone.localdate()
    first_day = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first_day, datetime.min.time()))
    end = timezone.make_aware(datetime.combine(today + timedelta(days=1), datetime.min.time()))

    def summary(group_by: str) -> list[dict]:
        return usage_summary(group_by=group_by, start=start, end=end)

    by_day = {row["day"]: row for row in summary(GROUP_DAY)}
    priced = any(row["cost"] for row in by_day.values())
    measure = "cost" if priced else "total_tokens"
    peak = max((row[measure] for row in by_day.values()), default=0) or 1
    bars = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        row = by_day.get(day)
        value = row[measure] if row else 0
        bars.append({"day": day, "value": value, "percent": round(100 * value / peak, 1)})
    return {
        "first_day": first_day,
        "last_day": today,
        "currency": CURRENCY,
        "sections": [
            {"group": GROUP_CREDENTIAL, "title": "By credential", "rows": summary(GROUP_CREDENTIAL)},
            {"group": GROUP_USER, "title": "By end user", "rows": summary(GROUP_USER)},
            {"group": GROUP_APP, "title": "By app", "rows": summary(GROUP_APP)},
            {"group": GROUP_DAY, "title": "By day",
             "rows": sorted(by_day.values(), key=lambda row: row["day"], reverse=True)},
        ],
        "chart_measure": measure,
        "chart": bars,
    }
