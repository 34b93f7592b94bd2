"""The findings' JSON form round-trips every kind of finding an algorithm can report."""

from __future__ import annotations

from aifi_app.algorithms.findings import (
    AlgorithmIdentity,
    AlgorithmResult,
    CodedConcept,
    Finding,
    RegionFinding,
)

FRACTURE = CodedConcept("72704001", "SCT", "Fracture")


def test_regions_round_trip_through_json() -> None:
    result = AlgorithmResult(
        algorithm=AlgorithmIdentity("x", "X", "1.0", "V"),
        findings=(
            Finding(
                FRACTURE, 0.9, 0.5, True, "1.2.3.4", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.3", "F"
            ),
        ),
        regions=(
            RegionFinding(
                concept=FRACTURE,
                label="Fracture suspected (0.91)",
                shape="box",
                points=((10.0, 20.5), (40.0, 60.0)),
                source_sop_instance_uid="1.2.3.4",
                source_sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
                source_series_instance_uid="1.2.3",
                score=0.91,
            ),
        ),
    )
    back = AlgorithmResult.from_json(result.to_json())
    assert back == result
    assert back.regions[0].points == ((10.0, 20.5), (40.0, 60.0))


def test_json_without_regions_still_reads() -> None:
    text = (
        '{"algorithm": {"algorithm_id": "x", "name": "X", "version": "1", "vendor": "V"},'
        ' "findings": [], "measurements": []}'
    )
    assert AlgorithmResult.from_json(text).regions == ()
