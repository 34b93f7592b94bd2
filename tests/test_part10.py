"""DICOM files from data sets: as bytes, and written durably straight to a file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from aifi_app.part10 import (
    DurableInBackground,
    large_values_buffered,
    make_durable,
    part10_bytes,
    write_part10_durably,
)
from aifi_app.sample_studies import ct_series, demo_patient


def _slice() -> Dataset:
    (ds,) = ct_series(demo_patient(1), 1, size=16)
    return ds


def test_written_file_is_the_same_as_the_bytes(tmp_path: Path) -> None:
    ds = _slice()
    dest = tmp_path / "results" / "01-seg.dcm"
    write_part10_durably(dest, ds)
    assert dest.read_bytes() == part10_bytes(ds)
    assert [p.name for p in dest.parent.iterdir()] == ["01-seg.dcm"]  # no .part left
    assert dcmread(dest).SOPInstanceUID == ds.SOPInstanceUID


def test_written_unsynced_then_made_durable_is_the_same_file(tmp_path: Path) -> None:
    ds = _slice()
    dest = tmp_path / "results" / "02-seg.dcm"
    write_part10_durably(dest, ds, sync=False)
    assert dest.read_bytes() == part10_bytes(ds)  # complete at once, only not yet synced
    assert [p.name for p in dest.parent.iterdir()] == ["02-seg.dcm"]
    make_durable([dest])
    assert dest.read_bytes() == part10_bytes(ds)
    make_durable([])  # nothing to flush: nothing done


def test_writing_again_replaces_the_file(tmp_path: Path) -> None:
    first, second = _slice(), _slice()
    dest = tmp_path / "01-sr.dcm"
    write_part10_durably(dest, first)
    write_part10_durably(dest, second)
    assert dcmread(dest).SOPInstanceUID == second.SOPInstanceUID


def test_large_pixel_data_is_written_as_it_is_and_kept(tmp_path: Path) -> None:
    """Pixel Data of 1 MiB and more goes to the file as a buffer: the same bytes as
    pydicom writes from the value, with an odd length padded, and the data set keeps its
    value (bytes, the same object) afterwards."""
    ds = _slice()
    ds.Rows, ds.Columns = 1025, 1023  # 2 097 150 bytes of 16-bit pixels
    pixels = bytes(range(256)) * (1025 * 1023 * 2 // 256) + b"\x07" * (1025 * 1023 * 2 % 256)
    ds.PixelData = pixels
    dest = tmp_path / "big.dcm"
    write_part10_durably(dest, ds)
    assert dest.read_bytes() == part10_bytes(ds)
    assert ds.PixelData is pixels
    assert dcmread(dest).PixelData == pixels

    ds.add_new(0x00091010, "OB", b"\x01" * ((1 << 20) + 1))  # odd: written padded, not buffered
    ds.add_new(0x00090010, "LO", "AIFI TEST")
    write_part10_durably(dest, ds)
    assert dest.read_bytes() == part10_bytes(ds)
    assert dcmread(dest)[0x00091010].value == b"\x01" * ((1 << 20) + 1) + b"\x00"


def test_only_large_even_byte_values_are_buffered_while_written() -> None:
    ds = _slice()
    ds.PixelData = b"\x00\x01" * (1 << 19)  # 1 MiB
    ds.add_new(0x00090010, "LO", "AIFI TEST")
    ds.add_new(0x00091010, "OB", b"\x01" * ((1 << 20) + 1))
    ds.add_new(0x00091011, "OB", b"\x01" * 1000)
    with large_values_buffered(ds):
        assert ds["PixelData"].is_buffered
        assert not ds[0x00091010].is_buffered
        assert not ds[0x00091011].is_buffered
    assert not ds["PixelData"].is_buffered
    assert ds.PixelData == b"\x00\x01" * (1 << 19)


def test_a_long_sequence_is_written_as_pydicoms_dcmwrite_writes_it(tmp_path: Path) -> None:
    """The per-frame functional groups of a multi-frame object (encoded ahead, see
    tests/test_encoded_sequences.py) come out as pydicom's own dcmwrite writes them."""
    ds = _slice()
    frames = []
    for n in range(40):
        frame = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [-100, -120.5, n * 1.25]
        frame.PlanePositionSequence = Sequence([position])
        content = Dataset()
        content.DimensionIndexValues = [1, n + 1]
        frame.FrameContentSequence = Sequence([content])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    expected = io.BytesIO()
    dcmwrite(expected, ds, enforce_file_format=True)
    dest = tmp_path / "frames.dcm"
    write_part10_durably(dest, ds)
    assert dest.read_bytes() == expected.getvalue() == part10_bytes(ds)
    assert not ds.get_item("PerFrameFunctionalGroupsSequence").is_raw  # left as it was


def test_files_made_durable_in_the_background(tmp_path: Path) -> None:
    """The files flushed on a thread of their own; wait() raises what flushing raised."""
    ds = _slice()
    dest = tmp_path / "01-seg.dcm"
    write_part10_durably(dest, ds, sync=False)
    flushing = DurableInBackground([dest])
    flushing.wait()
    assert flushing.finished_at > 0
    assert dest.read_bytes() == part10_bytes(ds)
    missing = DurableInBackground([tmp_path / "gone.dcm"])
    with pytest.raises(FileNotFoundError):
        missing.wait()
