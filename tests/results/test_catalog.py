"""The result-object table matches what the builders make and what manifests may ask."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydicom import Dataset

from aifi_app.algorithms.findings import AlgorithmResult, CodedConcept, Finding, SegmentationMask
from aifi_app.algorithms.package import manifest_schema
from aifi_app.results import (
    build_key_object_selection,
    build_measurement_report,
    build_presentation_state,
    build_secondary_capture,
    build_segmentation,
)
from aifi_app.results.catalog import RESULT_OBJECTS, result_object
from tests.results.test_presentation_state import region

UIDS = {
    "series_instance_uid": "2.25.600000000000000000000000000000000001",
    "sop_instance_uid": "2.25.600000000000000000000000000000000002",
    "series_number": 1,
    "instance_number": 1,
}


def test_every_kind_is_built_with_the_sop_class_of_the_table(
    dx_source: Dataset,
    ct_source: Dataset,
    make_finding: Callable[..., Finding],
    make_result: Callable[..., AlgorithmResult],
) -> None:
    finding = make_finding(dx_source, score=0.9)
    result = AlgorithmResult(
        algorithm=make_result().algorithm,
        findings=(finding,),
        regions=(region(dx_source, "point", ((3.0, 3.0),)),),
    )
    mask = SegmentationMask.from_array(
        CodedConcept("39607008", "SCT", "Lung"),
        "Lung",
        (str(ct_source.SOPInstanceUID),),
        np.ones((1, 512, 512), dtype=bool),
    )
    built = {
        "sc": build_secondary_capture(dx_source, result, finding, software_version="1", **UIDS),  # type: ignore[arg-type]
        "sr": build_measurement_report(
            [dx_source],
            result,
            device_observer_uid="2.25.3",
            software_version="1",
            **UIDS,  # type: ignore[arg-type]
        ),
        "seg": build_segmentation(
            [ct_source], mask, result.algorithm, software_version="1", **UIDS
        ),  # type: ignore[arg-type]
        "gsps": build_presentation_state(
            [dx_source],
            result,
            tracking_base_uid="2.25.4",
            software_version="1",
            **UIDS,  # type: ignore[arg-type]
        ),
        "ko": build_key_object_selection([dx_source], result, device_observer_uid="2.25.3", **UIDS),  # type: ignore[arg-type]
    }
    assert sorted(built) == sorted(e.kind for e in RESULT_OBJECTS)
    for kind, ds in built.items():
        assert str(ds.SOPClassUID) == result_object(kind).sop_class_uid, kind
        assert ds.SOPClassUID.name == result_object(kind).sop_class_name, kind


def test_manifests_may_ask_for_exactly_the_kinds_of_the_table() -> None:
    schema = manifest_schema()
    kinds = schema["properties"]["results"]["properties"]["objects"]["items"]["enum"]
    assert sorted(kinds) == sorted(e.kind for e in RESULT_OBJECTS)
