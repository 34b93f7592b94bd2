"""Long top-level sequences encoded ahead of pydicom's writer: the same bytes as pydicom's
own ``dcmwrite`` of the same data set, and pydicom's writer where this encoder steps aside."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

from aifi_app.algorithms.findings import AlgorithmIdentity, CodedConcept, SegmentationMask
from aifi_app.encoded_sequences import with_long_sequences_encoded
from aifi_app.results import build_segmentation
from aifi_app.sample_studies import ct_series, demo_patient

ALGORITHM = AlgorithmIdentity(
    algorithm_id="ct-lung-volume", name="Lung volume", version="1.0", vendor="AIFI Test Vendor"
)


def _written(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _seg(slices: int) -> Dataset:
    series = list(ct_series(demo_patient(1), slices, size=32))
    mask = np.zeros((slices, 32, 32), dtype=bool)
    mask[1:-1, 4:20, 6:25] = True
    mask[2, 5:9, 7:9] = False
    segmentation = SegmentationMask.from_array(
        CodedConcept("39607008", "SCT", "Lung"),
        "Lung",
        tuple(str(ds.SOPInstanceUID) for ds in series),
        mask,
    )
    return build_segmentation(
        series,
        segmentation,
        ALGORITHM,
        series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        series_number=9003,
        instance_number=1,
        software_version="0.3.0",
    )


def test_a_segs_per_frame_groups_are_written_as_pydicom_writes_them() -> None:
    seg = _seg(60)
    plain = _written(seg)
    encoded = with_long_sequences_encoded(seg)
    assert encoded is not seg
    assert encoded.get_item("PerFrameFunctionalGroupsSequence").is_raw
    assert encoded.get_item("ReferencedSeriesSequence").is_raw  # 1 item, 60 nested
    assert not encoded.get_item("SharedFunctionalGroupsSequence").is_raw  # 4 items: pydicom's
    assert _written(encoded) == plain
    # the SEG itself is unchanged and still writes the same
    assert not seg.get_item("PerFrameFunctionalGroupsSequence").is_raw
    assert len(seg.PerFrameFunctionalGroupsSequence) == 58  # the two empty frames left out
    assert _written(seg) == plain
    assert int(dcmread(io.BytesIO(plain)).NumberOfFrames) == 58


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _varied_items(count: int) -> Dataset:
    """Items with what the encoder must reproduce: nested sequences and items of
    undefined length, an empty sequence, DS with and without their original text, values
    of several numbers, floats 0.0 and -0.0, a private element, a group length, text in
    the data set's character set and in an item's own."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.SOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    items = []
    for n in range(count):
        item = Dataset()
        item.add_new(0x00200000, "UL", 4)  # a group length: not written
        item.ImagePositionPatient = [DSfloat("-1.50"), n * 0.5, DSfloat("1e3")]
        item.SliceThickness = "2.00" if n % 2 else DSfloat(2.0)
        item.DimensionIndexValues = [1, n + 1]
        item.InstanceNumber = n % 3
        item.ContentDescription = "Lungvolume ä" if n % 2 else "Lung volume"
        item.InStackPositionNumber = n + 1
        item.add_new(0x00409225, "FD", -0.0 if n % 2 else 0.0)  # Real World Value Slope
        item.add_new(0x00110010, "LO", "AIFI PRIVATE")
        item.add_new(0x00111001, "OB", bytes([n % 256, 1]))
        item.ReferencedImageSequence = Sequence([])
        inner = _code("121322" if n % 4 else "113076", "Source image" if n % 4 else "Segm.")
        if n % 3 == 0:
            inner.is_undefined_length_sequence_item = True
        item.PurposeOfReferenceCodeSequence = Sequence([inner])
        if n % 5 == 0:
            item["PurposeOfReferenceCodeSequence"].is_undefined_length = True
        if n % 7 == 0:
            item.SpecificCharacterSet = "ISO_IR 192"
            item.SeriesDescription = "ÅÄÖ €"
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
    return ds


def test_varied_items_are_written_as_pydicom_writes_them() -> None:
    ds = _varied_items(40)
    encoded = with_long_sequences_encoded(ds)
    assert encoded is not ds
    assert _written(encoded) == _written(ds)


def test_a_short_sequence_with_a_long_nested_one_is_encoded() -> None:
    ds = _varied_items(40)
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    series.ReferencedInstanceSequence = ds.PerFrameFunctionalGroupsSequence
    del ds.PerFrameFunctionalGroupsSequence
    ds.ReferencedSeriesSequence = Sequence([series])  # one item, 40 nested
    encoded = with_long_sequences_encoded(ds)
    assert encoded is not ds
    assert encoded.get_item("ReferencedSeriesSequence").is_raw
    assert not encoded.get_item("SharedFunctionalGroupsSequence").is_raw
    assert _written(encoded) == _written(ds)
    # 81 items in all: the series item, 40 nested, and a code item in each of those
    assert with_long_sequences_encoded(ds, many_items=82) is ds
    assert with_long_sequences_encoded(ds, many_items=81) is not ds


def test_an_undefined_length_sequence_is_written_as_pydicom_writes_it() -> None:
    ds = _varied_items(40)
    ds["PerFrameFunctionalGroupsSequence"].is_undefined_length = True
    encoded = with_long_sequences_encoded(ds, many_items=10)
    assert encoded is not ds
    assert _written(encoded) == _written(ds)


def test_pydicom_writes_what_the_encoder_does_not_reproduce(tmp_path: Path) -> None:
    short = _varied_items(5)
    assert with_long_sequences_encoded(short) is short  # fewer items than MANY_ITEMS
    assert with_long_sequences_encoded(short, many_items=5) is not short

    ambiguous = _varied_items(40)  # pydicom corrects it by the Pixel Representation
    ambiguous.PerFrameFunctionalGroupsSequence[3].add_new(0x00280106, "US or SS", 7)
    assert with_long_sequences_encoded(ambiguous) is ambiguous

    top_level = _varied_items(40)  # corrected as pydicom's writer corrects it
    top_level.add_new(0x7FE00010, "OB or OW", b"\x00\x01" * 8)
    top_level.BitsAllocated = 16
    encoded = with_long_sequences_encoded(top_level)
    assert encoded is not top_level
    assert encoded["PixelData"].VR == "OW"
    assert _written(encoded) == _written(top_level)

    implicit = _varied_items(40)
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    assert with_long_sequences_encoded(implicit) is implicit

    path = tmp_path / "read.dcm"
    dcmwrite(path, _varied_items(40), enforce_file_format=True)
    read = dcmread(path)  # its elements are raw until used
    assert with_long_sequences_encoded(read) is read
    read.PatientName  # noqa: B018 - the top level decoded, the items still raw
    assert with_long_sequences_encoded(read) is read


def test_items_and_their_parts_are_encoded_as_pydicom_writes_them() -> None:
    """A sequence element put together from encoded items, an item and an element is
    the sequence pydicom writes; an item pydicom must write itself is refused."""
    from pydicom.dataelem import RawDataElement

    from aifi_app.encoded_sequences import (
        element_bytes,
        encoded_items,
        item_bytes,
        sequence_bytes,
    )

    series = list(ct_series(demo_patient(1), 3, size=16))
    items = []
    for source in series:
        item = Dataset()
        item.ReferencedSOPClassUID = source.SOPClassUID
        item.ReferencedSOPInstanceUID = source.SOPInstanceUID
        items.append(item)
    study = Dataset()
    study.ReferencedSeriesSequence = [Dataset()]
    study.ReferencedSeriesSequence[0].ReferencedSOPSequence = items
    study.ReferencedSeriesSequence[0].SeriesInstanceUID = series[0].SeriesInstanceUID
    study.StudyInstanceUID = series[0].StudyInstanceUID
    ds = _dataset_with(Sequence([study]))
    series_item = item_bytes(
        sequence_bytes(0x00081199, encoded_items(items))
        + element_bytes(study.ReferencedSeriesSequence[0]["SeriesInstanceUID"])
    )
    study_item = item_bytes(
        sequence_bytes(0x00081115, series_item) + element_bytes(study["StudyInstanceUID"])
    )
    expected = _written(ds)
    assert sequence_bytes(0x0040A375, study_item) in expected
    raw = Dataset()
    raw[0x00080018] = RawDataElement(BaseTag(0x00080018), "UI", 4, b"1.2\0", 0, False, True)
    with pytest.raises(ValueError, match="left to pydicom"):
        encoded_items([raw])


def _dataset_with(evidence: Sequence) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.SOPInstanceUID = generate_uid()
    ds.CurrentRequestedProcedureEvidenceSequence = evidence
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@pytest.mark.parametrize("pixel_representation", [0, 1])
def test_an_ambiguous_vr_in_a_short_sequence_is_corrected_as_pydicom_corrects_it(
    pixel_representation: int,
) -> None:
    """The encoded data set is marked as of its file's encoding, so pydicom's writer skips
    its correction of ambiguous VRs from the top; those in the short sequences it writes
    are still corrected from their ancestors, as in the data set written whole (a signed
    image's US-or-SS value is SS)."""

    ds = _varied_items(40)
    ds.PixelRepresentation = pixel_representation
    lut = Dataset()
    lut.add_new(0x00280106, "US or SS", 7)  # Smallest Image Pixel Value, a level down
    ds.ModalityLUTSequence = Sequence([lut])
    ds.add_new(0x00280107, "US or SS", 9)  # Largest Image Pixel Value, at the top
    expected = _written(copy.deepcopy(ds))  # (pydicom's writer corrects VRs in place)
    assert ds.ModalityLUTSequence[0][0x00280106].VR == "US or SS"
    encoded = with_long_sequences_encoded(ds)
    assert encoded is not ds
    assert _written(encoded) == expected
    vr = dcmread(io.BytesIO(expected))["ModalityLUTSequence"][0][0x00280106].VR
    assert vr == ("SS" if pixel_representation else "US")
