"""``python bench/gui_bench.py`` (or ``python -m bench --only gui``): the desktop window on
a large queue.

A real appliance runs in this process (as ``aifi-app`` does) with ``--jobs`` jobs in its
database (default 100,000). Measured:

- **open**: seconds from creating the main window until the queue table shows its rows;
- **worst stall**: the largest lateness of a 5 ms heartbeat timer on the GUI thread (how
  long the GUI thread could not handle events), from the moment the window is shown
  until it shows its rows (building the window's widgets before that is one stretch of
  GUI work, reported as the time to build), and then for
  ``--seconds`` while another thread keeps changing the queue (a job fails, is retried,
  a new study and job arrive, several times a second) and the filters change every
  0.4 s (state, algorithm, search text, period);
- the 99th percentile of that lateness, how many heartbeats were late by 50 ms or more,
  and the most CPU time the GUI thread itself used between two heartbeats: on a loaded
  machine a late beat may be waiting for a CPU (or the GIL) rather than our work.

Offscreen Qt (no display needed). The goal in issue 6: open < 2 s, worst stall < 50 ms.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from aifi_app.config.settings import (
    CompletionSettings,
    NodeSettings,
    Settings,
    StorageSettings,
)
from aifi_app.service import Appliance
from aifi_app.store import jobs
from aifi_app.store.database import Database

HEARTBEAT_MS = 5


def fill(db: Database, count: int) -> None:
    """``count`` routed studies with one job each; every 97th job failed."""
    t = time.time() - 3600
    with db.transaction() as conn:
        conn.executemany(
            "INSERT INTO studies (id, study_uid, episode, kind, state, calling_ae, modality,"
            " study_description, instance_count, first_received_at, last_received_at,"
            " idle_seconds, complete_due_at, completed_at) VALUES"
            " (?, ?, 1, 'study', 'routed', ?, 'DX', ?, 1, ?, ?, 30, ?, ?)",
            (
                (i, f"1.2.{i}", f"DX_ROOM{i % 3}", f"X thorax {i % 11}", *(t + i * 0.01,) * 2, t, t)
                for i in range(1, count + 1)
            ),
        )
        conn.executemany(
            "INSERT INTO jobs (id, study_id, algorithm_id, route, state, reason, created_at,"
            " updated_at) VALUES (?, ?, ?, 'chest', ?, ?, ?, ?)",
            (
                (
                    i,
                    i,
                    "pneumonia-cxr" if i % 2 else "fracture-dx",
                    "failed" if i % 97 == 0 else "delivered",
                    "PACS not reachable" if i % 97 == 0 else None,
                    t,
                    t,
                )
                for i in range(1, count + 1)
            ),
        )


class StallMeter:
    """The lateness of a 5 ms heartbeat on the GUI thread, and the GUI thread's own CPU
    time between two beats (its work, as opposed to waiting for a CPU or the GIL)."""

    def __init__(self) -> None:
        self.late_ms: list[int] = []
        self.busy_ms: list[float] = []
        self._clock = QElapsedTimer()
        self._cpu = 0.0
        self._timer = QTimer()
        self._timer.setInterval(HEARTBEAT_MS)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.late_ms = []
        self.busy_ms = []
        self._clock.start()
        self._cpu = time.thread_time()
        self._timer.start()

    def _tick(self) -> None:
        self.late_ms.append(max(0, self._clock.restart() - HEARTBEAT_MS))
        cpu = time.thread_time()
        self.busy_ms.append((cpu - self._cpu) * 1000)
        self._cpu = cpu

    def stop(self) -> None:
        self._timer.stop()

    def summary(self) -> str:
        late = sorted(self.late_ms) or [0]
        p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
        over = sum(x >= 50 for x in late)
        busy = max(self.busy_ms, default=0.0)
        return (
            f"worst stall {late[-1]} ms, p99 {p99} ms, {over} of {len(late)} beats >= 50 ms"
            f" late; most GUI-thread CPU between two beats {busy:.0f} ms"
        )


def churn(db: Database, first_new_id: int, stop: threading.Event) -> int:
    """Change the queue until ``stop``: fail, retry and add jobs. Returns the changes made."""
    changes = 0
    new_id = first_new_id
    failed_ids = [i for i in range(first_new_id - 1, 0, -1) if i % 97 == 0][:20]
    while not stop.is_set():
        now = time.time()
        with db.transaction() as conn:
            conn.execute(
                "INSERT INTO studies (id, study_uid, episode, kind, state, calling_ae, modality,"
                " study_description, instance_count, first_received_at, last_received_at,"
                " idle_seconds, complete_due_at, completed_at) VALUES"
                " (?, ?, 1, 'study', 'routed', 'DX_ROOM1', 'DX', 'X thorax', 1, ?, ?, 30, ?, ?)",
                (new_id, f"1.3.{new_id}", now, now, now, now),
            )
            conn.execute(
                "INSERT INTO jobs (id, study_id, algorithm_id, route, state, created_at,"
                " updated_at) VALUES (?, ?, 'pneumonia-cxr', 'chest', 'queued', ?, ?)",
                (new_id, new_id, now, now),
            )
        new_id += 1
        job_id = failed_ids[changes % len(failed_ids)]
        try:
            jobs.retry_job(db, job_id, actor="bench")
        except jobs.InvalidTransitionError:  # retried in an earlier round: fail it again
            with db.transaction() as conn:
                conn.execute(
                    "UPDATE jobs SET state = 'failed', reason = 'PACS not reachable',"
                    " updated_at = ? WHERE id = ?",
                    (time.time(), job_id),
                )
        changes += 2
        stop.wait(0.15)
    return changes


def spin(seconds: float, until: Callable[[], bool] | None = None) -> None:
    """Run the GUI event loop for ``seconds``, or until ``until()`` is true."""
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    check = QTimer()
    if until is not None:
        check.setInterval(1)
        check.timeout.connect(lambda: loop.quit() if until() else None)
        check.start()
    loop.exec()
    check.stop()


def run(count: int, seconds: float) -> list[str]:
    from aifi_app.gui.main_window import MainWindow
    from aifi_app.gui.translations import Translations

    _app = QApplication.instance() or QApplication([])
    lines = []
    with tempfile.TemporaryDirectory(prefix="aifi-gui-bench-") as tmp:
        settings = Settings(
            node=NodeSettings(port=0),
            completion=CompletionSettings(idle_seconds=30.0),
            storage=StorageSettings(data_dir=str(Path(tmp) / "data")),
        )
        appliance = Appliance(settings, secret_for=lambda _: b"k" * 32)
        appliance.start()
        try:
            fill(appliance.db, count)
            translations = Translations()
            translations.use("en")
            meter = StallMeter()
            started = time.perf_counter()
            window = MainWindow(appliance, translations)
            window.show()
            built = time.perf_counter() - started
            meter.start()  # from here the window is on screen and should stay responsive
            spin(30.0, until=lambda: window.queue_model.rowCount() > 0)
            opened = time.perf_counter() - started
            shown = window.queue_model.rowCount()
            spin(1.0)  # let the opening settle (column sizes, tray)
            meter.stop()
            lines.append(
                f"open: window built and shown in {built:.2f} s, {shown} rows in it after"
                f" {opened:.2f} s; from shown until 1 s after the rows: {meter.summary()}"
            )

            stop = threading.Event()
            result: list[int] = []
            changer = threading.Thread(
                target=lambda: result.append(churn(appliance.db, count + 1, stop)), daemon=True
            )
            screen = window.queue
            steps = [
                lambda: screen.state_filter.setCurrentIndex(screen.state_filter.findData("failed")),
                lambda: screen.search.setText("not reachable"),
                lambda: screen.state_filter.setCurrentIndex(0),
                lambda: screen.algorithm_filter.setCurrentIndex(1),
                lambda: screen.search.setText("x thorax 7"),
                lambda: screen.period_filter.setCurrentIndex(1),
                lambda: screen.search.setText(""),
                lambda: screen.algorithm_filter.setCurrentIndex(0),
                lambda: screen.period_filter.setCurrentIndex(0),
            ]
            filters = QTimer()
            filters.setInterval(400)
            step = [0]

            def next_filter() -> None:
                steps[step[0] % len(steps)]()
                step[0] += 1

            filters.timeout.connect(next_filter)
            meter.start()
            changer.start()
            filters.start()
            spin(seconds)
            filters.stop()
            stop.set()
            changer.join()
            meter.stop()
            lines.append(
                f"updates + filtering for {seconds:.0f} s ({result[0]} queue changes,"
                f" {step[0]} filter changes): {meter.summary()}"
            )
            window.shut_down()
        finally:
            appliance.stop()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    lines.append(f"{count} jobs in the database; load average {load} on {os.cpu_count()} CPUs")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/gui_bench.py", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    for line in run(args.jobs, args.seconds):
        print(line)


if __name__ == "__main__":
    main()
