"""The images of a job read in a background thread: the same data sets as read directly,
and never those of a folder that changed since."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pydicom import Dataset, dcmread

from aifi_app.pipeline.read_ahead import ImagesReadAhead
from aifi_app.sample_studies import ct_series, demo_patient


def _read(path: Path) -> Dataset:
    return dcmread(path, defer_size=1024)


def _folder(tmp_path: Path, slices: int = 6) -> list[Path]:
    folder = tmp_path / "work"
    folder.mkdir()
    paths = []
    for n, ds in enumerate(ct_series(demo_patient(1), slices, size=16)):
        path = folder / f"{n:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _finished(paths: list[Path], added: int = 0) -> ImagesReadAhead:
    """A read-ahead given the first ``added`` files one by one, then finished."""
    read_ahead = ImagesReadAhead(paths[0].parent, _read)
    for path in paths[:added]:
        read_ahead.add(path)
    read_ahead.finish(paths)
    return read_ahead


def test_the_data_sets_read_ahead_are_those_read_directly(tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    for added in (0, 3, 6):
        got = _finished(paths, added).datasets(paths)
        assert got is not None
        assert [ds.filename for ds in got] == [str(p) for p in paths]
        assert got == [_read(p) for p in paths]
        assert [int(ds.InstanceNumber) for ds in got] == list(range(1, 7))


def test_files_added_out_of_order_come_in_the_order_finished(tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    read_ahead = ImagesReadAhead(paths[0].parent, _read)
    for path in (paths[4], paths[1]):
        read_ahead.add(path)
    read_ahead.finish(paths)
    got = read_ahead.datasets(paths)
    assert got is not None
    assert [int(ds.InstanceNumber) for ds in got] == list(range(1, 7))


def test_other_paths_give_none(tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    assert _finished(paths[:-1]).datasets(paths) is None


def test_a_file_added_since_gives_none(tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    read_ahead = _finished(paths)
    (paths[0].parent / "late.dcm").write_bytes(paths[0].read_bytes())
    assert read_ahead.datasets(sorted(paths[0].parent.glob("*.dcm"))) is None


def test_a_folder_made_again_gives_none(tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    folder = paths[0].parent
    read_ahead = _finished(paths, 2)
    kept = tmp_path / "kept"
    shutil.copytree(folder, kept)
    time.sleep(0.05)  # past the file system's timestamp granularity (not a timing check)
    shutil.rmtree(folder)
    shutil.copytree(kept, folder)  # the same names, the same bytes: still another folder
    assert read_ahead.datasets(paths) is None


def test_a_folder_removed_gives_none(tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    read_ahead = _finished(paths)
    shutil.rmtree(paths[0].parent)
    assert read_ahead.datasets(paths) is None


def test_a_file_that_cannot_be_read_gives_none(tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    paths[3].write_bytes(b"not DICOM")
    assert _finished(paths, 4).datasets(paths) is None


def test_not_finished_or_cancelled_gives_none(tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    unfinished = ImagesReadAhead(paths[0].parent, _read)
    unfinished.add(paths[0])
    assert unfinished.datasets(paths) is None
    unfinished.cancel()  # its thread ends
    cancelled = _finished(paths, 2)
    cancelled.cancel()
    assert cancelled.datasets(paths) is None
