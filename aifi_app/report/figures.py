"""Every figure of the evaluation for one period, computed in one go from the store.

Both the report (``aifi-app report``) and the desktop dashboard show these; computing
them reads the database only, so it may run on any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifi_app.evaluation import accuracy, availability, records, timing, variation, volume
from aifi_app.evaluation.period import Period
from aifi_app.store.database import Database


@dataclass(frozen=True)
class Figures:
    period: Period
    generated_at: float
    jobs: list[records.JobRecord]
    stages: list[timing.StageSummary]
    turnarounds: dict[str, list[float]]
    accuracy: list[accuracy.Accuracy]
    variation: list[variation.VariationRow]
    volume: list[volume.DayVolume]
    service: availability.ServiceAvailability
    nodes: list[availability.NodeAvailability]


def compute(db: Database, period: Period, *, now: float, running_now: bool = False) -> Figures:
    """The figures of ``period`` as the store holds them at ``now``. ``running_now``:
    the service is running (the desktop application), so its current run lasts until now."""
    jobs = records.load(db, period)
    return Figures(
        period=period,
        generated_at=now,
        jobs=jobs,
        stages=timing.summarise(jobs),
        turnarounds=timing.turnarounds(jobs),
        accuracy=accuracy.per_algorithm(jobs),
        variation=variation.breakdown(jobs),
        volume=volume.per_day(jobs, period),
        service=availability.service_availability(db, period, now=now, running_now=running_now),
        nodes=availability.node_availability(db, period, now=now),
    )
