"""Files of one step written (or linked) at once and made durable together: by their own
fsyncs, or, for linked files, by one flush of the file system, whichever finishes first."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from aifi_app.pipeline import durable_batch, file_system_flush
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


def _sources(folder: Path, count: int = 12) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for n in range(count):
        path = folder / f"{n}.dcm"
        path.write_bytes(bytes([n]) * 4096)
        paths.append(path)
    return paths


def _flushed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the batch flushes one by one (by its own fsync), recorded."""
    calls: list[Path] = []
    real = durable_batch._fsync

    def recording(path: Path) -> tuple[int, int]:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(durable_batch, "_fsync", recording)
    return calls


def _link_all(batch: DurableBatch, sources: list[Path], work: Path) -> list[Path]:
    targets = []
    for n, source in enumerate(sources):
        target = work / f"{n:05d}.dcm"
        batch.folder(target)
        os.link(source, target)
        batch.linked(target, source)
        targets.append(target)
    return targets


def test_linked_files_are_flushed_by_one_flush_of_the_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not file_system_flush.available():
        pytest.skip("no syncfs here: the files are flushed one by one (tested below)")
    sources = _sources(tmp_path / "made")
    flushed = _flushed(monkeypatch)
    monkeypatch.setattr(durable_batch, "HEDGE_SECONDS", 60.0)  # however busy the disk is
    whole: list[Path] = []
    real = file_system_flush.flush_file_system
    monkeypatch.setattr(
        file_system_flush, "flush_file_system", lambda folder: (whole.append(folder), real(folder))
    )
    with DurableBatch() as batch:
        for source in sources:
            batch.flush_source(source)
        targets = _link_all(batch, sources, tmp_path / "work")
        batch.sync()
    assert flushed == []
    assert whole == [tmp_path / "made", tmp_path / "work"]  # early, then after the links
    for source, target in zip(sources, targets, strict=True):
        assert target.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("how", ["slow", "failing"])
def test_a_slow_or_failing_file_system_flush_leaves_it_to_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    sources = _sources(tmp_path / "made")
    flushed = _flushed(monkeypatch)
    release = threading.Event()

    def flush(folder: Path) -> None:
        if how == "failing":
            raise OSError(5, "Input/output error")
        release.wait(30)  # another program's writes on the same disk

    monkeypatch.setattr(file_system_flush, "flush_file_system", flush)
    with DurableBatch(whole_file_system=True) as batch:
        targets = _link_all(batch, sources, tmp_path / "work")
        batch.sync()  # returns without the file system's flush
    release.set()
    assert sorted(flushed) == sorted(targets)


def test_a_files_own_flush_error_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = _sources(tmp_path / "made", 3)

    def failing(path: Path) -> tuple[int, int]:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(file_system_flush, "flush_file_system", failing)
    monkeypatch.setattr(durable_batch, "_fsync", failing)
    with DurableBatch(whole_file_system=True) as batch:
        _link_all(batch, sources, tmp_path / "work")
        with pytest.raises(OSError, match="Input/output"):
            batch.sync()


def test_without_the_file_system_flush_each_link_of_a_flushed_source_is_not_flushed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = _sources(tmp_path / "made", 6)
    flushed = _flushed(monkeypatch)
    with DurableBatch(whole_file_system=False) as batch:
        for source in sources[:4]:  # the last two never flushed early
            batch.flush_source(source)
        for source in sources[:4]:  # the shared flush threads may still be busy: wait
            batch._sources[source].result()
        # the first source replaced by another file after its flush: its link is not
        # the file flushed, so it is flushed itself
        replacement = sources[0].with_suffix(".tmp")
        replacement.write_bytes(b"made again")
        replacement.replace(sources[0])
        targets = _link_all(batch, sources, tmp_path / "work")
        early = list(flushed)
        batch.sync()
    assert sorted(early) == sorted(sources[:4])
    assert sorted(flushed[len(early) :]) == sorted([targets[0], targets[4], targets[5]])
    assert targets[0].read_bytes() == b"made again"


def test_the_file_system_flush_covers_written_files_whose_own_flush_lags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not file_system_flush.available():
        pytest.skip("no syncfs here")
    sources = _sources(tmp_path / "made", 3)
    release = threading.Event()
    real = durable_batch._fsync

    def stuck(path: Path) -> tuple[int, int]:
        release.wait(30)  # a disk slow for single files
        return real(path)

    monkeypatch.setattr(durable_batch, "_fsync", stuck)
    monkeypatch.setattr(durable_batch, "HEDGE_SECONDS", 60.0)
    with DurableBatch() as batch:
        _link_all(batch, sources, tmp_path / "work")
        batch.write(tmp_path / "work" / "made-now.dcm", b"m" * 4096)
        batch.sync()  # by the file system's flush: the stuck fsync is not waited for
    release.set()
    assert (tmp_path / "work" / "made-now.dcm").read_bytes() == b"m" * 4096


def _fsync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fsync")]


def test_batches_share_the_fsync_threads_started_at_once(tmp_path: Path) -> None:
    durable_batch.warm_up()
    started = _fsync_threads()
    assert len(started) == durable_batch.FSYNC_THREADS  # all of them, before any batch
    for n in range(3):
        with DurableBatch() as batch:
            batch.write(tmp_path / str(n) / "a.dcm", b"a")
            batch.sync()
    assert _fsync_threads() == started  # no thread started for a batch


def test_closing_a_batch_drops_its_own_waiting_flushes_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fsync thread busy (batch A's files, held) and more of A's waiting, another
    batch B waiting too: A closed, its waiting flushes are never made, B's is."""
    release = threading.Event()
    started: list[str] = []
    flushed: list[str] = []
    real = durable_batch._fsync

    def held(path: Path) -> tuple[int, int]:
        started.append(path.name)
        release.wait(10)
        flushed.append(path.name)
        return real(path)

    monkeypatch.setattr(durable_batch, "_fsync", held)
    first = DurableBatch()
    threads = durable_batch.FSYNC_THREADS
    for n in range(threads + 3):
        first.write(tmp_path / "a" / f"{n}.dcm", b"a")
    with DurableBatch() as second:
        second.write(tmp_path / "b" / "b.dcm", b"b")
        first.close()  # gives up its files
        release.set()
        second.sync()
    assert "b.dcm" in flushed
    durable_batch.fsync_pool().submit(lambda: None).result(10)  # those before: run or dropped
    for _ in range(1000):
        if len(flushed) == len(started):
            break
        time.sleep(0.01)
    assert sorted(flushed) == sorted(started)
    assert len([name for name in started if name != "b.dcm"]) <= threads  # 3 or more dropped
