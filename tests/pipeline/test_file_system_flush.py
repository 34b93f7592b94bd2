"""One flush of a whole file system (Linux ``syncfs``), in the caller's thread or its own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aifi_app.pipeline import file_system_flush


def test_available_on_linux() -> None:
    assert file_system_flush.available() == sys.platform.startswith("linux")


@pytest.mark.skipif(not file_system_flush.available(), reason="no syncfs here")
def test_a_flush_returns_once_done_and_reports_errors(tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(b"a" * 10000)
    file_system_flush.flush_file_system(tmp_path)
    assert file_system_flush.start_flush(tmp_path).result(timeout=60) is None
    with pytest.raises(FileNotFoundError):
        file_system_flush.flush_file_system(tmp_path / "gone")
    failed = file_system_flush.start_flush(tmp_path / "gone")
    assert isinstance(failed.exception(timeout=60), FileNotFoundError)


def test_without_syncfs_a_flush_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_system_flush, "_SYNCFS", None)
    assert not file_system_flush.available()
    with pytest.raises(OSError, match="not available"):
        file_system_flush.flush_file_system(tmp_path)
