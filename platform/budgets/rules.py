"""A budget as enforcement and accounting see it: a snapshot of its limits that the
per-tenant index in Redis holds, so admitting a run needs no SQL query."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from budgets.periods import Window, counting_window

# Cost is counted in Redis as an integer number of these (the precision of stored prices).
COST_UNIT = Decimal("0.0000001")


def cost_units(cost: Decimal | int | str | None) -> int:
    return int((Decimal(cost or 0) / COST_UNIT).to_integral_value())


def cost_from_units(units: int | str | None) -> Decimal:
    return (Decimal(int(units or 0)) * COST_UNIT).quantize(COST_UNIT)


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


@dataclass(frozen=True)
class BudgetRule:
    id: str
    scope: str
    credential_id: str | None
    app_key_id: str | None
    token_budget: int | None
    cost_budget: Decimal | None
    period: str
    soft_threshold_percent: int | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: datetime
    reset_at: datetime | None
    alerts_webhook: bool

    @classmethod
    def of(cls, budget) -> BudgetRule:
        return cls(
            id=str(budget.id), scope=budget.scope,
            credential_id=str(budget.credential_id) if budget.credential_id else None,
            app_key_id=str(budget.app_key_id) if budget.app_key_id else None,
            token_budget=budget.token_budget,
            cost_budget=Decimal(budget.cost_budget) if budget.cost_budget is not None else None,
            period=budget.period, soft_threshold_percent=budget.soft_threshold_percent,
            requests_per_minute=budget.requests_per_minute,
            tokens_per_minute=budget.tokens_per_minute,
            created_at=budget.created_at.astimezone(UTC),
            reset_at=budget.reset_at.astimezone(UTC) if budget.reset_at else None,
            alerts_webhook=bool(budget.alert_webhook_url),
        )

    def to_json(self) -> str:
        return json.dumps({
            "id": self.id, "scope": self.scope, "credential_id": self.credential_id,
            "app_key_id": self.app_key_id, "token_budget": self.token_budget,
            "cost_budget": str(self.cost_budget) if self.cost_budget is not None else None,
            "period": self.period, "soft_threshold_percent": self.soft_threshold_percent,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "created_at": self.created_at.isoformat(),
            "reset_at": self.reset_at.isoformat() if self.reset_at else None,
            "alerts_webhook": self.alerts_webhook,
        })

    @classmethod
    def from_json(cls, raw: str | bytes) -> BudgetRule:
        data = json.loads(raw)
        data["cost_budget"] = Decimal(data["cost_budget"]) if data["cost_budget"] is not None else None
        data["created_at"] = _instant(data["created_at"])
        data["reset_at"] = _instant(data["reset_at"])
        return cls(**data)

    @property
    def has_spend_cap(self) -> bool:
        return self.token_budget is not None or self.cost_budget is not None

    @property
    def cost_cap_units(self) -> int | None:
        return cost_units(self.cost_budget) if self.cost_budget is not None else None

    def window(self, at: datetime) -> Window:
        return counting_window(period=self.period, created_at=self.created_at,
                               reset_at=self.reset_at, at=at)
