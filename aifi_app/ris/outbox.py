"""The persistent outbox of HL7 messages to the RIS (table ``ris_outbox``).

A job's messages are queued in the same transaction that records its result, so a
restart loses none and sends none twice over a completed ACK. A priority message
(urgent finding) is due at once; a result message (ORU) once the job's objects are in
the PACS (job delivered), so that the radiologist can open what the RIS announces.
Rows move pending -> sent, or pending -> failed after the site's maximum attempts;
:func:`retry_failed` puts failed ones back. Messages hold the original identifiers the
RIS needs; they are never logged, and :func:`purge_content` blanks the text of messages
that are done (acknowledged or failed) once the spool's retention period has passed: the
row (type, control ID, state, ACK) stays for the queue and the audit trail.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydicom import Dataset

from aifi_app.algorithms.findings import AlgorithmResult
from aifi_app.algorithms.package import AlgorithmPackage
from aifi_app.config.settings import Settings
from aifi_app.ris.hl7_messages import (
    PRIORITY_TYPE,
    RESULT_TYPE,
    MessageParties,
    order_identity,
    priority_message,
    result_message,
)
from aifi_app.store import audit
from aifi_app.store.database import Database, now

__all__ = [
    "PRIORITY",
    "RESULT",
    "OutboxRow",
    "due",
    "messages_of_job",
    "next_due_at",
    "purge_content",
    "queue_for_result_in",
    "record_attempt_failed",
    "record_sent",
    "retry_failed",
]

RESULT = "result"
PRIORITY = "priority"
PENDING, SENT, FAILED = "pending", "sent", "failed"


@dataclass(frozen=True)
class OutboxRow:
    id: int
    job_id: int
    kind: str
    message_type: str
    control_id: str
    message: str
    attempts: int


def queue_for_result_in(
    conn: sqlite3.Connection,
    job_id: int,
    package: AlgorithmPackage,
    result: AlgorithmResult,
    original_header: Dataset,
    settings: Settings,
) -> list[str]:
    """Mark the job urgent when a positive finding is one the manifest calls urgent, and
    queue its HL7 messages when a RIS is configured: OMG^O19 (priority STAT) for urgent
    findings, ORU^R01 when the manifest sends results and there is one. Inside the
    caller's transaction; returns the message types queued."""
    urgent = package.urgent_in(result.findings)
    if urgent:
        conn.execute("UPDATE jobs SET urgent = 1 WHERE id = ?", (job_id,))
        audit.record(
            conn,
            "results",
            "urgent_finding",
            job_id=job_id,
            detail="urgent: " + "; ".join(f.concept.meaning for f in urgent),
        )
    if settings.ris_node is None:
        return []
    ris = settings.ris
    parties = MessageParties(
        ris.sending_application,
        ris.sending_facility,
        ris.receiving_application,
        ris.receiving_facility,
    )
    order = order_identity(original_header)
    at = datetime.now(UTC)
    queued: list[str] = []
    if urgent:
        control = _control_id(conn, job_id, "P")
        text = priority_message(control, parties, order, package.identity, urgent, at)
        _insert(conn, job_id, PRIORITY, PRIORITY_TYPE, control, text)
        queued.append(PRIORITY_TYPE)
    if package.send_oru and (result.findings or result.measurements or result.regions):
        control = _control_id(conn, job_id, "R")
        _insert(
            conn,
            job_id,
            RESULT,
            RESULT_TYPE,
            control,
            result_message(control, parties, order, result, at),
        )
        queued.append(RESULT_TYPE)
    if queued:
        audit.record(
            conn,
            "ris",
            "hl7_queued",
            job_id=job_id,
            detail="queued for the RIS: "
            + ", ".join(t.split("^", 2)[0] + "^" + t.split("^")[1] for t in queued),
        )
    return queued


def _control_id(conn: sqlite3.Connection, job_id: int, letter: str) -> str:
    """MSH-10: unique, at most 20 characters (HL7 v2.3 and later), never reused."""
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM ris_outbox WHERE job_id = ?", (job_id,)
    ).fetchone()
    return f"AIFI{job_id}{letter}{int(count) + 1}"[:20]


def _insert(
    conn: sqlite3.Connection, job_id: int, kind: str, message_type: str, control: str, text: str
) -> None:
    at = now()
    conn.execute(
        "INSERT INTO ris_outbox (job_id, kind, message_type, control_id, message, state,"
        " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (job_id, kind, message_type, control, text, PENDING, at, at),
    )


def due(db: Database, at: float, limit: int = 20) -> list[OutboxRow]:
    """Pending messages due at ``at``: priority messages first, then results of delivered
    jobs, oldest first."""
    rows = db.query(
        "SELECT o.* FROM ris_outbox o JOIN jobs j ON j.id = o.job_id"
        " WHERE o.state = ? AND o.next_attempt_at <= ?"
        " AND (o.kind = ? OR j.state = 'delivered')"
        " ORDER BY o.kind = ? DESC, o.id LIMIT ?",
        (PENDING, at, PRIORITY, PRIORITY, limit),
    )
    return [_row(r) for r in rows]


def next_due_at(db: Database) -> float | None:
    """When the next pending message becomes due (None: nothing pending)."""
    rows = db.query(
        "SELECT MIN(o.next_attempt_at) AS at FROM ris_outbox o JOIN jobs j ON j.id = o.job_id"
        " WHERE o.state = ? AND (o.kind = ? OR j.state = 'delivered')",
        (PENDING, PRIORITY),
    )
    value = rows[0]["at"] if rows else None
    return None if value is None else float(value)


def record_sent(db: Database, row: OutboxRow, ack: str) -> None:
    with db.transaction() as conn:
        conn.execute(
            "UPDATE ris_outbox SET state = ?, attempts = attempts + 1, sent_at = ?, ack_code = ?,"
            " last_error = NULL WHERE id = ?",
            (SENT, now(), ack.split(" ")[0], row.id),
        )
        audit.record(
            conn,
            "ris",
            "hl7_acknowledged",
            job_id=row.job_id,
            detail=f"{_type_words(row)} {row.control_id} acknowledged by the RIS: {ack}",
        )


def record_attempt_failed(
    db: Database, row: OutboxRow, error: str, max_attempts: int, delay: float
) -> bool:
    """Count a failed attempt; fail the message (and say so on the job) after
    ``max_attempts``, else schedule the next one in ``delay`` seconds. True when failed."""
    attempts = row.attempts + 1
    failed = attempts >= max_attempts
    with db.transaction() as conn:
        conn.execute(
            "UPDATE ris_outbox SET attempts = ?, last_error = ?, state = ?, next_attempt_at = ?"
            " WHERE id = ?",
            (attempts, error, FAILED if failed else PENDING, now() + delay, row.id),
        )
        if failed:
            reason = f"HL7 {_type_words(row)} to the RIS failed after {attempts} attempts: {error}"
            conn.execute("UPDATE jobs SET reason = ? WHERE id = ?", (reason, row.job_id))
            audit.record(conn, "ris", "hl7_failed", job_id=row.job_id, detail=reason)
        else:
            audit.record(
                conn,
                "ris",
                "hl7_retry_scheduled",
                job_id=row.job_id,
                detail=f"{_type_words(row)} attempt {attempts} failed: {error}; "
                f"next in {delay:g} s",
            )
    return failed


def retry_failed(db: Database, job_id: int, actor: str) -> int:
    """Put the job's failed messages back in the outbox, due now; returns how many."""
    with db.transaction() as conn:
        cur = conn.execute(
            "UPDATE ris_outbox SET state = ?, attempts = 0, next_attempt_at = ?"
            " WHERE job_id = ? AND state = ? AND message != ''",  # purged ones cannot go
            (PENDING, now(), job_id, FAILED),
        )
        if cur.rowcount:
            audit.record(
                conn,
                "ris",
                "hl7_retry",
                job_id=job_id,
                detail=f"{cur.rowcount} HL7 message(s) queued again",
                actor=actor,
            )
        return int(cur.rowcount)


def purge_content(db: Database, retention_days: float) -> int:
    """Blank the text of messages acknowledged or failed more than ``retention_days`` ago
    (it holds the patient's identifiers); returns how many. 0 days keeps everything.
    Pending messages keep theirs until they are sent or fail."""
    if retention_days <= 0:
        return 0
    cutoff = now() - retention_days * 86400
    with db.transaction() as conn:
        cur = conn.execute(
            "UPDATE ris_outbox SET message = '' WHERE state IN (?, ?) AND message != ''"
            " AND COALESCE(sent_at, next_attempt_at) < ?",
            (SENT, FAILED, cutoff),
        )
        if cur.rowcount:
            audit.record(
                conn,
                "retention",
                "hl7_content_removed",
                detail=f"the text of {cur.rowcount} HL7 message(s) removed after "
                f"{retention_days:g} day(s)",
            )
        return int(cur.rowcount)


def messages_of_job(db: Database, job_id: int) -> list[dict[str, Any]]:
    """The job's messages without their content: type, control ID, state, attempts, ACK,
    last error (for the queue's detail and ``status --json``)."""
    return db.query(
        "SELECT kind, message_type, control_id, state, attempts, ack_code, last_error, sent_at"
        " FROM ris_outbox WHERE job_id = ? ORDER BY id",
        (job_id,),
    )


def _type_words(row: OutboxRow) -> str:
    parts = row.message_type.split("^")
    return f"{parts[0]}^{parts[1]}"


def _row(r: dict[str, Any]) -> OutboxRow:
    return OutboxRow(
        id=int(r["id"]),
        job_id=int(r["job_id"]),
        kind=str(r["kind"]),
        message_type=str(r["message_type"]),
        control_id=str(r["control_id"]),
        message=str(r["message"]),
        attempts=int(r["attempts"]),
    )
