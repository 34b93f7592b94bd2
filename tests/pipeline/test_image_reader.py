"""A job's image read for its runner without pydicom's reader: the very data set
``dcmread(path, defer_size=64 KiB)`` gives (elements, values, file meta, the pixel data
left in the file and read from it), for the work files the pseudonymiser writes; every
other file is read by ``dcmread`` itself, with the same data set or the same error. The
same for a received instance's selection tags (``dcmread`` with ``specific_tags``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from aifi_app.pipeline import image_reader
from aifi_app.pipeline.image_reader import DEFER_BYTES, read_header, read_image
from aifi_app.pipeline.pre_pseudonymise import SELECTION_TAGS
from aifi_app.pseudonymise.element_memo import ElementMemo
from aifi_app.sample_studies import ct_series, demo_patient
from tests.helpers.phi_corpus import write_ct
from tests.helpers.pseudonymise_runs import pseudonymise_each

KEY = b"r" * 32


def _plain(path: Path) -> bool:
    """True when :func:`read_image` reads ``path`` itself (not by ``dcmread``)."""
    data = path.read_bytes()
    return image_reader._plain(data[: image_reader.HEAD_BYTES], len(data)) is not None


def _state(ds: Dataset) -> dict[str, Any]:
    """Everything of a data set read from a file that a runner or a result builder can see."""
    return {
        "elements": [
            (e.tag, e.VR, e.value, e.is_undefined_length)
            for e in (ds[tag] for tag in sorted(ds.keys()) if tag != 0x7FE00010)
        ],
        "meta": [(e.tag, e.VR, e.value) for e in ds.file_meta],
        "preamble": ds.preamble,
        "filename": ds.filename,
        "timestamp": ds.timestamp,
        "encoding": (ds._read_implicit, ds._read_little, ds.original_character_set),
        "meta encoding": (
            ds.file_meta._read_implicit,
            ds.file_meta._read_little,
            ds.file_meta.original_character_set,
        ),
        "attributes": {  # those not above (a buffer read from: of the same kind)
            k: type(v) if k == "buffer" else v
            for k, v in vars(ds).items()
            if k not in ("_dict", "file_meta")
        },
    }


def _same_as_dcmread(path: Path) -> Dataset:
    got = read_image(path)
    expected = dcmread(path, defer_size=DEFER_BYTES)
    assert _state(got) == _state(expected)
    assert got == expected
    return got


def _work_files(tmp_path: Path, sources: list[Path]) -> list[Path]:
    """The sources pseudonymised as a job's step writes its work files."""
    out = tmp_path / "work"
    out.mkdir()
    pseudonymise_each(KEY, frozenset(), sources, out, ElementMemo())
    return sorted(out.glob("*.dcm"))


def _ct(tmp_path: Path, slices: int = 5, size: int = 32) -> list[Path]:
    folder = tmp_path / "ct"
    folder.mkdir(parents=True)
    paths = []
    for n, ds in enumerate(ct_series(demo_patient(3), slices, size=size)):
        path = folder / f"{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_work_files_read_as_dcmread_reads_them(tmp_path: Path) -> None:
    # 256 x 256 int16 slices: pixel data over the deferral size, left in the file
    work = _work_files(tmp_path, _ct(tmp_path, slices=5, size=256))
    for path in work:
        assert _plain(path)
        ds = read_image(path)
        pixels = ds.get_item(0x7FE00010, keep_deferred=True)
        assert isinstance(pixels, RawDataElement) and pixels.value is None
        assert pixels.length > DEFER_BYTES
        _same_as_dcmread(path)
        expected = dcmread(path)
        assert np.array_equal(ds.pixel_array, expected.pixel_array)
        assert ds.PixelData == expected.PixelData
        assert "DeidentificationMethodCodeSequence" in ds  # a sequence, read on first use


def test_the_memo_stays_within_its_bound_and_reads_stay_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memo of entries lives as long as the process, across studies: each slice adds
    entries no later file repeats, so it is emptied whenever it reaches its bound (the
    appliance grew by megabytes a CT with a bound ten times the present one)."""
    work = _work_files(tmp_path, _ct(tmp_path, slices=12))
    monkeypatch.setattr(image_reader, "MEMO_ENTRIES", 40)  # a file's header holds more
    monkeypatch.setattr(image_reader, "_MEMO", {})
    sizes = []
    for path in work:
        _same_as_dcmread(path)
        sizes.append(len(image_reader._MEMO))
    assert max(sizes) <= 40
    assert len(set(sizes)) > 1  # it was filled and emptied, not left empty


def test_data_sets_read_share_nothing_their_users_change(tmp_path: Path) -> None:
    """Each data set has its own elements and containers (made from one template):
    changing one changes no other, nor what is read next."""
    first, second = _work_files(tmp_path, _ct(tmp_path, slices=2))
    a, b = read_image(first), read_image(second)
    a.private_block(0x0011, "AIFI TEST", create=True).add_new(0x01, "LO", "x")
    a.PatientName = "Changed^Name"
    a._pixel_array_opts["use_pdh"] = True
    again = read_image(first)
    for ds in (b, again):
        assert 0x00110010 not in ds and ds._private_blocks == {}
        assert ds.PatientName != "Changed^Name"
        assert ds._pixel_array_opts == {"use_pdh": False}
    _same_as_dcmread(first)


def test_the_phi_corpus_work_files_read_as_dcmread_reads_them(tmp_path: Path) -> None:
    # seven character sets in turn, private blocks, nested sequences, overlays: the
    # memo of elements and character sets must not carry one file's over to the next
    sources = list(write_ct(tmp_path / "corpus", 6, size=16))
    for path in _work_files(tmp_path, sources):
        _same_as_dcmread(path)
    for path in sources:  # as received: read by dcmread (undefined lengths) or itself
        _same_as_dcmread(path)


def test_the_same_element_at_another_place_keeps_its_own_position(tmp_path: Path) -> None:
    first, second = _ct(tmp_path, slices=2, size=256)
    ds = dcmread(second)
    ds.StudyDescription = "a longer description that moves every later element"
    ds.save_as(second, enforce_file_format=True)
    for path in (first, second):
        got = read_image(path)
        expected = dcmread(path, defer_size=DEFER_BYTES)
        for tag in sorted(expected.keys()):
            a, b = got.get_item(tag), expected.get_item(tag)
            if isinstance(b, RawDataElement):
                assert isinstance(a, RawDataElement) and a.value_tell == b.value_tell
        _same_as_dcmread(path)


def _rewritten(tmp_path: Path, name: str, change: Any, **save: Any) -> Path:
    source = _ct(tmp_path / name, slices=1, size=256)[0]
    ds = dcmread(source)
    change(ds)
    path = tmp_path / f"{name}.dcm"
    ds.save_as(path, **save)
    return path


def _implicit(ds: Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian


def _deflated(ds: Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian


def _undefined_sequence(ds: Dataset) -> None:
    item = Dataset()
    item.CodeValue = "113100"
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True


def _long_header(ds: Dataset) -> None:
    ds.ImageComments = "x" * (image_reader.HEAD_BYTES + 10)


def _trailing_padding(ds: Dataset) -> None:
    ds.add(DataElement(0xFFFCFFFC, "OB", b"\0" * 8))


def _no_charset(ds: Dataset) -> None:
    del ds.SpecificCharacterSet


@pytest.mark.parametrize(
    ("name", "change", "plain"),
    [
        ("implicit", _implicit, False),
        ("deflated", _deflated, False),
        ("undefined-sequence", _undefined_sequence, False),
        ("long-header", _long_header, False),
        ("trailing-padding", _trailing_padding, False),
        ("no-charset", _no_charset, True),
    ],
)
def test_other_files_give_what_dcmread_gives(
    tmp_path: Path, name: str, change: Any, plain: bool
) -> None:
    path = _rewritten(tmp_path, name, change, enforce_file_format=True)
    assert _plain(path) == plain
    _same_as_dcmread(path)


def test_broken_files_raise_what_dcmread_raises(tmp_path: Path) -> None:
    source = _work_files(tmp_path, _ct(tmp_path, slices=1, size=256))[0]
    data = source.read_bytes()
    not_dicom = tmp_path / "not-dicom.dcm"
    not_dicom.write_bytes(b"not a DICOM file at all" * 10)
    with pytest.raises(InvalidDicomError):
        read_image(not_dicom)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: len(data) - 1000])  # pixel data cut short
    assert not _plain(truncated)
    read = read_image(truncated)
    assert read == dcmread(truncated, defer_size=DEFER_BYTES)  # dcmread's own leniency
    missing = tmp_path / "missing.dcm"
    with pytest.raises(FileNotFoundError):
        read_image(missing)


def test_a_file_changed_after_reading_warns_as_dcmread_does(tmp_path: Path) -> None:
    path = _work_files(tmp_path, _ct(tmp_path, slices=1, size=256))[0]
    ds = read_image(path)
    copy = tmp_path / "copy.dcm"
    shutil.copyfile(path, copy)
    copy.replace(path)  # the same bytes, a new modification time
    with pytest.warns(UserWarning, match="modification time has changed"):
        assert ds.PixelData == dcmread(path).PixelData


SELECTION = frozenset(int(Tag(keyword)) for keyword in SELECTION_TAGS)


def _same_header_as_dcmread(path: Path, tags: frozenset[int] = SELECTION) -> Dataset:
    got = read_header(path, tags)
    expected = dcmread(path, stop_before_pixels=True, specific_tags=list(tags))
    assert _state(got) == _state(expected)
    assert got == expected
    return got


def test_selection_headers_read_as_dcmread_reads_them(tmp_path: Path) -> None:
    received = _ct(tmp_path, slices=3, size=256)
    work = _work_files(tmp_path, received)
    corpus = list(write_ct(tmp_path / "corpus", 4, size=16))
    for path in [*received, *work]:
        assert _plain(path)  # read itself
        header = _same_header_as_dcmread(path)
        assert "PixelData" not in header and "SeriesInstanceUID" in header
    for path in corpus:  # undefined lengths among the others: read by dcmread
        _same_header_as_dcmread(path)
    # nothing but the character set
    _same_header_as_dcmread(received[0], frozenset({int(Tag("ImageComments"))}))


def test_a_selection_header_of_other_files_is_dcmread_s(tmp_path: Path) -> None:
    for name, change in [("implicit", _implicit), ("undefined", _undefined_sequence)]:
        _same_header_as_dcmread(_rewritten(tmp_path, name, change, enforce_file_format=True))
    with pytest.raises(InvalidDicomError):
        not_dicom = tmp_path / "not-dicom.dcm"
        not_dicom.write_bytes(b"x" * 300)
        read_header(not_dicom, SELECTION)
