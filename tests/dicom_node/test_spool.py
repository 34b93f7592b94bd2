"""Durable moves into the spool: a new name, and replacing an instance sent again."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from aifi_app.dicom_node import spool
from aifi_app.dicom_node.spool import durable_move


def test_move_to_a_new_name(tmp_path: Path) -> None:
    src = tmp_path / "incoming" / "tmp1"
    src.parent.mkdir()
    src.write_bytes(b"new instance")
    dest = tmp_path / "spool" / "1.2.3" / "1.2.3.4.dcm"
    assert durable_move(src, dest) == len(b"new instance")
    assert dest.read_bytes() == b"new instance"
    assert not src.exists()


def test_move_replaces_an_instance_sent_again(tmp_path: Path) -> None:
    dest = tmp_path / "spool" / "1.2.3" / "1.2.3.4.dcm"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"first copy")
    src = tmp_path / "tmp2"
    src.write_bytes(b"second copy, longer")
    assert durable_move(src, dest) == len(b"second copy, longer")
    assert dest.read_bytes() == b"second copy, longer"
    assert not src.exists()


def test_a_new_study_folder_has_its_own_entry_flushed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[Path] = []
    real = spool.fsync_dir

    def recording(path: str | Path) -> None:
        flushed.append(Path(path))  # (the receiving path passes strings)
        real(path)

    monkeypatch.setattr(spool, "fsync_dir", recording)
    (tmp_path / "spool").mkdir()
    study = tmp_path / "spool" / "1.2.3"
    for n in (1, 2):
        src = tmp_path / f"tmp{n}"
        src.write_bytes(b"instance")
        durable_move(src, study / f"1.2.3.{n}.dcm")
    # the first instance made the study's folder: its entry in spool/ is flushed too
    assert flushed == [study, tmp_path / "spool", study]


def _record_flushes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The spool's file and folder flushes, in order ("file NAME", "dir NAME"), still done."""
    events: list[str] = []
    real_file, real_dir = spool.fsync_file, spool.fsync_dir
    monkeypatch.setattr(
        spool, "fsync_file", lambda p: (events.append(f"file {Path(p).name}"), real_file(p))
    )
    monkeypatch.setattr(
        spool, "fsync_dir", lambda p: (events.append(f"dir {Path(p).name}"), real_dir(p))
    )
    return events


def test_the_file_is_flushed_under_its_old_name_before_it_gets_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that a file under a spool name is always complete on disk (spool_recovery)."""
    events = _record_flushes(monkeypatch)
    study = tmp_path / "spool" / "1.2.3"
    study.mkdir(parents=True)
    src = tmp_path / "tmp1"
    src.write_bytes(b"instance")
    durable_move(src, study / "1.2.3.1.dcm")
    assert events == ["file tmp1", "dir 1.2.3"]
    # a file its writer flushed already is not flushed again
    events.clear()
    src.write_bytes(b"instance")
    durable_move(src, study / "1.2.3.2.dcm", flushed=True)
    assert events == ["dir 1.2.3"]
    assert (study / "1.2.3.2.dcm").read_bytes() == b"instance"


def _labelled(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        labelled = spool.set_checksum(fd, zlib.crc32(data), len(data))
    finally:
        os.close(fd)
    if not labelled:
        pytest.skip("no user extended attributes on this file system")


def test_a_checksummed_file_gets_its_name_before_its_one_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _record_flushes(monkeypatch)
    study = tmp_path / "spool" / "1.2.3"
    study.mkdir(parents=True)
    src = tmp_path / "tmp1"
    _labelled(src, b"instance")
    assert durable_move(src, study / "1.2.3.1.dcm", checksummed=True) == len(b"instance")
    assert events == ["file 1.2.3.1.dcm", "dir 1.2.3"]  # flushed under its new name
    assert not src.exists()
    assert spool.is_complete(study / "1.2.3.1.dcm")
    # a resend over a recorded instance: never replaced by a file not yet flushed
    events.clear()
    _labelled(src, b"instance, again")
    durable_move(src, study / "1.2.3.1.dcm", checksummed=True)
    assert events == ["file tmp1", "dir 1.2.3"]
    assert (study / "1.2.3.1.dcm").read_bytes() == b"instance, again"


def test_a_labelled_file_cut_short_or_changed_is_not_complete(tmp_path: Path) -> None:
    path = tmp_path / "1.2.3.1.dcm"
    _labelled(path, b"x" * 10_000)
    assert spool.is_complete(path)
    with path.open("r+b") as fh:  # what a power cut before the flush may leave: zeros
        fh.seek(5000)
        fh.write(b"\0" * 100)
    assert not spool.is_complete(path)
    with path.open("r+b") as fh:  # or the file cut short
        fh.write(b"x" * 10_000)
        fh.truncate(8192)
    assert not spool.is_complete(path)
    unlabelled = tmp_path / "flushed-before-named.dcm"
    unlabelled.write_bytes(b"whole")
    assert spool.is_complete(unlabelled)
    os.setxattr(unlabelled, spool.CHECKSUM_ATTRIBUTE, b"not a label")
    assert not spool.is_complete(unlabelled)


def test_the_checksum_is_zlibs_crc32_in_pieces_too() -> None:
    # files labelled by a node that used zlib's crc32 are checked with the one now in use
    data = os.urandom(300_000)
    assert spool.crc32(data, 0) == zlib.crc32(data)
    running = 0
    for start in range(0, len(data), 65_536 + 7):
        running = spool.crc32(memoryview(data)[start : start + 65_536 + 7], running)
    assert running == zlib.crc32(data)
