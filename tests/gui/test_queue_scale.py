"""A large queue: 100,000 jobs in the database; the window shows the newest rows, follows
changes (a retried job, a new job) and filters. Functional only: the opening time and the
GUI-thread stalls are measured by ``bench/gui_bench.py``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aifi_app.store import jobs
from aifi_app.store.database import Database
from aifi_app.store.queue_view import DEFAULT_LIMIT

JOBS = 100_000


def _fill(db: Database, count: int) -> None:
    t = time.time() - 3600
    with db.transaction() as conn:
        conn.executemany(
            "INSERT INTO studies (id, study_uid, episode, kind, state, calling_ae, modality,"
            " study_description, instance_count, first_received_at, last_received_at,"
            " idle_seconds, complete_due_at, completed_at) VALUES"
            " (?, ?, 1, 'study', 'routed', 'DX_ROOM1', 'DX', 'X thorax', 1, ?, ?, 30, ?, ?)",
            ((i, f"1.2.{i}", t + i * 0.01, t + i * 0.01, t, t) for i in range(1, count + 1)),
        )
        conn.executemany(
            "INSERT INTO jobs (id, study_id, algorithm_id, route, state, reason, created_at,"
            " updated_at) VALUES (?, ?, 'pneumonia-cxr', 'chest', ?, ?, ?, ?)",
            (
                (
                    i,
                    i,
                    "failed" if i % 97 == 0 else "delivered",
                    "PACS not reachable" if i % 97 == 0 else None,
                    t,
                    t,
                )
                for i in range(1, count + 1)
            ),
        )


@pytest.mark.slow
def test_window_on_100k_jobs(qtbot, make_appliance, make_window, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    appliance = make_appliance()
    _fill(appliance.db, JOBS)
    window = make_window(appliance)
    window.show()
    qtbot.waitUntil(lambda: window.queue_model.rowCount() == DEFAULT_LIMIT, timeout=20_000)
    newest = window.queue_model.row_at(0)
    assert newest.job_id == JOBS  # newest first
    failed_id = 97 * (JOBS // 97 - 1)
    before = window.queue_model.row_by_key(("job", failed_id))
    assert before is not None and before.state == "failed"
    jobs.retry_job(appliance.db, failed_id, actor="test")

    def retried() -> bool:
        row = window.queue_model.row_by_key(("job", failed_id))
        return row is not None and row.stage_since > before.stage_since

    qtbot.waitUntil(retried, timeout=10_000)
    window.queue.search.setText("not reachable")
    qtbot.waitUntil(lambda: 0 < window.queue_model.rowCount() < DEFAULT_LIMIT, timeout=5_000)
    shown = [window.queue_model.row_at(i) for i in range(window.queue_model.rowCount())]
    assert all("not reachable" in r.search_text for r in shown)
    window.queue.search.setText("")
    qtbot.waitUntil(lambda: window.queue_model.rowCount() == DEFAULT_LIMIT, timeout=5_000)
    assert window.queue.select_key(("job", failed_id))
