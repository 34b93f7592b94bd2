"""DICOM files from data sets: as bytes, and written durably straight to a file."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from aifi_app.part10 import part10_bytes, write_part10_durably
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


def test_writing_again_replaces_the_file(tmp_path: Path) -> None:
    first, second = _slice(), _slice()
    dest = tmp_path / "01-sr.dcm"
    write_part10_durably(dest, first)
    write_part10_durably(dest, second)
    assert dcmread(dest).SOPInstanceUID == second.SOPInstanceUID
