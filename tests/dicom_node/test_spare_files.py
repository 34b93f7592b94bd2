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


def test_hands_out_open_empty_files_each_once(tmp_path: Path) -> None:
    spare = SpareFiles(tmp_path, keep=4, floor=2)
    spare.start()
    try:
        _wait(lambda: spare.ready == 4)
        assert all(is_spare(p) and p.name.startswith(f"{os.getpid()}-") for p in tmp_path.iterdir())
        taken = []
        for n in range(3):
            got = spare.take()
            assert got is not None
            name, fd = got
            assert isinstance(name, str)  # (the receiving path passes strings on)
            path = Path(name)
            assert path.stat().st_size == 0 and path.stat().st_mode & 0o777 == 0o600
            os.write(fd, b"instance %d" % n)
            os.close(fd)
            taken.append(path)
        assert len(set(taken)) == 3
        _wait(lambda: spare.ready == 4)  # the node is quiet: made up to four again
    finally:
        spare.stop()
    assert spare.take() is None
    written = sorted(p.read_bytes() for p in tmp_path.iterdir() if p.stat().st_size)
    assert written == [b"instance 0", b"instance 1", b"instance 2"]
    # the files made and not taken stay for the next start
    assert len([p for p in tmp_path.iterdir() if p.stat().st_size == 0]) == 4


def test_while_the_node_receives_only_the_floor_is_kept(tmp_path: Path) -> None:
    quiet = [0.0]  # an association in progress
    spare = SpareFiles(tmp_path, keep=8, floor=2, quiet_seconds=lambda: quiet[0])
    spare.start()
    try:
        _wait(lambda: spare.ready == 2)
        time.sleep(0.6)  # (more than the thread's poll: it would have made more by now)
        assert spare.ready == 2
        assert spare.take() is not None
        _wait(lambda: spare.ready == 2)  # under the floor: made again while receiving
        quiet[0] = 10.0
        _wait(lambda: spare.ready == 8)
    finally:
        spare.stop()


def test_adopt_keeps_empty_spare_files_and_names_the_rest(tmp_path: Path) -> None:
    (tmp_path / "77-spare-0.dcm").write_bytes(b"")
    (tmp_path / "77-spare-1.dcm").write_bytes(b"begun, then the process died")
    (tmp_path / "77-9-3.dcm").write_bytes(b"a file its association created")
    linked = tmp_path / "77-spare-2.dcm"  # named in the spool already, then killed
    linked.write_bytes(b"")
    os.link(linked, tmp_path / "spool-name.dcm")
    spare = SpareFiles(tmp_path, keep=4)
    others = spare.adopt()
    assert spare.ready == 1
    assert sorted(p.name for p in others) == sorted(
        ["77-spare-1.dcm", "77-9-3.dcm", "77-spare-2.dcm", "spool-name.dcm"]
    )
    got = spare.take()
    assert got is not None and Path(got[0]).name == "77-spare-0.dcm"
    os.close(got[1])


def test_a_folder_it_cannot_write_leaves_associations_to_make_their_own(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"  # not there (as a disk that refuses new files)
    spare = SpareFiles(folder, keep=2)
    spare.start()
    try:
        assert spare.take() is None
        folder.mkdir()
        _wait(lambda: spare.ready == 2)  # tried again, now with success
    finally:
        spare.stop()
    assert all(is_spare(p) for p in folder.iterdir())


def test_a_file_removed_by_hand_is_passed_over(tmp_path: Path) -> None:
    spare = SpareFiles(tmp_path, keep=2, floor=0)
    spare.start()
    _wait(lambda: spare.ready == 2)
    spare.stop()  # (what it made stays, and it takes no more)
    first = sorted(tmp_path.iterdir())
    again = SpareFiles(tmp_path, keep=2)
    again.adopt()
    first[0].unlink()
    got = again.take()
    assert got is not None and Path(got[0]) == first[1]
    os.close(got[1])
    assert again.take() is None
