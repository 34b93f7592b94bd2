from __future__ import annotations

from pathlib import Path

from aifi_app.pipeline.retention import sweep_spool
from aifi_app.store import jobs
from aifi_app.store.database import Database
from aifi_app.store.receiving import ReceivedInstance, record_instance
from aifi_app.store.states import JobState


def _study(db: Database, data_dir: Path, study: str, state_to: JobState | None) -> int:
    path = Path("spool") / study / "1.dcm"
    (data_dir / path).parent.mkdir(parents=True, exist_ok=True)
    (data_dir / path).write_bytes(b"x")
    rec = record_instance(
        db,
        ReceivedInstance(
            study,
            "1.1",
            f"{study}.9",
            "1.2",
            "1.2.840.10008.1.2.1",
            "DX",
            "",
            path.as_posix(),
            1,
            "MOD",
        ),
        idle_seconds=0,
        late_policy="follow_up",
    )
    jobs.mark_complete(db, rec.study_id)
    (job_id,) = jobs.route_study(db, rec.study_id, [("r", "a")], "")
    if state_to is not None:
        jobs.transition(db, job_id, JobState.QUEUED, state_to, reason="test")
    return rec.study_id


def test_only_finished_old_studies_lose_their_images(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.db")
    done = _study(db, tmp_path, "1.2.1", JobState.REJECTED)
    busy = _study(db, tmp_path, "1.2.2", None)
    # nothing is old enough yet
    assert sweep_spool(db, tmp_path, retention_days=1) == 0
    with db.transaction() as conn:
        conn.execute("UPDATE studies SET last_received_at = last_received_at - 3 * 86400")
        conn.execute("UPDATE jobs SET updated_at = updated_at - 3 * 86400")
    assert sweep_spool(db, tmp_path, retention_days=0) == 0  # 0 keeps forever
    assert sweep_spool(db, tmp_path, retention_days=1) == 1
    assert not (tmp_path / "spool" / "1.2.1").exists()
    assert (tmp_path / "spool" / "1.2.2" / "1.dcm").exists()
    removed = db.query("SELECT id FROM studies WHERE spool_removed_at IS NOT NULL")
    assert [r["id"] for r in removed] == [done]
    assert busy != done
    assert sweep_spool(db, tmp_path, retention_days=1) == 0  # swept once
    db.close()
