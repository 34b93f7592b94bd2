from __future__ import annotations

import pytest

from aifi_app.evaluation.stats import Proportion, median, nearest_rank, wilson_interval
from tests.helpers.evaluation_data import EXPECTED


@pytest.mark.parametrize(("k", "n"), [(3, 5), (2, 3), (1, 1)])
def test_wilson_interval_matches_published_values(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)  # type: ignore[misc]
    want_low, want_high = EXPECTED["wilson"][(k, n)]  # type: ignore[index]
    assert low == pytest.approx(want_low, abs=5e-5)
    assert high == pytest.approx(want_high, abs=5e-5)


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 10)  # type: ignore[misc]
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=5e-5)  # 0 of 10: upper bound 0.2775
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert Proportion(0, 0).value is None
    assert Proportion(1, 4).value == 0.25


def test_median_and_nearest_rank() -> None:
    assert median([]) is None
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    values = [float(v) for v in range(1, 11)]
    assert nearest_rank(values, 90) == 9.0
    assert nearest_rank(values, 100) == 10.0
    assert nearest_rank([5.0], 90) == 5.0
    assert nearest_rank([], 90) is None
