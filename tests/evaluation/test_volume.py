from __future__ import annotations

from aifi_app.evaluation import volume
from aifi_app.evaluation.records import JobRecord
from tests.helpers.evaluation_data import EXPECTED, PERIOD


def test_volume_per_day_and_outcome(known_jobs: list[JobRecord]) -> None:
    rows = volume.per_day(known_jobs, PERIOD)
    got = {
        (r.day.isoformat(), r.algorithm_id): (r.delivered, r.rejected, r.failed, r.other)
        for r in rows
    }
    assert got == EXPECTED["volume"]
