"""Reading a vendor's TID 1500 SR into our findings (highdicom's SR reading)."""

from __future__ import annotations

from collections.abc import Callable

from pydicom import Dataset

from aifi_app.algorithms.findings import AlgorithmIdentity, AlgorithmResult, Finding
from aifi_app.results import build_measurement_report
from aifi_app.results.structured_report import SegmentReference
from aifi_app.results.vendor_report import findings_of_vendor_report
from tests.results.test_structured_report import build as _build_sr
from tests.results.test_structured_report import lung_volume_result

VENDOR = AlgorithmIdentity("vendor-x", "Vendor X", "2.1", "Vendor X B.V.")


def _report(sources: list[Dataset], result: AlgorithmResult) -> Dataset:
    return build_measurement_report(
        sources,
        result,
        series_instance_uid="2.25.500000000000000000000000000000000001",
        sop_instance_uid="2.25.500000000000000000000000000000000002",
        series_number=802,
        instance_number=1,
        device_observer_uid="2.25.500000000000000000000000000000000003",
        software_version="2.1",
    )


def test_qualitative_evaluations_and_probabilities_become_findings(
    dx_source: Dataset,
    cr_source: Dataset,
    make_finding: Callable[..., Finding],
    make_result: Callable[..., AlgorithmResult],
    concepts: dict,  # type: ignore[type-arg]
) -> None:
    vendor_sr = _report(
        [dx_source, cr_source],
        make_result(
            make_finding(dx_source, concepts["pneumonia"], 0.83),
            make_finding(cr_source, concepts["pneumothorax"], 0.2, 0.35),
        ),
    )
    read = findings_of_vendor_report(vendor_sr, VENDOR)
    assert read.algorithm == VENDOR
    first, second = read.findings
    assert (first.concept, first.positive, first.score) == (concepts["pneumonia"], True, 0.83)
    assert first.label == "Pneumonia: Present"
    assert first.source_sop_instance_uid == dx_source.SOPInstanceUID
    assert first.source_series_instance_uid == dx_source.SeriesInstanceUID
    assert (second.concept, second.positive) == (concepts["pneumothorax"], False)
    assert second.source_sop_instance_uid == cr_source.SOPInstanceUID


def test_measurements_are_read_and_other_documents_give_nothing(
    ct_source: Dataset, dx_source: Dataset
) -> None:
    from aifi_app.algorithms.findings import CodedConcept, MeasurementFinding

    volume = MeasurementFinding(
        concept=CodedConcept("39607008", "SCT", "Lung structure"),
        quantity=CodedConcept("118565006", "SCT", "Volume"),
        value=4321.5,
        unit=CodedConcept("mL", "UCUM", "milliliter"),
        method="thresholding",
        source_series_instance_uid=str(ct_source.SeriesInstanceUID),
        source_sop_instance_uids=(str(ct_source.SOPInstanceUID),),
        source_sop_class_uid=str(ct_source.SOPClassUID),
        label="Lung volume 4321.5 mL",
    )
    sr = _report([ct_source], AlgorithmResult(algorithm=VENDOR, measurements=(volume,)))
    (read,) = findings_of_vendor_report(sr, VENDOR).measurements
    assert (read.quantity, read.value, read.unit.value) == (volume.quantity, 4321.5, "mL")
    assert read.concept == volume.concept
    assert read.source_sop_instance_uids == (str(ct_source.SOPInstanceUID),)
    assert findings_of_vendor_report(dx_source, VENDOR) == AlgorithmResult(algorithm=VENDOR)
    broken = _report([ct_source], AlgorithmResult(algorithm=VENDOR, measurements=(volume,)))
    del broken.ContentSequence[-1].ContentSequence  # an unreadable measurement group
    assert findings_of_vendor_report(broken, VENDOR).findings == ()


def test_a_segment_volume_is_read_on_the_segments_source_series(
    ct_series: list[Dataset], algorithm: AlgorithmIdentity
) -> None:
    """A TID 1411 group referencing a SEG's segment (as our CT reports do): its
    measurement is on the evidence's images of the segment's source series."""
    result = lung_volume_result(ct_series, algorithm)
    segment = SegmentReference("2.25.4242", "2.25.4243", 1, result.segmentations[0])
    report = _build_sr(ct_series, result, segments=[segment])
    (volume,) = findings_of_vendor_report(report, algorithm).measurements
    (expected,) = result.measurements
    assert (volume.value, volume.unit, volume.concept) == (
        expected.value,
        expected.unit,
        expected.concept,
    )
    assert volume.source_sop_instance_uids == expected.source_sop_instance_uids
    assert volume.source_series_instance_uid == expected.source_series_instance_uid
