from __future__ import annotations

from aifi_app.evaluation import variation
from aifi_app.evaluation.records import JobRecord


def test_breakdown_by_scanner_thickness_kernel_and_site(known_jobs: list[JobRecord]) -> None:
    rows = {(r.dimension, r.algorithm_id, r.value): r for r in variation.breakdown(known_jobs)}
    # cxr-local: GE Revolution jobs 1, 2, 3 (delivered; + + -; agree, fp, missed)
    ge = rows[("scanner", "cxr-local", "GE Revolution")]
    assert (ge.jobs, ge.delivered, ge.rejected, ge.positive) == (3, 3, 0, 2)
    assert (ge.agree, ge.false_positive, ge.missed, ge.unsure) == (1, 1, 1, 0)
    # SIEMENS Force jobs 4, 5, 6: 5 rejected (6 mm)
    siemens = rows[("scanner", "cxr-local", "SIEMENS Force")]
    assert (siemens.jobs, siemens.delivered, siemens.rejected, siemens.positive) == (3, 2, 1, 1)
    thick = rows[("slice_thickness", "cxr-local", "6 mm")]
    assert (thick.jobs, thick.rejected) == (1, 1)
    assert rows[("slice_thickness", "cxr-local", "1 mm")].jobs == 5
    assert rows[("kernel", "cxr-local", "Br40")].jobs == 3
    # vendor-x job 8 has no input values recorded
    none = rows[("scanner", "vendor-x", "(none)")]
    assert (none.jobs, none.failed) == (1, 1)
    ct01 = rows[("site", "cxr-local", "CT01")]
    ct02 = rows[("site", "cxr-local", "CT02")]
    assert (ct01.jobs, ct02.jobs) == (4, 2)
    assert rows[("protocol", "cxr-local", "THORAX")].jobs == 6
    assert rows[("study_description", "vendor-x", "Thorax")].jobs == 2
    assert {r.dimension for r in rows.values()} == set(variation.DIMENSIONS)
