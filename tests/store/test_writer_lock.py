"""The recorders' lock between processes: one holder at a time, released when it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aifi_app.store.database import Database
from aifi_app.store.receiving import RECORDER_LOCK_SUFFIX, GroupRecorder
from aifi_app.store.writer_lock import WriterLock
from tests.store.test_receiving import _inst

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock: POSIX only")

_HOLD = """
import sys, time
from pathlib import Path
from aifi_app.store.writer_lock import WriterLock
with WriterLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def _stop(holder: subprocess.Popen[str]) -> None:
    if holder.poll() is None:
        holder.kill()
    holder.wait(10)
    assert holder.stdout is not None
    holder.stdout.close()


def test_a_second_process_waits_until_the_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "q.db.recorders"
    holder = _holder(path)
    taken = threading.Event()
    lock = WriterLock(path)

    def take() -> None:
        with lock:
            taken.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    try:
        assert not taken.wait(0.3)  # the other process holds it
        os.kill(holder.pid, signal.SIGKILL)  # killed while it holds the lock
        holder.wait(10)
        assert taken.wait(10)  # the kernel released it
    finally:
        _stop(holder)
        thread.join(10)
        lock.close()
    assert (path.stat().st_mode & 0o777) == 0o600


def test_the_lock_is_taken_again_after_it_was_released(tmp_path: Path) -> None:
    lock, other = WriterLock(tmp_path / "l"), WriterLock(tmp_path / "l")
    for _ in range(3):
        with lock:
            pass
        with other:  # another holder (another open file: as another process)
            pass
    lock.close()
    other.close()


def test_a_recorder_waits_for_another_processs_recorder(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.db")
    holder = _holder(db.path.with_name(db.path.name + RECORDER_LOCK_SUFFIX))
    recorder = GroupRecorder(db)
    done = threading.Event()

    def record() -> None:
        recorder.record(_inst("1.2.3.4"), idle_seconds=30, late_policy="follow_up")
        done.set()

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    try:
        assert not done.wait(0.3)
        holder.kill()
        holder.wait(10)
        assert done.wait(10)
    finally:
        _stop(holder)
        thread.join(10)
        recorder.close()
        db.close()
    assert len(db.query("SELECT id FROM instances")) == 1
