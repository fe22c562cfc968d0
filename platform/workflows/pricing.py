"""Cost estimates from a per-model price table kept in the repo (USD per million tokens).

Estimates only: providers bill by their own meters. Unknown models cost 0 and say so in
`priced` so reports never present a guess as a price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

PRICE_UNIT = Decimal("0.000001")  # prices below are per token × 1e6 (per million tokens)
CURRENCY = "USD"

# (provider, model prefix) -> (prompt, completion) USD per million tokens. The longest
# matching prefix wins, so dated snapshots ("gpt-4o-2024-08-06") share their family's price.
PRICES: dict[tuple[str, str], tuple[Decimal, Decimal]] = {
    ("openai", "gpt-4o-mini"): (Decimal("0.15"), Decimal("0.60")),
    ("openai", "gpt-4o"): (Decimal("2.50"), Decimal("10.00")),
    ("openai", "gpt-4.1-mini"): (Decimal("0.40"), Decimal("1.60")),
    ("openai", "gpt-4.1-nano"): (Decimal("0.10"), Decimal("0.40")),
    ("openai", "gpt-4.1"): (Decimal("2.00"), Decimal("8.00")),
    ("openai", "o3-mini"): (Decimal("1.10"), Decimal("4.40")),
    ("openai", "o4-mini"): (Decimal("1.10"), Decimal("4.40")),
    ("azure_openai", "gpt-4o-mini"): (Decimal("0.15"), Decimal("0.60")),
    ("azure_openai", "gpt-4o"): (Decimal("2.50"), Decimal("10.00")),
    ("anthropic", "claude-3-5-haiku"): (Decimal("0.80"), Decimal("4.00")),
    ("anthropic", "claude-3-5-sonnet"): (Decimal("3.00"), Decimal("15.00")),
    ("anthropic", "claude-3-7-sonnet"): (Decimal("3.00"), Decimal("15.00")),
    ("anthropic", "claude-sonnet-4"): (Decimal("3.00"), Decimal("15.00")),
    ("anthropic", "claude-opus-4"): (Decimal("15.00"), Decimal("75.00")),
    ("anthropic", "claude-haiku-4"): (Decimal("1.00"), Decimal("5.00")),
}


@dataclass(frozen=True)
class Cost:
    prompt_unit_price: Decimal
    completion_unit_price: Decimal
    prompt_price: Decimal
    completion_price: Decimal
    priced: bool

    @property
    def total_price(self) -> Decimal:
        return self.prompt_price + self.completion_price


def _unit_prices(provider: str, model: str) -> tuple[Decimal, Decimal] | None:
    best = None
    for (price_provider, prefix), prices in PRICES.items():
        if price_provider == provider and model.startswith(prefix):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, prices)
    return best[1] if best else None


def cost_estimate(*, provider: str, model: str, prompt_tokens: int, completion_tokens: int) -> Cost:
    prices = _unit_prices(provider, model)
    if prices is None:
        zero = Decimal("0")
        return Cost(zero, zero, zero, zero, priced=False)
    prompt_unit, completion_unit = prices
    quantum = Decimal("0.0000001")
    return Cost(
        prompt_unit_price=prompt_unit,
        completion_unit_price=completion_unit,
        prompt_price=(prompt_unit * PRICE_UNIT * prompt_tokens).quantize(quantum),
        completion_price=(completion_unit * PRICE_UNIT * completion_tokens).quantize(quantum),
        priced=True,
    )
