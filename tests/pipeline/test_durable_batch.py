"""Files of one step written at once and made durable together."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifi_app.pipeline.durable_batch import DurableBatch


def test_every_file_is_written_whole_into_its_folder(tmp_path: Path) -> None:
    files = {tmp_path / "work" / "7" / f"{n:05d}.dcm": bytes([n]) * (1000 + n) for n in range(40)}
    files[tmp_path / "other" / "x.dcm"] = b"x"
    with DurableBatch() as batch:
        for path, data in files.items():
            batch.write(path, data)
        batch.sync()
        batch.sync()  # nothing pending: a no-op
    for path, data in files.items():
        assert path.read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "work" / "7").iterdir()) == sorted(
        p.name for p in files if p.parent.name == "7"
    )


def test_a_failed_write_raises_at_once_and_the_batch_goes_on(tmp_path: Path) -> None:
    with DurableBatch() as batch:
        batch.write(tmp_path / "a.dcm", b"a")
        batch.sync()
        (tmp_path / "sub").mkdir()
        with pytest.raises(IsADirectoryError):
            batch.write(tmp_path / "sub", b"b")  # the write itself fails at once
        batch.write(tmp_path / "c.dcm", b"c")
        batch.sync()
    assert (tmp_path / "c.dcm").read_bytes() == b"c"
