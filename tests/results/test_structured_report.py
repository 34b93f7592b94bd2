"""TID 1500 Measurement Report: DICOM validity (dciodvfy, dsrdump), content, study."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import highdicom as hd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ComprehensiveSRStorage

from aifi_app.algorithms.findings import (
    AlgorithmIdentity,
    AlgorithmResult,
    CodedConcept,
    Finding,
    MeasurementFinding,
    SegmentationMask,
)
from aifi_app.results import build_measurement_report
from aifi_app.results.structured_report import SegmentReference
from tests.results.test_segmentation import LUNG, SEG_UIDS, lung_mask
from tests.results.test_segmentation import build as build_seg

MakeFinding = Callable[..., Finding]
MakeResult = Callable[..., AlgorithmResult]

SERIES_UID = "2.25.200000000000000000000000000000000001"
SOP_UID = "2.25.200000000000000000000000000000000002"
OBSERVER_UID = "2.25.200000000000000000000000000000000003"


def build(sources: list[Dataset], result: AlgorithmResult, **overrides: object) -> Dataset:
    arguments: dict[str, object] = {
        "series_instance_uid": SERIES_UID,
        "sop_instance_uid": SOP_UID,
        "series_number": 9002,
        "instance_number": 1,
        "device_observer_uid": OBSERVER_UID,
        "software_version": "0.3.0",
    }
    arguments.update(overrides)
    return build_measurement_report(sources, result, **arguments)  # type: ignore[arg-type]


@pytest.fixture
def chest_result(
    dx_source: Dataset,
    cr_source: Dataset,
    make_finding: MakeFinding,
    make_result: MakeResult,
    concepts: dict[str, CodedConcept],
) -> AlgorithmResult:
    """Pneumonia suspected on the DX (0.87), no pneumothorax on the CR (0.12)."""
    return make_result(
        make_finding(dx_source, concepts["pneumonia"], 0.87, 0.5),
        make_finding(cr_source, concepts["pneumothorax"], 0.12, 0.35),
    )


def uid_values(ds: Dataset) -> list[str]:
    return [str(element.value) for element in ds.iterall() if element.VR == "UI"]


@pytest.mark.dicom3tools
@pytest.mark.dcmtk
def test_sr_is_valid_and_readable(
    dx_source: Dataset,
    cr_source: Dataset,
    chest_result: AlgorithmResult,
    algorithm: AlgorithmIdentity,
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
    dsrdump: Callable[[Path], str],
) -> None:
    dciodvfy(write_dicom(dx_source, "dx-source"))
    dciodvfy(write_dicom(cr_source, "cr-source"))
    path = write_dicom(build([dx_source, cr_source], chest_result), "chest-sr")
    dciodvfy(path)
    dump = dsrdump(path)
    assert "Imaging Measurement Report" in dump
    assert '"Plain chest X-ray"' in dump
    assert '(233604007,SCT,"Pneumonia")' in dump
    assert '(36118008,SCT,"Pneumothorax")' in dump
    assert '(52101004,SCT,"Present")' in dump
    assert '(272519000,SCT,"Absent")' in dump
    assert '"Probability")="0.87" (1,UCUM,"no units")' in dump
    assert f'"Algorithm Name")="{algorithm.name}"' in dump
    assert f'"Algorithm Version")="{algorithm.version}"' in dump
    assert f'"Device Observer Name")="{algorithm.name}"' in dump
    assert f'"Device Observer UID")="{OBSERVER_UID}"' in dump
    assert str(dx_source.SOPInstanceUID) in dump
    assert str(cr_source.SOPInstanceUID) in dump
    assert dcmread(path).SOPClassUID == ComprehensiveSRStorage


@pytest.mark.dicom3tools
@pytest.mark.dcmtk
def test_sr_for_ct_is_valid(
    ct_source: Dataset,
    make_finding: MakeFinding,
    make_result: MakeResult,
    concepts: dict[str, CodedConcept],
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
    dsrdump: Callable[[Path], str],
) -> None:
    dciodvfy(write_dicom(ct_source, "ct-source"))
    result = make_result(make_finding(ct_source, concepts["hemorrhage"], 0.64, 0.5))
    path = write_dicom(build([ct_source], result), "ct-sr")
    dciodvfy(path)
    dump = dsrdump(path)
    assert '(363679005,SCT,"Imaging procedure")' in dump
    assert "Intracranial hemorrhage" in dump


def test_sr_content_round_trips_through_highdicom(
    dx_source: Dataset, cr_source: Dataset, chest_result: AlgorithmResult
) -> None:
    sr = hd.sr.ComprehensiveSR.from_dataset(build([dx_source, cr_source], chest_result))
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = report.get_image_measurement_groups()
    assert len(groups) == 2
    for group, finding, source in zip(
        groups, chest_result.findings, [dx_source, cr_source], strict=True
    ):
        finding_type = group.finding_type
        assert finding_type is not None
        assert finding_type.value == finding.concept.value
        assert finding_type.scheme_designator == finding.concept.scheme
        (evaluation,) = group.get_qualitative_evaluations()
        assert evaluation.name.value == finding.concept.value
        present_or_absent = evaluation.value
        assert isinstance(present_or_absent, hd.sr.CodedConcept)
        assert present_or_absent.value == ("52101004" if finding.positive else "272519000")
        (measurement,) = group.get_measurements()
        assert (measurement.name.value, measurement.name.scheme_designator) == ("122157", "DCM")
        assert measurement.value == pytest.approx(finding.score)
        assert (measurement.unit.value, measurement.unit.scheme_designator) == ("1", "UCUM")
        (image,) = group.source_images
        assert image.referenced_sop_instance_uid == source.SOPInstanceUID
        assert image.referenced_sop_class_uid == source.SOPClassUID
        assert str(group.tracking_uid).startswith("2.25.")
    assert groups[0].tracking_uid != groups[1].tracking_uid


def test_sr_is_in_source_study_and_lists_evidence(
    dx_source: Dataset,
    cr_source: Dataset,
    chest_result: AlgorithmResult,
    algorithm: AlgorithmIdentity,
) -> None:
    sr = build([dx_source, cr_source], chest_result)
    assert sr.StudyInstanceUID == dx_source.StudyInstanceUID
    assert (sr.SeriesInstanceUID, sr.SOPInstanceUID) == (SERIES_UID, SOP_UID)
    assert (sr.SeriesNumber, sr.InstanceNumber) == (9002, 1)
    assert sr.Modality == "SR"
    assert sr.SeriesDescription == f"AI result: {algorithm.name}"
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    assert list(sr.SoftwareVersions) == ["0.3.0", f"{algorithm.name} {algorithm.version}"]
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
    ):
        assert str(sr[keyword].value) == str(dx_source[keyword].value), keyword
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == dx_source.StudyInstanceUID
    referenced = {
        (series.SeriesInstanceUID, instance.ReferencedSOPInstanceUID)
        for series in study.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    assert referenced == {
        (dx_source.SeriesInstanceUID, dx_source.SOPInstanceUID),
        (cr_source.SeriesInstanceUID, cr_source.SOPInstanceUID),
    }


def test_building_twice_gives_equal_uids(
    dx_source: Dataset, cr_source: Dataset, chest_result: AlgorithmResult
) -> None:
    first = build([dx_source, cr_source], chest_result)
    second = build([dx_source, cr_source], chest_result)
    assert uid_values(first) == uid_values(second)
    assert SOP_UID in uid_values(first)
    other = build([dx_source, cr_source], chest_result, sop_instance_uid="2.25.42")
    assert other.SOPInstanceUID == "2.25.42"


def test_sources_are_not_modified(
    dx_source: Dataset, cr_source: Dataset, chest_result: AlgorithmResult
) -> None:
    before = [copy.deepcopy(dx_source), copy.deepcopy(cr_source)]
    build([dx_source, cr_source], chest_result)
    assert [dx_source, cr_source] == before


def test_refuses_finding_without_source(
    dx_source: Dataset, cr_source: Dataset, chest_result: AlgorithmResult
) -> None:
    with pytest.raises(ValueError, match="not among the sources"):
        build([dx_source], chest_result)


def test_refuses_empty_result(dx_source: Dataset, make_result: MakeResult) -> None:
    with pytest.raises(ValueError, match="at least one measurement group"):
        build([dx_source], make_result())


def test_refuses_sources_from_two_studies(
    dx_source: Dataset, ct_source: Dataset, make_finding: MakeFinding, make_result: MakeResult
) -> None:
    with pytest.raises(ValueError, match="2 studies"):
        build([dx_source, ct_source], make_result(make_finding(dx_source)))


@pytest.mark.dicom3tools
@pytest.mark.dcmtk
def test_sr_records_regions_as_scoord_on_their_image(
    dx_source: Dataset,
    cr_source: Dataset,
    make_finding: MakeFinding,
    make_result: MakeResult,
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
    dsrdump: Callable[[Path], str],
) -> None:
    from tests.results.test_presentation_state import FRACTURE, NODULE, region

    base = make_result(make_finding(dx_source, score=0.8))
    result = AlgorithmResult(
        algorithm=base.algorithm,
        findings=base.findings,
        regions=(
            region(dx_source, "box", ((3.0, 4.0), (10.0, 12.0))),
            region(cr_source, "point", ((100.0, 200.0),), NODULE, "Nodule", None),
        ),
    )
    sr = build([dx_source, cr_source], result)
    path = write_dicom(sr, "sr-regions")
    dciodvfy(path)
    dump = dsrdump(path)
    assert "(POLYLINE,3/4,10/4,10/12,3/12,3/4)" in dump
    assert "(POINT,100/200)" in dump
    assert f'({FRACTURE.value},SCT,"Fracture")' in dump
    assert 'Tracking Identifier")="CXR Pneumonia Detector region 1: Fracture suspected' in dump
    assert dump.count('"Tracking Unique Identifier"') == 3  # one finding, two regions

    # each SCOORD is selected from its own image
    def scoords(items: Sequence[Dataset]) -> list[Dataset]:
        found = []
        for item in items:
            if item.get("ValueType") == "SCOORD":
                found.append(item)
            found += scoords(item.get("ContentSequence", []))
        return found

    assert [
        s.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for s in scoords(sr.ContentSequence)
    ] == [dx_source.SOPInstanceUID, cr_source.SOPInstanceUID]


def test_sr_refuses_a_region_on_an_unknown_image(
    dx_source: Dataset, cr_source: Dataset, make_result: MakeResult
) -> None:
    from tests.results.test_presentation_state import region

    result = AlgorithmResult(
        algorithm=make_result().algorithm, regions=(region(cr_source, "point", ((1.0, 1.0),)),)
    )
    with pytest.raises(ValueError, match="not among the sources"):
        build([dx_source], result)


def test_sr_regions_name_their_frame_on_multiframe_images(
    dx_source: Dataset, make_result: MakeResult
) -> None:
    import dataclasses

    from tests.results.test_presentation_state import region

    multi = copy.deepcopy(dx_source)
    multi.SOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"  # X-Ray Angiographic: multi-frame
    multi.NumberOfFrames = 3
    multi.SOPInstanceUID = "2.25.200000000000000000000000000000000099"
    on_frame = dataclasses.replace(region(multi, "point", ((1.0, 2.0),)), frame_number=2)
    on_single = dataclasses.replace(region(dx_source, "point", ((3.0, 4.0),)), frame_number=1)
    sr = build(
        [multi, dx_source],
        AlgorithmResult(algorithm=make_result().algorithm, regions=(on_frame, on_single)),
    )
    refs = [e for e in sr.iterall() if e.keyword == "ReferencedFrameNumber"]
    assert [int(e.value) for e in refs] == [2]


def lung_volume_result(series: list[Dataset], algorithm: AlgorithmIdentity) -> AlgorithmResult:
    """A lung volume measured on ``series``, with the lung mask it was measured on."""
    measurement = MeasurementFinding(
        concept=LUNG,
        quantity=CodedConcept("118565006", "SCT", "Volume"),
        value=3120.5,
        unit=CodedConcept("ml", "UCUM", "milliliter"),
        method="HU threshold -1024 to -320",
        source_series_instance_uid=str(series[0].SeriesInstanceUID),
        source_sop_instance_uids=tuple(str(ds.SOPInstanceUID) for ds in series),
        source_sop_class_uid=str(series[0].SOPClassUID),
        label="Lung volume 3120 ml",
    )
    return AlgorithmResult(
        algorithm=algorithm, measurements=(measurement,), segmentations=(lung_mask(series),)
    )


@pytest.mark.dicom3tools
@pytest.mark.dcmtk
def test_a_segmented_measurement_references_its_segment_not_every_image(
    ct_series: list[Dataset],
    algorithm: AlgorithmIdentity,
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
    dsrdump: Callable[[Path], str],
) -> None:
    result = lung_volume_result(ct_series, algorithm)
    seg_uid, seg_series = SEG_UIDS["sop_instance_uid"], SEG_UIDS["series_instance_uid"]
    segment = SegmentReference(str(seg_uid), str(seg_series), 1, result.segmentations[0])
    path = write_dicom(build(ct_series, result, segments=[segment]), "lung-sr")
    dciodvfy(path)
    dump = dsrdump(path)
    assert "Referenced Segment" in dump
    source_series = f'"Source Series for Segmentation")="{ct_series[0].SeriesInstanceUID}"'
    assert source_series in dump
    sr = dcmread(path)
    (group,) = hd.sr.ComprehensiveSR.from_dataset(
        sr
    ).content.get_volumetric_roi_measurement_groups()
    (volume,) = group.get_measurements()
    assert volume.value == pytest.approx(3120.5)
    assert volume.unit.value == "ml"
    referenced = group.referenced_segment
    assert referenced is not None
    segment_item, series_item = referenced
    assert segment_item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == seg_uid
    assert segment_item.ReferencedSOPSequence[0].ReferencedSegmentNumber == 1
    assert ct_series[0].SeriesInstanceUID == series_item.UID
    # the content references no source image; the evidence lists the sources and the SEG
    images = [item for item in _content_items(sr) if item.ValueType == "IMAGE"]
    assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images] == [seg_uid]
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    evidence = {
        (series.SeriesInstanceUID, instance.ReferencedSOPInstanceUID)
        for series in study.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    assert evidence == {(seg_series, seg_uid)} | {
        (ds.SeriesInstanceUID, ds.SOPInstanceUID) for ds in ct_series
    }
    # the SEG it names is valid with these UIDs
    dciodvfy(write_dicom(build_seg(ct_series, result.segmentations[0], algorithm), "lung-seg"))


def test_a_measurement_without_its_segment_references_its_images(
    ct_series: list[Dataset], algorithm: AlgorithmIdentity
) -> None:
    result = lung_volume_result(ct_series, algorithm)
    other = SegmentationMask(
        CodedConcept("10200004", "SCT", "Liver"),
        "Liver",
        result.segmentations[0].source_sop_instance_uids,
        result.segmentations[0].packed,
    )
    unrelated = SegmentReference("2.25.91", "2.25.92", 1, other)
    for segments in ([], [unrelated]):
        sr = build(ct_series, result, segments=segments)
        report = hd.sr.ComprehensiveSR.from_dataset(sr).content
        assert not report.get_volumetric_roi_measurement_groups()
        (group,) = report.get_image_measurement_groups()
        assert [i.referenced_sop_instance_uid for i in group.source_images] == [
            ds.SOPInstanceUID for ds in ct_series
        ]


def _content_items(ds: Dataset) -> list[Dataset]:
    found = []
    for item in ds.get("ContentSequence", []):
        found.append(item)
        found += _content_items(item)
    return found
