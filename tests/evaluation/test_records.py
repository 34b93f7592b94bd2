from __future__ import annotations

from aifi_app.evaluation.records import NEGATIVE, POSITIVE, UNKNOWN, JobRecord, polarity_of
from aifi_app.store.feedback import Verdict


def test_jobs_of_the_period_only_with_newest_verdict(known_jobs: list[JobRecord]) -> None:
    assert [j.job_id for j in known_jobs] == [1, 2, 3, 4, 5, 6, 7, 8]
    by_id = {j.job_id: j for j in known_jobs}
    assert by_id[6].verdict == Verdict.AGREE  # false_positive first, agree later
    assert by_id[5].verdict is None
    assert by_id[1].polarity == POSITIVE
    assert by_id[3].polarity == NEGATIVE
    assert by_id[7].polarity == UNKNOWN
    assert by_id[8].manufacturer == ""
    assert by_id[5].slice_thickness == 6.0


def test_study_description_is_cleaned(known_jobs: list[JobRecord]) -> None:
    # the planted "Thorax Jansen^Pieternella PATID-998877" keeps only the safe word
    assert {j.study_description for j in known_jobs} == {"Thorax"}


def test_polarity_of_results() -> None:
    assert polarity_of(None) == UNKNOWN
    assert polarity_of("not json") == UNKNOWN
    assert polarity_of('{"findings": []}') == UNKNOWN
    assert polarity_of('{"findings": [{"positive": false}, {"positive": true}]}') == POSITIVE
    assert polarity_of('{"findings": [{"positive": false}]}') == NEGATIVE
