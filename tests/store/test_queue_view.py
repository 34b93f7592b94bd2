"""The queue as the desktop client shows it, change detection, the audit log and cancel."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pytest

from aifi_app.store import audit_log, jobs
from aifi_app.store.changes import DataVersion
from aifi_app.store.database import Database
from aifi_app.store.queue_view import (
    QueueDiffer,
    instances,
    outputs,
    queue_rows,
    timeline,
    urgent_findings,
)
from aifi_app.store.receiving import ReceivedInstance, record_instance
from aifi_app.store.states import JobState


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "q.db")


def _receive(db: Database, study: str, modality: str = "DX") -> int:
    inst = ReceivedInstance(
        study_uid=study,
        series_uid=study + ".1",
        sop_instance_uid=study + ".1.1",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        transfer_syntax="1.2.840.10008.1.2.1",
        modality=modality,
        study_description="X thorax",
        path=f"spool/{study}.dcm",
        size=100,
        calling_ae="MOD",
    )
    return record_instance(db, inst, idle_seconds=30, late_policy="follow_up").study_id


def _job(db: Database, study: str) -> int:
    study_id = _receive(db, study)
    jobs.process_now(db, study_id, actor="t")
    jobs.mark_complete(db, study_id)
    (job_id,) = jobs.route_study(db, study_id, [("chest", "pneumonia-cxr")], "")
    return job_id


def test_rows_show_jobs_and_studies_without_jobs(db: Database) -> None:
    job_id = _job(db, "1.2.3")
    waiting = _receive(db, "1.2.4", modality="CT")
    rows = {r.key: r for r in queue_rows(db)}
    assert set(rows) == {("job", job_id), ("study", waiting)}
    job = rows[("job", job_id)]
    assert (job.algorithm, job.state, job.modality) == ("pneumonia-cxr", "queued", "DX")
    assert job.study_description == "X thorax" and job.reason == ""
    assert rows[("study", waiting)].state == "receiving"
    assert rows[("study", waiting)].job_id is None


def _hl7(db: Database, job_id: int, control: str, state: str) -> None:
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO ris_outbox (job_id, kind, message_type, control_id, message, state,"
            " next_attempt_at, created_at) VALUES (?, 'result', 'ORU^R01^ORU_R01', ?, 'x', ?,"
            " 0, 0)",
            (job_id, control, state),
        )


def test_rows_show_urgency_and_the_worst_hl7_state(db: Database) -> None:
    quiet, sent, failed = _job(db, "1.2.3"), _job(db, "1.2.4"), _job(db, "1.2.5")
    with db.transaction() as conn:
        conn.execute("UPDATE jobs SET urgent = 1 WHERE id = ?", (failed,))
    _hl7(db, sent, "A1", "sent")
    _hl7(db, failed, "B1", "sent")
    _hl7(db, failed, "B2", "failed")
    _hl7(db, failed, "B3", "pending")
    rows = {r.job_id: r for r in queue_rows(db)}
    assert (rows[quiet].urgent, rows[quiet].hl7) == (False, "")
    assert (rows[sent].urgent, rows[sent].hl7) == (False, "sent")
    assert (rows[failed].urgent, rows[failed].hl7) == (True, "failed")
    assert "urgent" in rows[failed].search_text and "urgent" not in rows[sent].search_text
    with db.transaction() as conn:
        conn.execute("UPDATE ris_outbox SET state = 'pending' WHERE control_id = 'B2'")
    assert {r.job_id: r for r in queue_rows(db)}[failed].hl7 == "pending"


def test_timeline_holds_the_study_and_job_events(db: Database) -> None:
    job_id = _job(db, "1.2.3")
    jobs.transition(db, job_id, JobState.QUEUED, JobState.FAILED, reason="model crashed")
    study_id = jobs.job(db, job_id)["study_id"]
    events = [e.event for e in timeline(db, study_id=study_id, job_id=job_id)]
    assert events[-3:] == ["routed", "job_created", "state_changed"]
    assert "study_complete" in events


def test_cancel_job_and_retry_it(db: Database) -> None:
    job_id = _job(db, "1.2.3")
    jobs.cancel_job(db, job_id, actor="gui")
    assert jobs.job(db, job_id)["state"] == "cancelled"
    with pytest.raises(jobs.InvalidTransitionError):
        jobs.cancel_job(db, job_id, actor="gui")
    with pytest.raises(KeyError):
        jobs.cancel_job(db, 999, actor="gui")
    assert jobs.retry_job(db, job_id, actor="gui") == JobState.QUEUED
    (last,) = db.query("SELECT actor, to_state FROM audit_events ORDER BY id DESC LIMIT 1")
    assert last == {"actor": "gui", "to_state": "queued"}


def test_data_version_sees_commits_from_other_threads_and_its_own(db: Database) -> None:
    version = DataVersion(db)
    assert version.changed()
    assert not version.changed()
    t = threading.Thread(target=_receive, args=(db, "1.2.3"))
    t.start()
    t.join()
    assert version.changed()
    assert not version.changed()
    _receive(db, "1.2.4")
    assert version.changed()


def test_audit_log_filters_and_exports_csv(db: Database, tmp_path: Path) -> None:
    job_id = _job(db, "1.2.3")
    jobs.cancel_job(db, job_id, actor="gui")
    assert "job" in audit_log.categories(db)
    found = audit_log.entries(db, category="job", text="cancel")
    assert [(e.event, e.actor) for e in found] == [("state_changed", "gui")]
    assert audit_log.entries(db, since=found[0].at + 1) == []
    out = tmp_path / "audit.csv"
    assert audit_log.write_csv(audit_log.entries(db), out) == len(audit_log.entries(db))
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["event"] == "state_changed" and rows[0]["at"].endswith("+00:00")


def _deliver(db: Database, job_id: int, result: dict[str, object] | None = None) -> None:
    for to in (JobState.PSEUDONYMISED, JobState.SUBMITTED):
        jobs.transition(db, job_id, JobState(jobs.job(db, job_id)["state"]), to)
    jobs.transition(
        db,
        job_id,
        JobState.SUBMITTED,
        JobState.RESULT_RECEIVED,
        result_json=json.dumps(result or {"findings": []}),
    )
    jobs.transition(db, job_id, JobState.RESULT_RECEIVED, JobState.DELIVERED)


def test_differ_sends_only_changes_and_finds_new_results(db: Database) -> None:
    first_job = _job(db, "1.2.3")
    differ = QueueDiffer()
    baseline = differ.update(queue_rows(db))
    assert baseline.first and len(baseline.added) == 1 and baseline.newly_resulted == ()
    assert differ.update(queue_rows(db)).changed == ()  # nothing changed: nothing sent
    positive = {"findings": [{"label": "Pneumonia suspected", "positive": True}]}
    _deliver(db, first_job, positive)
    second_job = _job(db, "1.2.4")
    _deliver(db, second_job, {"findings": [{"label": "No pneumonia", "positive": False}]})
    delta = differ.update(queue_rows(db))
    assert [r.job_id for r in delta.changed] == [first_job]
    assert [r.job_id for r in delta.added] == [second_job]
    assert {r.job_id for r in delta.newly_resulted} == {first_job, second_job}
    assert delta.summary.job_states == {"delivered": 2}
    # a positive finding is not urgent by itself: only one the manifest lists (jobs.urgent)
    assert urgent_findings(db, [first_job, second_job]) == {}
    with db.transaction() as conn:
        conn.execute("UPDATE jobs SET urgent = 1 WHERE id = ?", (first_job,))
    assert urgent_findings(db, [first_job, second_job]) == {first_job: ("Pneumonia suspected",)}
    gone = differ.update([])
    assert set(gone.removed) == {("job", first_job), ("job", second_job)}


def test_instances_and_outputs_of_a_job(db: Database) -> None:
    job_id = _job(db, "1.2.3")
    (line,) = instances(db, jobs.job(db, job_id)["study_id"])
    assert (line.series, line.size, line.calling_ae) == (1, 100, "MOD")
    assert "1.2.3" not in repr(line)  # no UIDs of the original study
    with db.transaction() as conn:
        jobs.add_outputs_in(
            conn,
            job_id,
            [jobs.PlannedOutput("sc", "1.2.9.1", "1.2.840.10008.5.1.4.1.1.7", "work/1/sc.dcm")],
        )
    (out,) = outputs(db, job_id)
    assert (out.kind, out.state, out.path) == ("sc", "pending", "work/1/sc.dcm")
