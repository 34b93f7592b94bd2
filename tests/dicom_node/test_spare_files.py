"""The empty files made ahead for arriving instances (:mod:`aifi_app.dicom_node.spare_files`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from aifi_app.dicom_node.spare_files import SpareFiles, is_spare


def _wait(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_fills_hands_out_open_empty_files_and_refills(tmp_path: Path) -> None:
    spare = SpareFiles(tmp_path, keep=4)
    spare.start()
    try:
        _wait(lambda: spare.ready == 4)
        assert sorted(p.name for p in tmp_path.iterdir() if is_spare(p)) == sorted(
            f"{os.getpid()}-spare-{n}.dcm" for n in range(4)
        )
        taken = [spare.take() for _ in range(3)]
        assert all(t is not None for t in taken)
        for n, t in enumerate(taken):
            assert t is not None
            path, fd = t
            assert path.stat().st_size == 0 and oct(path.stat().st_mode & 0o777) == "0o600"
            os.write(fd, b"instance %d" % n)
            os.close(fd)
        assert len({t[0] for t in taken if t is not None}) == 3  # each file once
        # under half left: the thread makes more, up to four again
        _wait(lambda: spare.ready == 4)
    finally:
        spare.stop()
    # the files handed out stay with their takers; the others are gone
    left = sorted(p.read_bytes() for p in tmp_path.iterdir())
    assert left == [b"instance 0", b"instance 1", b"instance 2"]
    assert spare.take() is None


def test_none_when_empty_and_none_kept(tmp_path: Path) -> None:
    spare = SpareFiles(tmp_path, keep=0)
    spare.start()
    assert spare.take() is None
    spare.stop()
    assert list(tmp_path.iterdir()) == []


def test_a_folder_it_cannot_write_leaves_associations_to_make_their_own(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"  # not there (as a disk that refuses new files)
    spare = SpareFiles(folder, keep=2)
    spare.start()
    try:
        assert spare.take() is None
        folder.mkdir()
        # a take asks for more; now the files can be made
        _wait(lambda: spare.take() is not None or spare.ready > 0)
        _wait(lambda: spare.ready == 2)
    finally:
        spare.stop()
    assert [p.name for p in folder.iterdir()] == [] or all(is_spare(p) for p in folder.iterdir())
