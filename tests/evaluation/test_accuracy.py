from __future__ import annotations

from aifi_app.evaluation import accuracy
from aifi_app.evaluation.records import JobRecord
from tests.helpers.evaluation_data import EXPECTED


def test_agreement_ppv_and_sensitivity(known_jobs: list[JobRecord]) -> None:
    found = {a.algorithm_id: a for a in accuracy.per_algorithm(known_jobs)}
    assert set(found) == {"cxr-local", "vendor-x"}
    for algorithm, a in found.items():
        assert (a.agreement.successes, a.agreement.n) == EXPECTED["agreement"][algorithm]  # type: ignore[index]
        assert (a.ppv.successes, a.ppv.n) == EXPECTED["ppv"][algorithm]  # type: ignore[index]
        want = EXPECTED["sensitivity"][algorithm]  # type: ignore[index]
        got = None if a.sensitivity is None else (a.sensitivity.successes, a.sensitivity.n)
        assert got == want
    local = found["cxr-local"]
    assert (local.judged, local.agree, local.false_positive, local.missed, local.unsure) == (
        5,
        3,
        1,
        1,
        0,
    )
    assert (local.true_positive, local.true_negative) == (2, 1)
    assert found["vendor-x"].ppv.interval is None
