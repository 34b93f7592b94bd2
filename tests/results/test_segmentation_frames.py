"""A SEG's empty frames left out: on its encoded header (the SEG built ahead) the same bytes
as on its data set (the SEG built whole), and headers it cannot splice refused."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from aifi_app.algorithms.findings import AlgorithmIdentity, CodedConcept
from aifi_app.part10 import part10_bytes
from aifi_app.results.segmentation import build_segmentation_headers
from aifi_app.results.segmentation_frames import (
    FrameLayout,
    LayoutUnknown,
    frame_layout,
    kept_frames,
    omit_frames,
    without_frames,
)
from aifi_app.sample_studies import ct_series, demo_patient

ALGORITHM = AlgorithmIdentity(
    algorithm_id="ct-lung-volume", name="Lung volume", version="1.0", vendor="AIFI Test Vendor"
)
SLICES = 40  # more than MANY_ITEMS: the per-frame items encoded ahead, as a CT's are


@pytest.fixture(scope="module")
def headers() -> Dataset:
    """A SEG's elements over 40 slices but its Pixel Data (as the child builds it ahead)."""
    series = list(ct_series(demo_patient(1), SLICES, size=16))
    ds = build_segmentation_headers(
        series,
        CodedConcept("39607008", "SCT", "Lung"),
        "Lung",
        ALGORITHM,
        series_instance_uid="2.25.1",
        sop_instance_uid="2.25.2",
        series_number=9003,
        instance_number=1,
        software_version="x",
    )
    del ds.PixelData
    assert ds.DimensionOrganizationType == "3D"
    return ds


def _undefined_lengths(ds: Dataset) -> Dataset:
    """``ds`` with its per-frame sequence, each item and the items' nested sequences and
    items of undefined length (delimited), as another writer may encode them."""
    ds = copy.deepcopy(ds)
    ds["PerFrameFunctionalGroupsSequence"].is_undefined_length = True
    for item in ds.PerFrameFunctionalGroupsSequence:
        item.is_undefined_length_sequence_item = True
        for element in item:
            if element.VR == "SQ":
                element.is_undefined_length = True
                for inner in element.value:
                    inner.is_undefined_length_sequence_item = True
    return ds


KEPT = {
    "the first": [0],
    "a run in the middle": list(range(5, 35)),
    "a gap": [*range(3, 10), *range(12, 20)],
    "every other": list(range(0, SLICES, 2)),
    "the last two": [SLICES - 2, SLICES - 1],
    "all": list(range(SLICES)),
}


@pytest.mark.parametrize("undefined", [False, True], ids=["defined lengths", "undefined"])
@pytest.mark.parametrize("kept", KEPT.values(), ids=KEPT.keys())
def test_the_encoded_header_without_frames_is_the_data_set_without_them(
    headers: Dataset, kept: list[int], undefined: bool
) -> None:
    ds = _undefined_lengths(headers) if undefined else headers
    header = part10_bytes(ds)
    layout = frame_layout(header)
    assert len(layout.items) == SLICES
    assert layout.undefined_length == undefined
    expected = copy.deepcopy(ds)
    omit_frames(expected, kept)
    spliced = without_frames(header, layout, kept)
    assert spliced == part10_bytes(expected)
    # read back: the frames kept, renumbered along their positions, in order
    back = dcmread(io.BytesIO(spliced))
    assert int(back.NumberOfFrames) == len(kept)
    items = back.PerFrameFunctionalGroupsSequence
    assert [list(i.FrameContentSequence[0].DimensionIndexValues) for i in items] == [
        [1, n] for n in range(1, len(kept) + 1)
    ]
    positions = [
        list(
            headers.PerFrameFunctionalGroupsSequence[n]
            .PlanePositionSequence[0]
            .ImagePositionPatient
        )
        for n in kept
    ]
    assert [list(i.PlanePositionSequence[0].ImagePositionPatient) for i in items] == positions
    evenly = len(kept) > 1 and len(set(np.diff(kept))) == 1
    assert ("DimensionOrganizationType" in back) == evenly
    if len(kept) == SLICES:
        assert spliced == header  # nothing to leave out


def test_the_layout_is_kept_as_json_and_read_back(headers: Dataset) -> None:
    layout = frame_layout(part10_bytes(headers))
    assert FrameLayout.from_json(layout.to_json()) == layout
    for raw in ({}, {"number_of_frames": "x"}, {**layout.to_json(), "items": [[1]]}):
        with pytest.raises(LayoutUnknown):
            FrameLayout.from_json(raw)


def test_a_header_it_cannot_splice_is_refused(headers: Dataset) -> None:
    header = part10_bytes(headers)
    with pytest.raises(LayoutUnknown, match="not a DICOM file"):
        frame_layout(header[128:])
    with pytest.raises(LayoutUnknown, match=r"runs past|ends inside"):
        frame_layout(header[: len(header) // 2])
    implicit = copy.deepcopy(headers)
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    with pytest.raises(LayoutUnknown):
        frame_layout(part10_bytes(implicit))
    with_pixels = copy.deepcopy(headers)
    with_pixels.PixelData = b"\0" * 2
    with pytest.raises(LayoutUnknown, match="Pixel Data"):
        frame_layout(part10_bytes(with_pixels))
    miscounted = copy.deepcopy(headers)
    miscounted.NumberOfFrames = SLICES - 1
    with pytest.raises(LayoutUnknown, match="not the number of items"):
        frame_layout(part10_bytes(miscounted))


def test_frames_kept_are_those_with_the_segment_or_all() -> None:
    assert kept_frames([False, True, False, True]) == [1, 3]
    assert kept_frames([False, False]) == [0, 1]  # none set: every frame, as highdicom


@pytest.mark.parametrize("kept", [[], [2, 1], [1, 1], [-1], [SLICES]])
def test_frames_to_keep_must_be_some_of_them_in_order(headers: Dataset, kept: list[int]) -> None:
    header = part10_bytes(headers)
    with pytest.raises(ValueError, match="distinct, ascending"):
        without_frames(header, frame_layout(header), kept)
    with pytest.raises(ValueError, match="distinct, ascending"):
        omit_frames(copy.deepcopy(headers), kept)
