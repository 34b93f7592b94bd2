"""Binary DICOM Segmentation of an algorithm's mask: validity (dciodvfy), pixels, frames."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from aifi_app.algorithms.findings import AlgorithmIdentity, CodedConcept, SegmentationMask
from aifi_app.results import build_segmentation
from aifi_app.results.segmentation import build_segmentation_headers, segmentation_frame_order
from aifi_app.results.segmentation_frames import kept_frames, omit_frames

LUNG = CodedConcept("39607008", "SCT", "Lung")
SEG_UIDS = {
    "series_instance_uid": "2.25.300000000000000000000000000000000001",
    "sop_instance_uid": "2.25.300000000000000000000000000000000002",
    "series_number": 9003,
    "instance_number": 1,
    "software_version": "0.3.0",
}


def lung_mask(series: list[Dataset]) -> SegmentationMask:
    """A mask on the middle slices only (the first and last hold nothing)."""
    mask = np.zeros((len(series), 512, 512), dtype=bool)
    mask[1:-1, 100:300, 150:260] = True
    mask[1, 120:140, 170:190] = False  # a hole, so the frames differ
    return SegmentationMask.from_array(
        LUNG, "Lung", tuple(str(ds.SOPInstanceUID) for ds in series), mask
    )


def build(series: list[Dataset], mask: SegmentationMask, algorithm: AlgorithmIdentity) -> Dataset:
    return build_segmentation(series, mask, algorithm, **SEG_UIDS)  # type: ignore[arg-type]


@pytest.mark.dicom3tools
def test_seg_is_valid_and_holds_the_mask_on_its_sources(
    ct_series: list[Dataset],
    algorithm: AlgorithmIdentity,
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
) -> None:
    mask = lung_mask(ct_series)
    path = write_dicom(build(ct_series, mask, algorithm), "seg")
    dciodvfy(path)
    seg = dcmread(path)
    assert seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == ct_series[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == ct_series[0].FrameOfReferenceUID
    # one frame per slice with lung (the empty first and last left out), referencing
    # that slice, at its position
    index_of = {str(ds.SOPInstanceUID): n for n, ds in enumerate(ct_series)}
    frames = seg.PerFrameFunctionalGroupsSequence
    sources = [
        index_of[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        for frame in frames
    ]
    assert sorted(sources) == [1, 2]
    for n, frame in zip(sources, frames, strict=True):
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        assert [float(v) for v in position] == [float(v) for v in ct_series[n].ImagePositionPatient]
    assert np.array_equal(seg.pixel_array.astype(bool), mask.mask[sources])


def test_seg_refuses_a_mask_that_does_not_fit(
    ct_series: list[Dataset], algorithm: AlgorithmIdentity
) -> None:
    mask = lung_mask(ct_series)
    with pytest.raises(ValueError, match="not among the sources"):
        build(ct_series[:2], mask, algorithm)
    short = SegmentationMask.from_array(LUNG, "Lung", mask.source_sop_instance_uids, mask.mask[:2])
    with pytest.raises(ValueError, match="2 frames for 4 source images"):
        build(ct_series, short, algorithm)


@pytest.mark.dicom3tools
def test_an_empty_mask_gives_empty_frames_on_every_source(
    ct_series: list[Dataset],
    algorithm: AlgorithmIdentity,
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
) -> None:
    uids = tuple(str(ds.SOPInstanceUID) for ds in ct_series)
    empty = SegmentationMask.from_array(LUNG, "Lung", uids, np.zeros((4, 512, 512), dtype=bool))
    path = write_dicom(build(ct_series, empty, algorithm), "empty-seg")
    dciodvfy(path)
    seg = dcmread(path)
    assert int(seg.NumberOfFrames) == len(ct_series)
    assert not seg.pixel_array.any()


@pytest.mark.dicom3tools
def test_frames_that_do_not_end_on_a_byte_keep_their_pixels(
    ct_series: list[Dataset],
    algorithm: AlgorithmIdentity,
    write_dicom: Callable[[Dataset, str], Path],
    dciodvfy: Callable[[Path], list[str]],
) -> None:
    """5 x 7 frames: a BINARY SEG's frames then share bytes (no padding between them)."""
    for ds in ct_series:
        ds.Rows, ds.Columns = 5, 7
        ds.PixelData = np.zeros((5, 7), dtype=np.int16).tobytes()
    rng = np.random.default_rng(3)
    pixels = rng.random((4, 5, 7)) < 0.5
    pixels[2] = False
    uids = tuple(str(ds.SOPInstanceUID) for ds in ct_series)
    path = write_dicom(
        build(ct_series, SegmentationMask.from_array(LUNG, "Lung", uids, pixels), algorithm),
        "small-seg",
    )
    dciodvfy(path)
    seg = dcmread(path)
    index_of = {uid: n for n, uid in enumerate(uids)}
    order = [
        index_of[f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        for f in seg.PerFrameFunctionalGroupsSequence
    ]
    assert sorted(order) == [0, 1, 3]  # the empty frame left out
    assert np.array_equal(seg.pixel_array.astype(bool), pixels[order])


@pytest.mark.parametrize(
    ("slices", "three_d"),
    [((1, 2), True), ((0, 2, 3), False), ((0, 2), True), ((1,), False), ((0, 1, 2, 3), True)],
    ids=["middle", "a gap", "every other", "one", "all"],
)
def test_frames_and_pixels_equal_highdicoms_from_the_whole_array(
    ct_series: list[Dataset],
    algorithm: AlgorithmIdentity,
    slices: tuple[int, ...],
    three_d: bool,
) -> None:
    """The stand-in build, its empty frames then left out, gives the frames, per-frame
    groups, Pixel Data and dimension organisation that highdicom gives when it gets the
    whole mask as an array (its default: empty frames omitted); with the segment on
    evenly spaced slices it stays "3D", with a gap or on one slice it is not."""
    pixels = np.zeros((len(ct_series), 512, 512), dtype=bool)
    for n in slices:
        pixels[n, 100 + n : 300, 150:260] = True  # the frames differ
    uids = tuple(str(ds.SOPInstanceUID) for ds in ct_series)
    ours = build(ct_series, SegmentationMask.from_array(LUNG, "Lung", uids, pixels), algorithm)
    theirs = hd.seg.Segmentation(
        source_images=ct_series,
        pixel_array=pixels.view(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=ours.SegmentSequence,
        series_instance_uid=ours.SeriesInstanceUID,
        series_number=1,
        sop_instance_uid=ours.SOPInstanceUID,
        instance_number=1,
        manufacturer="x",
        manufacturer_model_name="x",
        software_versions="x",
        device_serial_number="0",
    )
    assert int(ours.NumberOfFrames) == int(theirs.NumberOfFrames) == len(slices)
    assert ours.PixelData == theirs.PixelData
    ours_frames, their_frames = (
        [
            (
                f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID,
                [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient],
                list(f.FrameContentSequence[0].DimensionIndexValues),
            )
            for f in seg.PerFrameFunctionalGroupsSequence
        ]
        for seg in (ours, theirs)
    )
    assert ours_frames == their_frames
    assert sorted(uids.index(uid) for uid, _, _ in ours_frames) == list(slices)
    # every per-frame and shared functional group, every attribute (values that the
    # two builds set differently aside): highdicom's own, and a plain data set
    assert ours.PerFrameFunctionalGroupsSequence == theirs.PerFrameFunctionalGroupsSequence
    assert ours.SharedFunctionalGroupsSequence == theirs.SharedFunctionalGroupsSequence
    assert [  # a new Dimension Organization UID for each
        (d.DimensionIndexPointer, d.FunctionalGroupPointer, d.DimensionDescriptionLabel)
        for d in ours.DimensionIndexSequence
    ] == [
        (d.DimensionIndexPointer, d.FunctionalGroupPointer, d.DimensionDescriptionLabel)
        for d in theirs.DimensionIndexSequence
    ]
    assert ours.get("DimensionOrganizationType") == theirs.get("DimensionOrganizationType")
    assert ("DimensionOrganizationType" in ours) == three_d
    assert set(ours.keys()) ^ set(theirs.keys()) == {Tag("SeriesDescription")}  # ours only
    assert type(ours) is Dataset


def test_nothing_but_the_frames_kept_and_pixel_data_depends_on_the_mask(
    ct_series: list[Dataset], algorithm: AlgorithmIdentity
) -> None:
    """Given its creation time and dimension organisation UID, the SEG of any mask over
    the same sources (empty, partial, another) is the headers' build with the frames the
    mask leaves empty left out, and its Pixel Data."""
    created = datetime.datetime(2026, 11, 29, 9, 0, 0, 500)
    fixed = {**SEG_UIDS, "created": created, "dimension_organization_uid": "2.25.77"}
    headers = build_segmentation_headers(ct_series, LUNG, "Lung", algorithm, **fixed)  # type: ignore[arg-type]
    assert "PixelData" not in headers or headers.PixelData == b""
    uids = tuple(str(ds.SOPInstanceUID) for ds in ct_series)
    masks = [
        lung_mask(ct_series),
        SegmentationMask.from_array(LUNG, "Lung", uids, np.zeros((4, 512, 512), dtype=bool)),
        SegmentationMask.from_array(LUNG, "Lung", uids[::-1], lung_mask(ct_series).mask),
    ]
    kept_of_each = []
    for mask in masks:
        seg = build_segmentation(ct_series, mask, algorithm, **fixed)  # type: ignore[arg-type]
        index_of = {uid: n for n, uid in enumerate(mask.source_sop_instance_uids)}
        every = [index_of[uid] for uid in segmentation_frame_order(headers)]
        kept = kept_frames([bool(mask.packed.frames_set()[i]) for i in every])
        expected = copy.deepcopy(headers)
        omit_frames(expected, kept)
        without = Dataset({e.tag: e for e in seg if e.keyword != "PixelData"})
        assert without == Dataset({e.tag: e for e in expected if e.keyword != "PixelData"})
        order = [index_of[uid] for uid in segmentation_frame_order(seg)]
        assert order == [every[k] for k in kept]
        assert seg.PixelData == mask.packed.pixel_data(order)
        kept_of_each.append(len(kept))
    assert kept_of_each == [2, 4, 2]  # the empty mask keeps every frame
    assert str(headers.ContentDate) == str(headers.InstanceCreationDate) == "20261129"
    assert str(headers.ContentTime) == str(headers.InstanceCreationTime) == "090000.000500"
    assert {d.DimensionOrganizationUID for d in headers.DimensionIndexSequence} == {"2.25.77"}
    assert headers.DimensionOrganizationSequence[0].DimensionOrganizationUID == "2.25.77"


def test_the_sources_order_is_the_callers(
    ct_series: list[Dataset], algorithm: AlgorithmIdentity
) -> None:
    """The frames' source images come in the order of ``sources``, whatever the mask's."""
    mask = lung_mask(ct_series)
    reversed_mask = SegmentationMask.from_array(
        LUNG, "Lung", mask.source_sop_instance_uids[::-1], mask.mask[::-1]
    )
    fixed = {
        **SEG_UIDS,
        "created": datetime.datetime(2026, 1, 1),
        "dimension_organization_uid": "2.25.7",
    }
    one = build_segmentation(ct_series, mask, algorithm, **fixed)  # type: ignore[arg-type]
    other = build_segmentation(ct_series, reversed_mask, algorithm, **fixed)  # type: ignore[arg-type]
    assert one == other
