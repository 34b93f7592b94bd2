"""Group commit of received instances: shared commits, and each caller's own outcome."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import pytest

from aifi_app.store import jobs
from aifi_app.store.database import Database
from aifi_app.store.receiving import (
    GroupRecorder,
    IdleTimes,
    ReceivedInstance,
    Recorded,
    RecorderClosed,
)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "q.db")


def _inst(sop: str, study: str = "1.2.3") -> ReceivedInstance:
    return ReceivedInstance(
        study_uid=study,
        series_uid=study + ".1",
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax="1.2.840.10008.1.2.1",
        modality="CT",
        study_description="CT thorax",
        path=f"spool/{study}/{sop}.dcm",
        size=10,
        calling_ae="CT01",
    )


def test_concurrent_callers_all_get_their_own_instance_recorded(db: Database) -> None:
    recorder = GroupRecorder(db)
    results: dict[str, Recorded] = {}
    start = threading.Barrier(8)

    def send(n: int) -> None:
        start.wait()
        for i in range(25):
            sop = f"1.2.3.{n}.{i}"
            results[sop] = recorder.record(_inst(sop), idle_seconds=30, late_policy="follow_up")

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = db.query("SELECT id, sop_instance_uid FROM instances")
    assert len(rows) == 200
    assert {r["sop_instance_uid"]: r["id"] for r in rows} == {
        sop: rec.instance_id for sop, rec in results.items()
    }
    study = db.query("SELECT instance_count, state FROM studies")
    assert study == [{"instance_count": 200, "state": "receiving"}]
    assert sum(rec.new_study for rec in results.values()) == 1


def test_a_failing_instance_fails_only_its_own_caller(db: Database) -> None:
    recorder = GroupRecorder(db)
    good = _inst("1.2.3.1")
    bad = _inst("1.2.3.2")
    with db.transaction() as conn:  # a trigger stands in for a database fault
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON instances WHEN NEW.sop_instance_uid ="
            " '1.2.3.2' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    # both queued before either commits: the batch fails, then each is tried alone
    outcomes: dict[str, object] = {}

    def run(inst: ReceivedInstance) -> None:
        try:
            outcomes[inst.sop_instance_uid] = recorder.record(
                inst, idle_seconds=30, late_policy="follow_up"
            )
        except Exception as exc:
            outcomes[inst.sop_instance_uid] = exc

    with recorder._commit_lock:  # hold commits until both are queued
        threads = [threading.Thread(target=run, args=(i,)) for i in (good, bad)]
        for t in threads:
            t.start()
        while len(recorder._pending) < 2:
            threading.Event().wait(0.01)
    for t in threads:
        t.join()
    assert isinstance(outcomes["1.2.3.1"], Recorded)
    assert isinstance(outcomes["1.2.3.2"], Exception)
    assert [r["sop_instance_uid"] for r in db.query("SELECT * FROM instances")] == ["1.2.3.1"]


def test_next_due_at_is_the_earliest_receiving_study(db: Database) -> None:
    assert jobs.next_due_at(db) is None
    recorder = GroupRecorder(db)
    recorder.record(_inst("1.1", study="1.1"), idle_seconds=30, late_policy="follow_up")
    recorder.record(_inst("2.1", study="2.1"), idle_seconds=5, late_policy="follow_up")
    due = db.query("SELECT study_uid, complete_due_at FROM studies")
    assert jobs.next_due_at(db) == min(r["complete_due_at"] for r in due)


def test_a_closed_recorder_refuses_instead_of_recording(db: Database) -> None:
    recorder = GroupRecorder(db)
    recorder.record(_inst("1.1"), idle_seconds=30, late_policy="follow_up")
    recorder.close()
    with pytest.raises(RecorderClosed):
        recorder.record(_inst("1.2"), idle_seconds=30, late_policy="follow_up")
    assert [r["sop_instance_uid"] for r in db.query("SELECT * FROM instances")] == ["1.1"]
    assert recorder._pending == []


def test_the_recorders_commits_are_left_to_the_next_flush(db: Database) -> None:
    """Its own connection, synchronous=NORMAL (the spool file is what is flushed)."""
    recorder = GroupRecorder(db)
    recorder.record(_inst("1.1"), idle_seconds=30, late_policy="follow_up")
    assert recorder._connection().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, everyone else
    # visible to every other connection at once
    assert [r["sop_instance_uid"] for r in db.query("SELECT * FROM instances")] == ["1.1"]


def test_the_idle_time_is_the_shortest_of_the_routes_that_may_take_the_modality() -> None:
    times = IdleTimes(
        30.0,
        ((5.0, frozenset({"CR", "DX"})), (12.0, frozenset()), (2.0, frozenset({"CT"}))),
    )
    assert times("DX") == 5.0
    assert times("CT") == 2.0
    assert times("MR") == 12.0  # the route that takes every modality
    assert IdleTimes(30.0, ((5.0, frozenset({"CR"})),))("MR") == 30.0  # no route: the default
    assert pickle.loads(pickle.dumps(times)) == times  # a receiver process gets it
