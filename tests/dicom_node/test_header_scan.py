"""The in-memory header scan against pydicom: where it answers, it answers as pydicom does.

Property: for any data set (generated, or a malformed mutation of a valid one), either
:func:`scan_header` returns None (the node then reads the file with pydicom, as before) or
pydicom's ``dcmread(..., stop_before_pixels=True)`` reads the same bytes without an error
or a warning and gives the same six values. And it does answer for ordinary instances,
so the fast path is not dead code.
"""

from __future__ import annotations

import struct
import warnings
from io import BytesIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
)

from aifi_app.dicom_node.header_scan import Header, scan_header
from aifi_app.sample_studies import ct_series, demo_patient
from tests.helpers.fuzz_data import BASE, malformed_files

KEYWORDS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "StudyDescription",
)
_HEADER_TAGS = [*KEYWORDS]
SCAN = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def split(part10: bytes) -> tuple[bytes, str]:
    """A Part-10 file's data set bytes and transfer syntax."""
    meta_end = 132 + 12 + struct.unpack("<L", part10[140:144])[0]
    syntax = str(dcmread(BytesIO(part10[:meta_end]), force=True).file_meta.TransferSyntaxUID)
    return part10[meta_end:], syntax


def pydicom_header(part10: bytes) -> Header | None:
    """What pydicom reads (None: it raised or warned)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = dcmread(BytesIO(part10), stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            values = [ds.get(k) for k in KEYWORDS]
            texts = [None if v is None else str(v) for v in values]
    except Exception:
        return None
    return Header(*texts)


def check(part10: bytes, cut: int | None = None) -> Header | None:
    data_set, syntax = split(part10)
    head = data_set if cut is None else data_set[:cut]
    scanned = scan_header(head, syntax, complete=len(head) == len(data_set))
    if scanned is not None:
        assert scanned == pydicom_header(part10)
    return scanned


def part10(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.file_meta.TransferSyntaxUID = syntax
    out = BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


_TEXTS = st.one_of(
    st.sampled_from(["1.2.3", "1.2.840.10008.5.1.4.1.1.2", "CT", "MR", "Thorax", "", " ", "A B"]),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x17F), max_size=70),
    st.from_regex(r"[0-9.]{1,70}", fullmatch=True),
    st.from_regex(r"[0-9.]{1,20}\\[0-9.]{1,20}", fullmatch=True),
)


@st.composite
def generated(draw: st.DrawFn) -> bytes:
    """A data set with the six elements present or not, any text, other elements around."""
    ds = Dataset()
    ds.set_original_encoding(False, True)
    charset = draw(st.sampled_from([None, "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87", "X"]))
    if charset is not None:
        ds.SpecificCharacterSet = charset
    vrs = {"SOPClassUID": "UI", "SOPInstanceUID": "UI", "StudyInstanceUID": "UI"}
    vrs |= {"SeriesInstanceUID": "UI", "Modality": "CS", "StudyDescription": "LO"}
    for keyword, vr in vrs.items():
        if draw(st.booleans()):
            value = draw(_TEXTS)
            ds.add_new(keyword, vr, None)
            ds[keyword]._value = value  # as given, unvalidated
    if draw(st.booleans()):
        ds.AccessionNumber = "A1"
    if draw(st.booleans()):
        item = Dataset()
        item.CodeValue = "1"
        ds.ProcedureCodeSequence = Sequence([item])
    if draw(st.booleans()):
        ds.add_new(0x00091010, "LO", "private")
    if draw(st.booleans()):
        ds.Rows = 2
        ds.PixelData = b"\0" * 8
    syntax = draw(st.sampled_from([ImplicitVRLittleEndian, ExplicitVRLittleEndian]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return part10(ds, syntax)
    except Exception:
        return part10(Dataset(), syntax)


@SCAN
@given(generated(), st.integers(0, 2000) | st.none())
def test_generated_data_sets_scan_as_pydicom_reads_them(data: bytes, cut: int | None) -> None:
    check(data, cut)


@SCAN
@given(malformed_files(), st.integers(0, 4000) | st.none())
def test_malformed_data_sets_scan_as_pydicom_reads_them_or_not_at_all(
    data: bytes, cut: int | None
) -> None:
    # the file meta is the node's own (written from the command), the data set as sent
    meta_end = len(BASE) - len(split(BASE)[0])
    check(BASE[:meta_end] + data[meta_end:], cut)


def test_an_ordinary_instance_is_scanned_in_either_little_endian_syntax() -> None:
    ds = next(ct_series(demo_patient(1), 1, size=16))
    for syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
        data = part10(ds, syntax)
        header = check(data)
        assert header is not None
        assert header.study_instance_uid == ds.StudyInstanceUID
        assert header.sop_instance_uid == ds.SOPInstanceUID
        assert header.modality == "CT"
    assert check(BASE) is not None  # the fuzz campaigns' radiograph


def test_the_header_is_found_before_the_pixel_data_arrives() -> None:
    ds = next(ct_series(demo_patient(2), 1, size=64))
    data_set, syntax = split(part10(ds, ExplicitVRLittleEndian))
    pixels = data_set.index(struct.pack("<HH", 0x7FE0, 0x0010))
    assert scan_header(data_set[: pixels + 12], syntax, complete=False) is not None
    # the pixel data's element header itself must be whole (pydicom reads all of it)
    assert scan_header(data_set[: pixels + 8], syntax, complete=False) is None
    # a head that ends before the pixel data is not enough: pydicom decides
    assert scan_header(data_set[: pixels - 1], syntax, complete=False) is None


def test_a_pixel_data_element_header_cut_short_is_left_to_pydicom() -> None:
    """A file that ends 8 bytes into an explicit VR Pixel Data element (its 4-byte length
    missing): pydicom refuses it, so the scan must not answer, whole or cut there (found
    by the malformed-file campaign)."""
    ds = next(ct_series(demo_patient(3), 1, size=16))
    whole = part10(ds, ExplicitVRLittleEndian)
    pixels = whole.index(struct.pack("<HH", 0x7FE0, 0x0010))
    truncated = whole[: pixels + 8]
    assert pydicom_header(truncated) is None
    data_set, syntax = split(truncated)
    assert scan_header(data_set, syntax, complete=True) is None
    assert scan_header(data_set, syntax, complete=False) is None
    assert check(whole) is not None  # whole, it is scanned as before


@pytest.mark.parametrize(
    "syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian, "1.2.3", ""]
)
def test_other_syntaxes_are_left_to_pydicom(syntax: str) -> None:
    data_set, _ = split(BASE)
    assert scan_header(data_set, syntax, complete=True) is None


def test_encapsulated_syntaxes_are_scanned_as_explicit_vr() -> None:
    data_set, _ = split(BASE)
    assert scan_header(data_set, JPEG2000Lossless, complete=True) is not None


def test_an_undefined_length_sequence_is_left_to_pydicom() -> None:
    ds = next(ct_series(demo_patient(3), 1, size=16))
    data = part10(ds, ExplicitVRLittleEndian)
    patient_name = data.index(struct.pack("<HH2s", 0x0010, 0x0010, b"PN"))
    sequence = (
        struct.pack("<HH2sHL", 0x0008, 0x1032, b"SQ", 0, 0xFFFFFFFF)  # Procedure Code Seq.
        + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + struct.pack("<HH2sH", 0x0008, 0x0100, b"SH", 2)
        + b"1 "
        + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    )
    data = data[:patient_name] + sequence + data[patient_name:]
    assert check(data) is None
    assert pydicom_header(data) is not None
