"""Jobs per day and per algorithm, by outcome (day of the study's first instance, UTC)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from aifi_app.evaluation.period import Period, utc_day
from aifi_app.evaluation.records import JobRecord

OUTCOMES = ("delivered", "rejected", "failed", "other")


@dataclass(frozen=True)
class DayVolume:
    day: date
    algorithm_id: str
    delivered: int
    rejected: int
    failed: int
    other: int
    """Cancelled, or not finished yet."""

    @property
    def total(self) -> int:
        return self.delivered + self.rejected + self.failed + self.other


def per_day(jobs: Sequence[JobRecord], period: Period) -> list[DayVolume]:
    """One row per day of the period and algorithm seen in it (zeros included)."""
    algorithms = sorted({j.algorithm_id for j in jobs})
    counts: dict[tuple[date, str], dict[str, int]] = {}
    for job in jobs:
        outcome = job.state if job.state in OUTCOMES else "other"
        key = (utc_day(job.first_received_at), job.algorithm_id)
        bucket = counts.setdefault(key, dict.fromkeys(OUTCOMES, 0))
        bucket[outcome] += 1
    out = []
    for day in period.day_list():
        for algorithm_id in algorithms:
            c = counts.get((day, algorithm_id), dict.fromkeys(OUTCOMES, 0))
            out.append(
                DayVolume(day, algorithm_id, c["delivered"], c["rejected"], c["failed"], c["other"])
            )
    return out
