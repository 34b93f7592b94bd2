"""GSPS with an algorithm's regions: DICOM validity (dciodvfy), layers, graphics at the
right coordinates on the right image, and strict re-identification onto the original."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import GrayscaleSoftcopyPresentationStateStorage

from aifi_app.algorithms.findings import AlgorithmResult, CodedConcept, RegionFinding
from aifi_app.pseudonymise import (
    ProfileOption,
    Pseudonymiser,
    ResultScope,
    UnknownReferenceError,
    reidentify,
)
from aifi_app.results import (
    build_key_object_selection,
    build_measurement_report,
    build_presentation_state,
    images_per_presentation_state,
)
from aifi_app.results.presentation_state import (
    LABEL_LAYER_SUFFIX,
    layer_name_for,
    region_graphic,
    region_tracking_uid,
)

FRACTURE = CodedConcept("72704001", "SCT", "Fracture")
NODULE = CodedConcept("27925004", "SCT", "Nodule")
TRACKING_BASE = "2.25.300000000000000000000000000000000009"


def region(
    source: Dataset,
    shape: str,
    points: tuple[tuple[float, float], ...],
    concept: CodedConcept = FRACTURE,
    label: str = "Fracture suspected (0.91)",
    score: float | None = 0.91,
) -> RegionFinding:
    return RegionFinding(
        concept=concept,
        label=label,
        shape=shape,
        points=points,
        source_sop_instance_uid=str(source.SOPInstanceUID),
        source_sop_class_uid=str(source.SOPClassUID),
        source_series_instance_uid=str(source.SeriesInstanceUID),
        score=score,
    )


def build(sources: list[Dataset], result: AlgorithmResult) -> Dataset:
    return build_presentation_state(
        sources,
        result,
        series_instance_uid="2.25.300000000000000000000000000000000001",
        sop_instance_uid="2.25.300000000000000000000000000000000002",
        series_number=9904,
        instance_number=1,
        tracking_base_uid=TRACKING_BASE,
        software_version="0.3.0",
    )


@pytest.fixture
def dx_regions(dx_source: Dataset, make_result: Callable[..., AlgorithmResult]) -> AlgorithmResult:
    """A box and a polygon (fracture) and a point (nodule) on the 28x28 DX."""
    result = make_result()
    return AlgorithmResult(
        algorithm=result.algorithm,
        regions=(
            region(dx_source, "box", ((3.0, 4.0), (10.5, 12.0))),
            region(dx_source, "polygon", ((14.0, 14.0), (20.0, 15.0), (17.0, 22.0))),
            region(dx_source, "point", ((6.0, 20.0),), NODULE, "Nodule (0.55)", 0.55),
        ),
    )


def _annotations(gsps: Dataset, layer: str) -> list[Dataset]:
    return [a for a in gsps.GraphicAnnotationSequence if a.GraphicLayer == layer]


@pytest.mark.dicom3tools
def test_gsps_is_valid_with_one_outline_and_one_label_layer_per_concept(
    dx_source: Dataset,
    dx_regions: AlgorithmResult,
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
) -> None:
    gsps = build([dx_source], dx_regions)
    dciodvfy(write_dicom(gsps, "gsps"))
    assert gsps.SOPClassUID == GrayscaleSoftcopyPresentationStateStorage
    assert gsps.StudyInstanceUID == dx_source.StudyInstanceUID
    assert gsps.ContentLabel == "AI_RESULT"
    assert "NOT A DIAGNOSIS" in gsps.ContentDescription
    assert "CXR Pneumonia Detector 1.4.2" in gsps.ContentDescription
    fracture, nodule = layer_name_for(FRACTURE, 1), layer_name_for(NODULE, 2)
    assert [layer.GraphicLayer for layer in gsps.GraphicLayerSequence] == [
        fracture,
        fracture + LABEL_LAYER_SUFFIX,
        nodule,
        nodule + LABEL_LAYER_SUFFIX,
    ]
    assert all(len(layer.GraphicLayer) <= 16 for layer in gsps.GraphicLayerSequence)
    (outlines,) = _annotations(gsps, fracture)
    (labels,) = _annotations(gsps, fracture + LABEL_LAYER_SUFFIX)
    assert "TextObjectSequence" not in outlines and "GraphicObjectSequence" not in labels
    box, polygon = outlines.GraphicObjectSequence
    assert box.GraphicType == "POLYLINE" and box.GraphicAnnotationUnits == "PIXEL"
    assert np.allclose(
        np.reshape(box.GraphicData, (-1, 2)),
        [(3, 4), (10.5, 4), (10.5, 12), (3, 12), (3, 4)],
    )
    assert np.allclose(
        np.reshape(polygon.GraphicData, (-1, 2)), [(14, 14), (20, 15), (17, 22), (14, 14)]
    )
    assert [t.UnformattedTextValue for t in labels.TextObjectSequence] == [
        "Fracture suspected (0.91)",
        "Fracture suspected (0.91)",
    ]
    assert [float(v) for v in labels.TextObjectSequence[0].AnchorPoint] == [3.0, 4.0]
    (point,) = _annotations(gsps, nodule)[0].GraphicObjectSequence
    assert point.GraphicType == "POINT"
    assert [float(v) for v in point.GraphicData] == [6.0, 20.0]
    for annotation in gsps.GraphicAnnotationSequence:
        (ref,) = annotation.ReferencedImageSequence
        assert ref.ReferencedSOPInstanceUID == dx_source.SOPInstanceUID
    # the same tracking UIDs as the SR's region groups, by region index
    assert [g.TrackingUID for g in outlines.GraphicObjectSequence] == [
        region_tracking_uid(TRACKING_BASE, 0),
        region_tracking_uid(TRACKING_BASE, 1),
    ]


def test_tracking_uids_match_the_measurement_report(
    dx_source: Dataset, dx_regions: AlgorithmResult
) -> None:
    gsps = build([dx_source], dx_regions)
    sr = build_measurement_report(
        [dx_source],
        dx_regions,
        series_instance_uid="2.25.300000000000000000000000000000000003",
        sop_instance_uid="2.25.300000000000000000000000000000000004",
        series_number=9902,
        instance_number=1,
        device_observer_uid="2.25.300000000000000000000000000000000005",
        software_version="0.3.0",
        tracking_base_uid=TRACKING_BASE,
    )
    in_sr = {
        str(e.value) for e in sr.iterall() if e.keyword == "UID" and str(e.value).startswith("2.25")
    }
    in_gsps = {
        str(g.TrackingUID)
        for a in gsps.GraphicAnnotationSequence
        for g in a.get("GraphicObjectSequence", [])
    }
    assert len(in_gsps) == 3
    assert in_gsps <= in_sr


def test_images_are_grouped_per_series_and_size(
    dx_source: Dataset, cr_source: Dataset, make_result: Callable[..., AlgorithmResult]
) -> None:
    other = copy.deepcopy(dx_source)
    other.SOPInstanceUID = "2.25.300000000000000000000000000000000010"
    result = AlgorithmResult(
        algorithm=make_result().algorithm,
        regions=(
            region(cr_source, "point", ((100.0, 100.0),)),
            region(dx_source, "point", ((1.0, 1.0),)),
            region(other, "point", ((2.0, 2.0),)),
        ),
    )
    groups = images_per_presentation_state(result, [dx_source, other, cr_source])
    assert [[str(ds.SOPInstanceUID) for ds in g] for g in groups] == [
        [str(cr_source.SOPInstanceUID)],
        [str(dx_source.SOPInstanceUID), str(other.SOPInstanceUID)],
    ]
    # a GSPS over one group draws only that group's regions
    gsps = build(groups[1], result)
    drawn = [
        a.ReferencedImageSequence[0].ReferencedSOPInstanceUID
        for a in gsps.GraphicAnnotationSequence
    ]
    assert str(cr_source.SOPInstanceUID) not in drawn
    assert len(drawn) == 4  # two images, an outline and a label annotation each


@pytest.mark.parametrize(
    ("shape", "points"),
    [("box", ((1.0, 1.0),)), ("polygon", ((1.0, 1.0), (2.0, 2.0))), ("circle", ((1.0, 1.0),))],
)
def test_malformed_regions_are_refused(
    dx_source: Dataset, shape: str, points: tuple[tuple[float, float], ...]
) -> None:
    with pytest.raises(ValueError, match="region"):
        region_graphic(region(dx_source, shape, points))


def test_no_region_on_the_images_is_refused(
    dx_source: Dataset, cr_source: Dataset, make_result: Callable[..., AlgorithmResult]
) -> None:
    result = AlgorithmResult(
        algorithm=make_result().algorithm, regions=(region(cr_source, "point", ((1.0, 1.0),)),)
    )
    with pytest.raises(ValueError, match="at least one region"):
        build([dx_source], result)


class _Table:
    def __init__(self) -> None:
        self.originals: dict[str, str] = {}

    def record(self, kind: str, original: str, pseudonym: str) -> None:
        self.originals[pseudonym] = original

    def original_for(self, pseudonym: str) -> str | None:
        return self.originals.get(pseudonym)


def _original_and_pseudonymised(
    dx_source: Dataset,
) -> tuple[Dataset, Dataset, _Table, ResultScope]:
    """An 'original' DX (real-looking identifiers), its pseudonymised copy, the mapping the
    pseudonymiser recorded, and the strict scope of a job on it."""
    original = copy.deepcopy(dx_source)
    original.PatientName = "Jansen^Maria"
    original.PatientID = "PID-1234567"
    original.AccessionNumber = "ACC-998877"
    original.StudyID = "S-31"
    del original.PatientIdentityRemoved
    table = _Table()
    options = frozenset({ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES})
    pseudonymiser = Pseudonymiser(b"s" * 32, options, table.record)
    pseudonymised = pseudonymiser.pseudonymise(original)
    scope = ResultScope(
        study_uid=str(original.StudyInstanceUID),
        patient_pseudonym=pseudonymiser.patient_pseudonym(str(original.PatientID)),
        accession_number=str(original.AccessionNumber),
        study_id=str(original.StudyID),
        study_of_instance={str(original.SOPInstanceUID): str(original.StudyInstanceUID)}.get,
        date_offset_days=pseudonymiser.date_offset_days(str(original.PatientID)),
    )
    return original, pseudonymised, table, scope


@pytest.mark.dicom3tools
def test_reidentified_gsps_draws_on_the_original_image_at_the_same_coordinates(
    dx_source: Dataset,
    make_result: Callable[..., AlgorithmResult],
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
) -> None:
    original, pseudonymised, table, scope = _original_and_pseudonymised(dx_source)
    assert pseudonymised.SOPInstanceUID != original.SOPInstanceUID
    box = region(pseudonymised, "box", ((5.0, 6.0), (15.0, 18.0)))
    result = AlgorithmResult(algorithm=make_result().algorithm, regions=(box,))
    gsps = build([pseudonymised], result)
    restored = reidentify(gsps, table.original_for, original, scope)
    path = write_dicom(restored, "gsps-restored")
    dciodvfy(path)
    loaded = dcmread(path)
    assert loaded.PatientID == "PID-1234567"
    assert loaded.AccessionNumber == "ACC-998877"
    assert loaded.StudyInstanceUID == original.StudyInstanceUID
    assert str(loaded.PresentationCreationDate) == str(gsps.PresentationCreationDate)  # own date
    (series,) = loaded.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == original.SeriesInstanceUID
    assert series.ReferencedImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    outline = _annotations(loaded, layer_name_for(FRACTURE, 1))[0]
    assert outline.ReferencedImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    corners = np.reshape(outline.GraphicObjectSequence[0].GraphicData, (-1, 2))
    assert np.allclose(corners, [(5, 6), (15, 6), (15, 18), (5, 18), (5, 6)])
    assert corners[:, 0].max() <= original.Columns and corners[:, 1].max() <= original.Rows
    assert str(pseudonymised.SOPInstanceUID) not in str(loaded)


def test_gsps_and_kos_on_an_image_not_received_are_refused(
    dx_source: Dataset, make_result: Callable[..., AlgorithmResult]
) -> None:
    original, pseudonymised, table, scope = _original_and_pseudonymised(dx_source)
    result = AlgorithmResult(
        algorithm=make_result().algorithm,
        regions=(region(pseudonymised, "point", ((5.0, 6.0),)),),
    )
    gsps = build([pseudonymised], result)
    kos = build_key_object_selection(
        [pseudonymised],
        result,
        series_instance_uid="2.25.300000000000000000000000000000000011",
        sop_instance_uid="2.25.300000000000000000000000000000000012",
        series_number=9905,
        instance_number=1,
        device_observer_uid="2.25.300000000000000000000000000000000013",
    )
    restored = reidentify(kos, table.original_for, original, scope)
    refs = {str(e.value) for e in restored.iterall() if e.keyword == "ReferencedSOPInstanceUID"}
    assert refs == {str(original.SOPInstanceUID)}
    nowhere = dataclasses.replace(scope, study_of_instance=lambda _: None)
    for obj in (gsps, kos):
        with pytest.raises(UnknownReferenceError, match="instance not received"):
            reidentify(obj, table.original_for, original, nowhere)


@pytest.mark.dicom3tools
def test_gsps_on_a_monochrome1_cr_keeps_its_voi_lut_and_inverts(
    cr_source: Dataset,
    make_result: Callable[..., AlgorithmResult],
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
) -> None:
    """The CR's VOI LUT is stored as US (a list of numbers); highdicom needs bytes."""
    lut = list(cr_source.VOILUTSequence[0].LUTData)
    result = AlgorithmResult(
        algorithm=make_result().algorithm,
        regions=(region(cr_source, "box", ((100.0, 200.0), (900.0, 1400.0))),),
    )
    gsps = build([cr_source], result)
    dciodvfy(write_dicom(gsps, "gsps-cr"))
    assert gsps.PresentationLUTShape == "INVERSE"
    (voi,) = gsps.SoftcopyVOILUTSequence[0].VOILUTSequence
    assert np.array_equal(np.frombuffer(voi.LUTData, dtype="<u2"), lut)
    assert list(cr_source.VOILUTSequence[0].LUTData) == lut  # the source is not modified
    assert not isinstance(cr_source.VOILUTSequence[0].LUTData, bytes)


@pytest.mark.dicom3tools
def test_gsps_on_a_ct_slice_keeps_its_window(
    ct_source: Dataset,
    make_result: Callable[..., AlgorithmResult],
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
) -> None:
    result = AlgorithmResult(
        algorithm=make_result().algorithm,
        regions=(region(ct_source, "polygon", ((10.0, 10.0), (60.0, 12.0), (30.0, 50.0))),),
    )
    gsps = build([ct_source], result)
    dciodvfy(write_dicom(gsps, "gsps-ct"))
    assert gsps.PresentationLUTShape == "IDENTITY"
    voi = gsps.SoftcopyVOILUTSequence[0]
    assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (40.0, 400.0)
    assert float(gsps.RescaleIntercept) == -1024.0


@pytest.mark.dicom3tools
def test_regions_on_frames_of_a_multiframe_image_name_their_frame(
    dx_source: Dataset,
    make_result: Callable[..., AlgorithmResult],
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
) -> None:
    multi = copy.deepcopy(dx_source)
    multi.SOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"  # X-Ray Angiographic: multi-frame
    multi.NumberOfFrames = 3
    multi.PixelData = dx_source.PixelData * 3
    first = dataclasses.replace(region(multi, "point", ((1.0, 2.0),)), frame_number=1)
    third = dataclasses.replace(region(multi, "point", ((3.0, 4.0),)), frame_number=3)
    result = AlgorithmResult(algorithm=make_result().algorithm, regions=(first, third))
    gsps = build([multi], result)
    frames = [
        (int(a.ReferencedImageSequence[0].ReferencedFrameNumber), [float(v) for v in g.GraphicData])
        for a in gsps.GraphicAnnotationSequence
        for g in a.get("GraphicObjectSequence", [])
    ]
    assert frames == [(1, [1.0, 2.0]), (3, [3.0, 4.0])]
    dciodvfy(write_dicom(gsps, "gsps-multiframe"))
    # a classic multi-frame image's own rescale and window (no functional groups)
    assert (float(gsps.RescaleSlope), float(gsps.RescaleIntercept)) == (1.0, 0.0)
    assert float(gsps.SoftcopyVOILUTSequence[0].WindowWidth) == 256.0

    # frame 1 of a single-frame image is the image itself
    single = dataclasses.replace(region(dx_source, "point", ((1.0, 2.0),)), frame_number=1)
    gsps = build([dx_source], AlgorithmResult(algorithm=result.algorithm, regions=(single,)))
    assert (
        "ReferencedFrameNumber" not in gsps.GraphicAnnotationSequence[0].ReferencedImageSequence[0]
    )
