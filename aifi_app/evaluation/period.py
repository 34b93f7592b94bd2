"""The period an evaluation covers: whole days, in UTC, from the first to the last."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


@dataclass(frozen=True)
class Period:
    start: float
    """Seconds since the epoch (inclusive)."""
    end: float
    """Seconds since the epoch (exclusive)."""

    @classmethod
    def days(cls, first: date, last: date) -> Period:
        """From 00:00 UTC of ``first`` up to 24:00 UTC of ``last``."""
        if last < first:
            raise ValueError(f"period ends ({last}) before it starts ({first})")
        start = datetime.combine(first, time(), tzinfo=UTC)
        end = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
        return cls(start.timestamp(), end.timestamp())

    @property
    def first_day(self) -> date:
        return datetime.fromtimestamp(self.start, UTC).date()

    @property
    def last_day(self) -> date:
        return datetime.fromtimestamp(self.end - 1, UTC).date()

    def day_list(self) -> list[date]:
        n = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=i) for i in range(n)]

    def label(self) -> str:
        return f"{self.first_day.isoformat()} to {self.last_day.isoformat()} (UTC)"


def utc_day(at: float) -> date:
    return datetime.fromtimestamp(at, UTC).date()
