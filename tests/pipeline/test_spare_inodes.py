"""Empty files made ahead for the pre-pseudonymiser: made up to the limit, each taken
once by renaming it to the file about to be written, and none when none is left."""

from __future__ import annotations

from pathlib import Path

from aifi_app.pipeline.spare_inodes import SpareInodes


def test_spares_are_made_up_to_the_limit_in_chunks(tmp_path: Path) -> None:
    spares = SpareInodes(tmp_path / "spare", keep=5)
    assert spares.fill(most=3) == 3  # the folder made on the way
    assert spares.ready == 3 and spares.wanted()
    assert spares.fill(most=3) == 2  # up to the limit
    assert spares.fill() == 0 and not spares.wanted()
    files = sorted((tmp_path / "spare").iterdir())
    assert len(files) == 5 and all(p.stat().st_size == 0 for p in files)


def test_a_spare_becomes_the_file_written(tmp_path: Path) -> None:
    spares = SpareInodes(tmp_path / "spare", keep=2)
    spares.fill()
    inodes = {p.stat().st_ino for p in (tmp_path / "spare").iterdir()}
    target = tmp_path / "out" / "1.tmp"
    target.parent.mkdir()
    target.write_bytes(b"old")  # a leftover of that name is replaced, not written into
    assert spares.place(target)
    assert target.stat().st_ino in inodes and target.read_bytes() == b""
    with target.open("wb") as fh:  # as the pseudonymiser writes it
        fh.write(b"DICM")
    assert target.read_bytes() == b"DICM" and target.stat().st_ino in inodes
    assert spares.ready == 1
    assert spares.place(tmp_path / "out" / "2.tmp")
    assert not spares.place(tmp_path / "out" / "3.tmp")  # none left: the caller creates it
    assert not (tmp_path / "out" / "3.tmp").exists()


def test_spares_removed_meanwhile_are_skipped(tmp_path: Path) -> None:
    spares = SpareInodes(tmp_path / "spare", keep=3)
    spares.fill()
    first = sorted((tmp_path / "spare").iterdir(), key=lambda p: int(p.name.split("-")[1]))[0]
    first.unlink()
    target = tmp_path / "a.tmp"
    assert spares.place(target) and target.exists()
    for path in (tmp_path / "spare").iterdir():  # the cache emptied
        path.unlink()
    assert not spares.place(tmp_path / "b.tmp")
    assert spares.ready == 0 and spares.fill() == 3  # made again


def test_a_missing_target_folder_keeps_the_spare(tmp_path: Path) -> None:
    spares = SpareInodes(tmp_path / "spare", keep=1)
    spares.fill()
    assert not spares.place(tmp_path / "no" / "such" / "x.tmp")
    assert spares.ready == 1


def test_a_folder_that_cannot_be_made_makes_none(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    spares = SpareInodes(tmp_path / "file" / "spare", keep=4)
    assert spares.fill() == 0 and spares.ready == 0
    assert not spares.place(tmp_path / "x.tmp")
