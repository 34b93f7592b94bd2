from __future__ import annotations

from pathlib import Path

import pytest

from aifi_app.store import node_checks, stage_times
from aifi_app.store.database import Database


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = Database(tmp_path / "q.db")
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO studies (id, study_uid, episode, kind, state, calling_ae,"
            " first_received_at, last_received_at, idle_seconds, complete_due_at)"
            " VALUES (1, '1.2.3', 1, 'primary', 'routed', 'CT01', 0, 0, 0, 0)"
        )
        conn.execute(
            "INSERT INTO jobs (id, study_id, algorithm_id, route, state, created_at, updated_at)"
            " VALUES (1, 1, 'a', 'r', 'queued', 0, 0)"
        )
    return db


def test_a_stage_runs_again_and_replaces_its_row(db: Database) -> None:
    stage_times.record(db, 1, stage_times.MODEL, 1.0, 2.0)
    stage_times.record(db, 1, stage_times.MODEL, 5.0, 7.5)
    assert stage_times.of_job(db, 1) == {"model": (5.0, 7.5)}
    with pytest.raises(ValueError, match="unknown stage"):
        stage_times.record(db, 1, "coffee", 0, 1)


def test_timed_records_only_a_block_that_finished(db: Database) -> None:
    with pytest.raises(RuntimeError), stage_times.timed(db, 1, stage_times.DELIVER):
        raise RuntimeError("send failed")
    assert stage_times.of_job(db, 1) == {}
    with stage_times.timed(db, 1, stage_times.DELIVER):
        pass
    ((started, finished),) = stage_times.of_job(db, 1).values()
    assert started <= finished


def test_node_checks_between_and_last_before(db: Database) -> None:
    node_checks.record(db, "pacs", node_checks.DELIVERY, False, "refused", at=10.0)
    node_checks.record(db, "pacs", node_checks.DELIVERY, True, at=20.0)
    node_checks.record(db, "vendor", node_checks.SUBMISSION, True, at=15.0)
    assert [(c.node, c.ok) for c in node_checks.between(db, 10.0, 20.0)] == [
        ("pacs", False),
        ("vendor", True),
    ]
    before = node_checks.last_before(db, "pacs", 20.0)
    assert before is not None and (before.ok, before.detail) == (False, "refused")
    assert node_checks.last_before(db, "pacs", 10.0) is None
