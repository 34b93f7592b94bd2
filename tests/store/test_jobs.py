from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aifi_app.store import jobs
from aifi_app.store.database import Database
from aifi_app.store.receiving import ReceivedInstance, record_instance
from aifi_app.store.states import JobState
from aifi_app.store.status import queue_snapshot


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "q.db")


def _inst(sop: str, study: str = "1.2.3", series: str = "1.2.3.1") -> ReceivedInstance:
    return ReceivedInstance(
        study_uid=study,
        series_uid=series,
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        transfer_syntax="1.2.840.10008.1.2.1",
        modality="DX",
        study_description="X thorax",
        path=f"spool/{study}/{sop}.dcm",
        size=100,
        calling_ae="MOD",
    )


def _record(db: Database, inst: ReceivedInstance, policy: str = "follow_up", idle: float = 30):
    return record_instance(db, inst, idle_seconds=idle, late_policy=policy)


def _audit(db: Database) -> list[str]:
    return [r["event"] for r in db.query("SELECT event FROM audit_events ORDER BY id")]


def test_instances_join_their_study_and_restart_the_idle_timer(db: Database) -> None:
    a = _record(db, _inst("1.2.3.1.1"))
    b = _record(db, _inst("1.2.3.1.2"))
    assert a.study_id == b.study_id and a.new_study and not b.new_study
    assert jobs.due_studies(db) == []
    row = db.query("SELECT * FROM studies")[0]
    assert row["instance_count"] == 2 and row["state"] == "receiving"
    assert jobs.due_studies(db, at=row["complete_due_at"]) == [a.study_id]


def test_resent_instance_counts_once(db: Database) -> None:
    first = _record(db, _inst("1.2.3.1.1"))
    resent = dataclasses.replace(_inst("1.2.3.1.1"), path="spool/1.2.3/again.dcm", size=7)
    again = _record(db, resent)
    assert again.duplicate and not again.new_study
    assert (again.study_id, again.instance_id) == (first.study_id, first.instance_id)
    assert db.query("SELECT instance_count FROM studies")[0]["instance_count"] == 1
    # the newer file replaces the first one's row
    assert db.query("SELECT path, size FROM instances") == [
        {"path": "spool/1.2.3/again.dcm", "size": 7}
    ]
    # another instance of the study is not one
    other = _record(db, _inst("1.2.3.1.2"))
    assert not other.duplicate and other.instance_id != first.instance_id
    assert db.query("SELECT instance_count FROM studies")[0]["instance_count"] == 2


def test_process_now_and_routing(db: Database) -> None:
    rec = _record(db, _inst("1.2.3.1.1"))
    assert jobs.process_now(db, rec.study_id, actor="test")
    assert jobs.due_studies(db) == [rec.study_id]
    assert jobs.mark_complete(db, rec.study_id)
    assert not jobs.mark_complete(db, rec.study_id)
    created = jobs.route_study(db, rec.study_id, [("cxr", "pneumonia-cxr")], "")
    assert len(created) == 1
    assert jobs.job(db, created[0])["state"] == "queued"
    assert {"study_started", "process_now", "study_complete", "routed", "job_created"} <= set(
        _audit(db)
    )


def test_a_study_found_due_is_not_completed_after_another_instance_arrived(
    db: Database,
) -> None:
    rec = _record(db, _inst("1.2.3.1.1"))
    jobs.process_now(db, rec.study_id, actor="test")
    assert jobs.due_studies(db) == [rec.study_id]  # the worker finds it due...
    _record(db, _inst("1.2.3.1.2"))  # ...an instance arrives: the idle timer restarts
    assert not jobs.mark_complete(db, rec.study_id)
    assert db.query("SELECT state FROM studies")[0]["state"] == "receiving"


def test_a_study_whose_association_is_open_waits_beyond_its_idle_timer(db: Database) -> None:
    rec = _record(db, _inst("1.2.3.1.1"), idle=0)
    row = db.query("SELECT last_received_at, complete_due_at FROM studies")[0]
    last = row["last_received_at"]
    held = {rec.study_id}
    assert jobs.due_studies(db, at=last + 1) == [rec.study_id]  # the timer alone
    assert jobs.due_studies(db, at=last + 1, held=held, hold_seconds=10) == []
    assert jobs.next_due_at(db) == row["complete_due_at"]
    assert jobs.next_due_at(db, held=held) is None  # the worker does not spin on it
    # a sender that keeps its association open: the study completes after the hold
    assert jobs.due_studies(db, at=last + 10, held=held, hold_seconds=10) == [rec.study_id]
    # other studies are not held
    other = _record(db, _inst("1.2.3.1.9", study="1.2.3.9"), idle=0)
    assert other.study_id != rec.study_id
    latest = max(r["last_received_at"] for r in db.query("SELECT last_received_at FROM studies"))
    assert latest - last < 10
    assert jobs.due_studies(db, at=latest, held=held, hold_seconds=10) == [other.study_id]
    assert jobs.next_due_at(db, held=held) is not None


def test_process_now_is_not_held_by_an_open_association(db: Database) -> None:
    rec = _record(db, _inst("1.2.3.1.1"), idle=30)
    held = {rec.study_id}
    assert jobs.due_studies(db, held=held, hold_seconds=10) == []
    assert jobs.process_now(db, rec.study_id, actor="test")
    assert jobs.due_studies(db, held=held, hold_seconds=10) == [rec.study_id]
    # also once the idle time has passed: a person's request is told from the timer
    rec2 = _record(db, _inst("1.2.3.2.1", study="1.2.3.2"), idle=0)
    assert jobs.due_studies(db, held={rec2.study_id}, hold_seconds=10) == [rec.study_id]
    assert jobs.process_now(db, rec2.study_id, actor="test")
    assert rec2.study_id in jobs.due_studies(db, held={rec2.study_id}, hold_seconds=10)
    assert jobs.mark_complete(db, rec2.study_id)


def test_no_match_is_recorded_with_its_reason(db: Database) -> None:
    rec = _record(db, _inst("1.2.3.1.1"), idle=0)
    jobs.mark_complete(db, rec.study_id)
    assert jobs.route_study(db, rec.study_id, [], "no route matches: modality CT") == []
    study = db.query("SELECT state, reason FROM studies")[0]
    assert study == {"state": "no_match", "reason": "no route matches: modality CT"}


@pytest.mark.parametrize(
    ("policy", "state"),
    [("follow_up", "receiving"), ("reprocess", "receiving"), ("record", "recorded")],
)
def test_late_instances_follow_the_policy(db: Database, policy: str, state: str) -> None:
    rec = _record(db, _inst("1.2.3.1.1"), policy=policy, idle=0)
    jobs.mark_complete(db, rec.study_id)
    jobs.route_study(db, rec.study_id, [("cxr", "pneumonia-cxr")], "")
    late = _record(db, _inst("1.2.3.1.9"), policy=policy)
    assert late.study_id != rec.study_id and late.new_study
    row = db.query(
        "SELECT kind, state, episode, instance_count FROM studies WHERE id = ?", (late.study_id,)
    )[0]
    assert row == {"kind": policy, "state": state, "episode": 2, "instance_count": 1}
    # a second late instance joins the same follow-up episode
    later = _record(db, _inst("1.2.3.1.10"), policy=policy)
    assert later.study_id == late.study_id
    # a resend of an instance already processed starts nothing
    dup = _record(db, _inst("1.2.3.1.1"), policy=policy)
    assert dup.duplicate and dup.study_id == rec.study_id


def test_transitions_are_checked_and_audited(db: Database) -> None:
    rec = _record(db, _inst("1.2.3.1.1"), idle=0)
    jobs.mark_complete(db, rec.study_id)
    (job_id,) = jobs.route_study(db, rec.study_id, [("cxr", "pneumonia-cxr")], "")
    with pytest.raises(jobs.InvalidTransitionError):
        jobs.transition(db, job_id, JobState.QUEUED, JobState.DELIVERED)
    jobs.transition(db, job_id, JobState.QUEUED, JobState.PSEUDONYMISED)
    with pytest.raises(jobs.StaleStateError):
        jobs.transition(db, job_id, JobState.QUEUED, JobState.PSEUDONYMISED)
    jobs.transition(db, job_id, JobState.PSEUDONYMISED, JobState.FAILED, reason="model crashed")
    assert jobs.retry_job(db, job_id, actor="mbb") == JobState.QUEUED
    with pytest.raises(jobs.InvalidTransitionError):
        jobs.retry_job(db, job_id, actor="mbb")
    events = db.query(
        "SELECT from_state, to_state, actor FROM audit_events WHERE job_id = ?"
        " AND event = 'state_changed' ORDER BY id",
        (job_id,),
    )
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        ("queued", "pseudonymised"),
        ("pseudonymised", "failed"),
        ("failed", "queued"),
    ]
    assert events[-1]["actor"] == "mbb"


def test_retry_of_a_failed_delivery_only_resends(db: Database) -> None:
    rec = _record(db, _inst("1.2.3.1.1"), idle=0)
    jobs.mark_complete(db, rec.study_id)
    (job_id,) = jobs.route_study(db, rec.study_id, [("cxr", "pneumonia-cxr")], "")
    for a, b in [
        (JobState.QUEUED, JobState.PSEUDONYMISED),
        (JobState.PSEUDONYMISED, JobState.SUBMITTED),
        (JobState.SUBMITTED, JobState.RESULT_RECEIVED),
    ]:
        jobs.transition(db, job_id, a, b)
    with db.transaction() as conn:
        jobs.add_outputs_in(conn, job_id, [jobs.PlannedOutput("sc", "2.25.1", "1.2", "r/1.dcm")])
    jobs.transition(db, job_id, JobState.RESULT_RECEIVED, JobState.FAILED, reason="PACS down")
    assert jobs.retry_job(db, job_id, actor="mbb") == JobState.RESULT_RECEIVED


def test_status_snapshot_has_states_reasons_and_timings(db: Database) -> None:
    rec = _record(db, _inst("1.2.3.1.1"), idle=0)
    jobs.mark_complete(db, rec.study_id)
    (job_id,) = jobs.route_study(db, rec.study_id, [("cxr", "pneumonia-cxr")], "")
    jobs.transition(db, job_id, JobState.QUEUED, JobState.REJECTED, reason="no DX image")
    snap = queue_snapshot(db)
    assert snap["counts"]["jobs"] == {"rejected": 1}
    job = snap["jobs"][0]
    assert job["reason"] == "no DX image"
    assert "queued" in job["stage_seconds"]
    assert "PatientName" not in str(snap)


def _delivered_job(db: Database, data_dir: Path) -> int:
    rec = _record(db, _inst("1.2.3.1.1"))
    jobs.process_now(db, rec.study_id, actor="test")
    jobs.mark_complete(db, rec.study_id)
    (job_id,) = jobs.route_study(db, rec.study_id, [("cxr", "pneumonia-cxr")], "")
    for a, b in (
        (JobState.QUEUED, JobState.PSEUDONYMISED),
        (JobState.PSEUDONYMISED, JobState.SUBMITTED),
        (JobState.SUBMITTED, JobState.RESULT_RECEIVED),
    ):
        jobs.transition(db, job_id, a, b)
    (data_dir / "work").mkdir(parents=True, exist_ok=True)
    (data_dir / "work" / "sc.dcm").write_bytes(b"result")
    with db.transaction() as conn:
        jobs.add_outputs_in(conn, job_id, [jobs.PlannedOutput("sc", "9.9", "1.2", "work/sc.dcm")])
    (out,) = jobs.outputs(db, job_id)
    jobs.mark_output_delivered(db, out["id"], "stored")
    jobs.transition(db, job_id, JobState.RESULT_RECEIVED, JobState.DELIVERED)
    return job_id


def test_resend_to_pacs_makes_delivered_results_pending_again(db: Database, tmp_path: Path) -> None:
    job_id = _delivered_job(db, tmp_path)
    assert jobs.resend_results(db, tmp_path, job_id, actor="gui:anna") == 1
    assert jobs.job(db, job_id)["state"] == "result_received"
    assert [o["state"] for o in jobs.outputs(db, job_id)] == ["pending"]
    last = db.query("SELECT detail, actor FROM audit_events ORDER BY id DESC LIMIT 1")[0]
    assert last == {"detail": "resend to PACS (1 object(s))", "actor": "gui:anna"}
    with pytest.raises(jobs.InvalidTransitionError, match="only delivered jobs"):
        jobs.resend_results(db, tmp_path, job_id, actor="gui:anna")
    jobs.transition(db, job_id, JobState.RESULT_RECEIVED, JobState.DELIVERED)
    (tmp_path / "work" / "sc.dcm").unlink()  # retention removed the results
    with pytest.raises(FileNotFoundError, match="retention"):
        jobs.resend_results(db, tmp_path, job_id, actor="gui:anna")
    assert jobs.job(db, job_id)["state"] == "delivered"


def test_route_to_another_algorithm_by_hand(db: Database) -> None:
    rec = _record(db, _inst("1.2.3.1.1"), idle=0)
    with pytest.raises(jobs.InvalidTransitionError, match="receiving"):
        jobs.route_to_algorithm(db, rec.study_id, "ct-lung-volume", actor="gui:piet")
    jobs.mark_complete(db, rec.study_id)
    jobs.route_study(db, rec.study_id, [], "no route matches")
    job_id = jobs.route_to_algorithm(db, rec.study_id, "ct-lung-volume", actor="gui:piet")
    assert jobs.job(db, job_id)["state"] == "queued"
    assert jobs.job(db, job_id)["route"] == "(by hand)"
    study = db.query("SELECT state, reason FROM studies")[0]
    assert study == {"state": "routed", "reason": None}
    with pytest.raises(jobs.InvalidTransitionError, match="retry it"):
        jobs.route_to_algorithm(db, rec.study_id, "ct-lung-volume", actor="gui:piet")
    with pytest.raises(KeyError):
        jobs.route_to_algorithm(db, 999, "ct-lung-volume", actor="gui:piet")
