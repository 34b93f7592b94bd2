"""The pre-pseudonymiser's files wait for the node to pause before they are written back:
up to a limit (the oldest go beyond it), all at a release, oldest first."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aifi_app.pipeline.deferred_writeback import DeferredWriteback, start_writeback


def _files(tmp_path: Path, n: int) -> list[Path]:
    paths = [tmp_path / f"{i}.dcm" for i in range(n)]
    for p in paths:
        p.write_bytes(b"x" * 10)
    return paths


def test_files_wait_until_released_then_go_oldest_first(tmp_path: Path) -> None:
    started: list[Path] = []
    deferred = DeferredWriteback(limit=100, start=started.append)
    paths = _files(tmp_path, 4)
    for p in paths:
        deferred.add(p, 10)
    assert started == []
    assert deferred.pending == (4, 40)
    assert deferred.release() == 4
    assert started == paths
    assert deferred.pending == (0, 0)
    assert deferred.release() == 0
    assert started == paths  # nothing started twice


def test_beyond_the_limit_the_oldest_go_at_once(tmp_path: Path) -> None:
    started: list[Path] = []
    deferred = DeferredWriteback(limit=25, start=started.append)
    paths = _files(tmp_path, 5)
    for p in paths:
        deferred.add(p, 10)
    assert started == paths[:3]  # 20 bytes left waiting: within the limit
    assert deferred.pending == (2, 20)
    deferred.release()
    assert started == paths


def test_a_file_larger_than_the_limit_goes_at_once(tmp_path: Path) -> None:
    started: list[Path] = []
    deferred = DeferredWriteback(limit=5, start=started.append)
    (path,) = _files(tmp_path, 1)
    deferred.add(path, 10)
    assert started == [path]
    assert deferred.pending == (0, 0)


def test_starting_writeback_leaves_the_file_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    data = bytes(range(256)) * 4096
    path.write_bytes(data)
    start_writeback(path)
    assert path.read_bytes() == data


def test_a_file_removed_meanwhile_is_no_fault(tmp_path: Path) -> None:
    """The study's cache was removed before the release: nothing to write, no error."""
    deferred = DeferredWriteback(limit=1 << 20)
    (path,) = _files(tmp_path, 1)
    deferred.add(path, 10)
    path.unlink()
    assert deferred.release() == 1
    start_writeback(tmp_path / "never-made.dcm")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("fincore") is None,
    reason="sync_file_range and fincore (util-linux): Linux",
)
def test_starting_writeback_keeps_the_file_in_memory(tmp_path: Path) -> None:
    """The job that takes the file reads it next (its read-ahead, its model): its pages
    stay in the page cache, also when they were written before the writeback was asked
    for (``POSIX_FADV_DONTNEED`` dropped them then)."""
    path = tmp_path / "a.dcm"
    data = bytes(range(256)) * 2048
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())  # written already: its pages are clean
    start_writeback(path)
    resident = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert int(resident) == len(data)
