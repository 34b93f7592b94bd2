from __future__ import annotations

import pytest

from aifi_app.evaluation import timing
from aifi_app.evaluation.records import JobRecord
from tests.helpers.evaluation_data import EXPECTED


def test_turnaround_summary_per_algorithm(known_jobs: list[JobRecord]) -> None:
    summary = {(s.algorithm_id, s.stage): s for s in timing.summarise(known_jobs)}
    for algorithm, (count, med, p90, low, high) in EXPECTED["turnaround"].items():  # type: ignore[attr-defined]
        s = summary[(algorithm, "turnaround")]
        assert (s.count, s.median, s.p90, s.minimum, s.maximum) == (count, med, p90, low, high)


def test_every_stage_median(known_jobs: list[JobRecord]) -> None:
    summary = {(s.algorithm_id, s.stage): s for s in timing.summarise(known_jobs)}
    for algorithm, stages in EXPECTED["stages"].items():  # type: ignore[attr-defined]
        for stage, want in stages.items():
            got = summary[(algorithm, stage)]
            if want is None:
                assert got.count == 0 and got.median is None, (algorithm, stage)
            else:
                assert got.median == pytest.approx(want), (algorithm, stage)
    deliver = summary[("cxr-local", "deliver")]
    assert (deliver.count, deliver.p90, deliver.minimum) == (5, 50.0, 2.0)


def test_turnarounds_only_of_delivered_jobs(known_jobs: list[JobRecord]) -> None:
    found = timing.turnarounds(known_jobs)
    assert sorted(found["cxr-local"]) == [42.0, 45.0, 50.0, 60.0, 90.0]
    assert found["vendor-x"] == [300.0]
