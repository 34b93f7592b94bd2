"""The outbox's retention: the text of done HL7 messages (real identifiers) goes."""

from __future__ import annotations

from pathlib import Path

from aifi_app.ris import outbox
from aifi_app.store.database import Database, now
from tests.pipeline.test_retention import _study

DAY = 86400.0


def _message(db: Database, job_id: int, control: str, state: str, age_days: float) -> None:
    at = now() - age_days * DAY
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO ris_outbox (job_id, kind, message_type, control_id, message, state,"
            " next_attempt_at, created_at, sent_at) VALUES (?, 'result', 'ORU^R01^ORU_R01',"
            " ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                control,
                f"MSH|PID|DOE^JANE {control}",
                state,
                at,
                at,
                at if state == outbox.SENT else None,
            ),
        )


def _texts(db: Database) -> dict[str, str]:
    rows = db.query("SELECT control_id, message FROM ris_outbox")
    return {r["control_id"]: r["message"] for r in rows}


def test_done_messages_lose_their_text_after_the_retention_period(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.db")
    _study(db, tmp_path, "1.2.1", None)
    (job_id,) = [r["id"] for r in db.query("SELECT id FROM jobs")]
    _message(db, job_id, "OLD-SENT", outbox.SENT, 10)
    _message(db, job_id, "OLD-FAILED", outbox.FAILED, 10)
    _message(db, job_id, "OLD-PENDING", outbox.PENDING, 10)
    _message(db, job_id, "NEW-SENT", outbox.SENT, 1)

    assert outbox.purge_content(db, retention_days=0) == 0  # 0 keeps forever
    assert outbox.purge_content(db, retention_days=7) == 2
    texts = _texts(db)
    assert texts["OLD-SENT"] == "" and texts["OLD-FAILED"] == ""
    assert "DOE^JANE" in texts["OLD-PENDING"]  # still to be sent
    assert "DOE^JANE" in texts["NEW-SENT"]
    # the rows stay for the queue and the audit trail, with their state and control ID
    assert {m["control_id"] for m in outbox.messages_of_job(db, job_id)} == set(texts)
    events = db.query("SELECT detail FROM audit_events WHERE event = 'hl7_content_removed'")
    assert [e["detail"] for e in events] == ["the text of 2 HL7 message(s) removed after 7 day(s)"]
    assert outbox.purge_content(db, retention_days=7) == 0  # once
    # a failed message whose text is gone cannot be queued again
    assert outbox.retry_failed(db, job_id, actor="test") == 0
    db.close()
