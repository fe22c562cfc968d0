"""Counting windows of a budget: which runs' spend counts toward it at a given time.

A window starts at the period's start (UTC midnight, the 1st of the month at midnight) or,
when the budget was reset by an admin later in that period, at the reset. A budget without
a period counts from when it was set, or from its last reset. A run's LLM steps count in
the window of the run's creation time, as usage reports sum them, so reports and
enforcement add up the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAY = "day"
MONTH = "month"
NONE = "none"
PERIODS = (DAY, MONTH, NONE)


@dataclass(frozen=True)
class Window:
    key: str  # names the window in counter keys and alert records
    start: datetime  # inclusive
    end: datetime | None  # exclusive; None for a budget without a period
    period_start: datetime

    def contains(self, at: datetime) -> bool:
        return at >= self.start and (self.end is None or at < self.end)

    def seconds_left(self, now: datetime) -> int | None:
        if self.end is None:
            return None
        return max(1, int((self.end - now).total_seconds() + 0.999))


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def period_bounds(period: str, at: datetime) -> tuple[datetime, datetime | None]:
    """The UTC day or month holding `at`; (epoch, None) without a period."""
    at = at.astimezone(UTC)
    if period == DAY:
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if period == MONTH:
        start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (start + timedelta(days=32)).replace(day=1)
        return start, following
    if period == NONE:
        return datetime(1970, 1, 1, tzinfo=UTC), None
    raise ValueError(f"Unknown period {period!r}; known: {', '.join(PERIODS)}.")


def counting_window(*, period: str, created_at: datetime, reset_at: datetime | None,
                    at: datetime) -> Window:
    """The window of a budget (set at `created_at`, last reset at `reset_at`) holding `at`."""
    period_start, end = period_bounds(period, at)
    if period == NONE:
        start = reset_at or created_at
        return Window(key=f"n{_millis(start)}", start=start, end=None, period_start=start)
    label = f"d{period_start:%Y%m%d}" if period == DAY else f"m{period_start:%Y%m}"
    if reset_at is not None and period_start < reset_at < end:
        return Window(key=f"{label}r{_millis(reset_at)}", start=reset_at, end=end,
                      period_start=period_start)
    return Window(key=label, start=period_start, end=end, period_start=period_start)
