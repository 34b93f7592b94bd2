"""Durable moves into the spool: a new name, and replacing an instance sent again."""

from __future__ import annotations

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

    def recording(path: Path) -> None:
        flushed.append(path)
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
