from __future__ import annotations

from pathlib import Path

import pytest

from aifi_app.store import feedback
from aifi_app.store.database import Database
from aifi_app.store.feedback import FeedbackError, Verdict


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
            "INSERT INTO jobs (id, study_id, algorithm_id, route, state, result_json,"
            " created_at, updated_at) VALUES (1, 1, 'a', 'r', 'delivered', '{}', 0, 0),"
            " (2, 1, 'b', 'r', 'rejected', NULL, 0, 0)"
        )
    return db


def test_verdicts_are_kept_as_history_and_the_newest_counts(db: Database) -> None:
    assert feedback.latest(db, 1) is None
    feedback.record(db, 1, Verdict.FALSE_POSITIVE, "MB", "  nothing there  ")
    feedback.record(db, 1, Verdict.AGREE, "jdv")
    latest = feedback.latest(db, 1)
    assert latest is not None and (latest.verdict, latest.who) == (Verdict.AGREE, "jdv")
    first, _second = feedback.history(db, 1)
    assert (first.verdict, first.comment) == (Verdict.FALSE_POSITIVE, "nothing there")
    events = db.query("SELECT category, event, job_id, detail, actor FROM audit_events")
    assert events[0] == {
        "category": "feedback",
        "event": "verdict",
        "job_id": 1,
        "detail": "false_positive (with comment)",  # the comment itself stays out of the log
        "actor": "MB",
    }
    assert events[1]["detail"] == "agree"


def test_refusals(db: Database) -> None:
    with pytest.raises(FeedbackError, match="no job 9"):
        feedback.record(db, 9, Verdict.AGREE, "MB")
    with pytest.raises(FeedbackError, match="no result"):
        feedback.record(db, 2, Verdict.AGREE, "MB")
    for who in ("", "Jan Jansen", "x" * 33, "a;b"):
        with pytest.raises(FeedbackError, match="initials"):
            feedback.record(db, 1, Verdict.AGREE, who)
    with pytest.raises(FeedbackError, match="longer"):
        feedback.record(db, 1, Verdict.AGREE, "MB", "x" * 2001)
    with pytest.raises(Exception, match="CHECK"), db.transaction() as conn:
        conn.execute("INSERT INTO feedback (job_id, verdict, who, at) VALUES (1, 'maybe', 'MB', 0)")
    assert feedback.history(db, 1) == []


def test_current_user_is_usable_as_who() -> None:
    who = feedback.current_user()
    assert feedback._WHO.match(who)
