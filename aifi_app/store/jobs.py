"""Study completion, routing and job state changes: each one transaction with its audit event.

Every change is conditional on the state it starts from (``UPDATE ... WHERE state = ?``),
so two workers, or a worker and a person clicking "retry", can never both move a job.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifi_app.store import audit
from aifi_app.store.database import Database, now
from aifi_app.store.states import JOB_TRANSITIONS, JobState, OutputState, StudyState


class StaleStateError(RuntimeError):
    """The row was no longer in the state the change started from (someone else moved it)."""


class InvalidTransitionError(ValueError):
    """The state machine does not allow this move."""


@dataclass(frozen=True)
class PlannedOutput:
    kind: str
    sop_instance_uid: str
    sop_class_uid: str
    path: str


def due_studies(
    db: Database,
    at: float | None = None,
    *,
    held: Collection[int] = (),
    hold_seconds: float = 0.0,
) -> list[int]:
    """Ids of receiving studies whose idle timer has run out.

    ``held``: studies whose sending association is still open
    (:mod:`aifi_app.dicom_node.studies_in_transfer`); their idle timer waits until their
    last instance is ``hold_seconds`` old, unless a person asked to process them now."""
    t = now() if at is None else at
    rows = db.conn.execute(
        "SELECT id, last_received_at, idle_seconds, complete_due_at FROM studies"
        " WHERE state = ? AND complete_due_at <= ? ORDER BY id",
        (StudyState.RECEIVING.value, t),
    ).fetchall()
    return [
        int(r[0])
        for r in rows
        if int(r[0]) not in held
        or _asked_now(r[1], r[2], r[3])
        or t >= r[1] + max(r[2], hold_seconds)
    ]


def _asked_now(last_received_at: float, idle_seconds: float, complete_due_at: float) -> bool:
    """Whether the study's due time is a person's "process now" (:func:`process_now` sets
    it before the idle timer's), not the timer."""
    return bool(complete_due_at < last_received_at + idle_seconds)


def next_due_at(db: Database, *, held: Collection[int] = ()) -> float | None:
    """When the earliest idle timer of a receiving study runs out (None: none receiving);
    the ``held`` studies (see :func:`due_studies`) are left out."""
    if not held:
        row = db.conn.execute(
            "SELECT MIN(complete_due_at) FROM studies WHERE state = ?",
            (StudyState.RECEIVING.value,),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])
    rows = db.conn.execute(
        "SELECT id, complete_due_at FROM studies WHERE state = ?",
        (StudyState.RECEIVING.value,),
    ).fetchall()
    due = [float(r[1]) for r in rows if int(r[0]) not in held]
    return min(due) if due else None


def mark_complete(db: Database, study_id: int) -> bool:
    """Receiving -> complete; False when the study was no longer receiving, or is no
    longer due (an instance arrived since the caller found it due: its timer restarted)."""
    with db.transaction() as conn:
        t = now()
        cur = conn.execute(
            "UPDATE studies SET state = ?, completed_at = ? WHERE id = ? AND state = ?"
            " AND complete_due_at <= ?",
            (StudyState.COMPLETE.value, t, study_id, StudyState.RECEIVING.value, t),
        )
        if cur.rowcount != 1:
            return False
        count = conn.execute(
            "SELECT instance_count FROM studies WHERE id = ?", (study_id,)
        ).fetchone()[0]
        audit.record(
            conn,
            "study",
            "study_complete",
            study_id=study_id,
            from_state=StudyState.RECEIVING.value,
            to_state=StudyState.COMPLETE.value,
            detail=f"{count} instance(s)",
        )
    return True


def process_now(db: Database, study_id: int, actor: str) -> bool:
    """Skip the idle wait of a receiving study; False when it is not receiving.

    The due time is set a little before the idle timer's would be, also when that has
    passed, so that :func:`due_studies` tells a person's request from the timer."""
    with db.transaction() as conn:
        cur = conn.execute(
            "UPDATE studies SET complete_due_at = MIN(?, last_received_at + idle_seconds)"
            " - 0.001 WHERE id = ? AND state = ?",
            (now(), study_id, StudyState.RECEIVING.value),
        )
        if cur.rowcount != 1:
            return False
        audit.record(conn, "study", "process_now", study_id=study_id, actor=actor)
    return True


def complete_studies(db: Database) -> list[int]:
    """Ids of studies waiting to be routed."""
    rows = db.conn.execute(
        "SELECT id FROM studies WHERE state = ? ORDER BY id", (StudyState.COMPLETE.value,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def study_state(db: Database, study_id: int) -> str | None:
    """The study's state now (None: no such study)."""
    row = db.conn.execute("SELECT state FROM studies WHERE id = ?", (study_id,)).fetchone()
    return None if row is None else str(row[0])


def study_images_of_job(db: Database, job_id: int) -> int:
    """How many instances the job's study holds (its size, for the worker's lanes)."""
    row = db.conn.execute(
        "SELECT COUNT(*) FROM instances WHERE study_id = (SELECT study_id FROM jobs WHERE id = ?)",
        (job_id,),
    ).fetchone()
    return int(row[0])


def is_due_in(db: Database, job_id: int, state: JobState, at: float) -> bool:
    """Whether the job is in ``state`` and not postponed beyond ``at``."""
    row = db.conn.execute(
        "SELECT 1 FROM jobs WHERE id = ? AND state = ? AND"
        " (next_attempt_at IS NULL OR next_attempt_at <= ?)",
        (job_id, state.value, at),
    ).fetchone()
    return row is not None


def route_study(
    db: Database, study_id: int, matches: Sequence[tuple[str, str]], no_match_reason: str
) -> list[int]:
    """Complete -> routed with one queued job per (route, algorithm), or -> no_match.

    Returns the ids of the jobs created.
    """
    job_ids: list[int] = []
    t = now()
    with db.transaction() as conn:
        state = StudyState.ROUTED if matches else StudyState.NO_MATCH
        cur = conn.execute(
            "UPDATE studies SET state = ?, reason = ? WHERE id = ? AND state = ?",
            (
                state.value,
                None if matches else no_match_reason,
                study_id,
                StudyState.COMPLETE.value,
            ),
        )
        if cur.rowcount != 1:
            raise StaleStateError(f"study {study_id} is no longer complete")
        audit.record(
            conn,
            "study",
            "routed" if matches else "no_matching_route",
            study_id=study_id,
            from_state=StudyState.COMPLETE.value,
            to_state=state.value,
            detail=", ".join(f"{r} -> {a}" for r, a in matches) if matches else no_match_reason,
        )
        for route, algorithm in matches:
            cur = conn.execute(
                "INSERT INTO jobs (study_id, algorithm_id, route, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (study_id, algorithm_id) DO NOTHING",
                (study_id, algorithm, route, JobState.QUEUED.value, t, t),
            )
            if cur.rowcount == 1:
                job_id = int(cur.lastrowid or 0)
                job_ids.append(job_id)
                audit.record(
                    conn,
                    "job",
                    "job_created",
                    study_id=study_id,
                    job_id=job_id,
                    to_state=JobState.QUEUED.value,
                    detail=f"route {route}, algorithm {algorithm}",
                )
    return job_ids


def transition_in(
    conn: sqlite3.Connection,
    job_id: int,
    from_state: JobState,
    to_state: JobState,
    *,
    reason: str | None = None,
    detail: str = "",
    actor: str = "system",
    **fields: Any,
) -> None:
    """Move a job inside the caller's transaction; other columns may be set with ``fields``."""
    if to_state not in JOB_TRANSITIONS[from_state]:
        raise InvalidTransitionError(f"job cannot go from {from_state} to {to_state}")
    assignments = ["state = ?", "reason = ?", "updated_at = ?"]
    values: list[Any] = [to_state.value, reason, now()]
    for column, value in fields.items():
        if column not in ("attempts", "next_attempt_at", "result_json"):
            raise ValueError(f"column {column} cannot be set by a transition")
        assignments.append(f"{column} = ?")
        values.append(value)
    cur = conn.execute(
        f"UPDATE jobs SET {', '.join(assignments)} WHERE id = ? AND state = ?",  # noqa: S608
        (*values, job_id, from_state.value),
    )
    if cur.rowcount != 1:
        raise StaleStateError(f"job {job_id} is no longer {from_state}")
    study_id = conn.execute("SELECT study_id FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    audit.record(
        conn,
        "job",
        "state_changed",
        study_id=int(study_id),
        job_id=job_id,
        from_state=from_state.value,
        to_state=to_state.value,
        detail=reason or detail,
        actor=actor,
    )


def transition(
    db: Database,
    job_id: int,
    from_state: JobState,
    to_state: JobState,
    *,
    reason: str | None = None,
    detail: str = "",
    actor: str = "system",
    **fields: Any,
) -> None:
    """Move a job in a transaction of its own."""
    with db.transaction() as conn:
        transition_in(
            conn, job_id, from_state, to_state, reason=reason, detail=detail, actor=actor, **fields
        )


def jobs_in_state(db: Database, state: JobState, *, ready_at: float | None = None) -> list[int]:
    """Ids of jobs in ``state``, oldest first; with ``ready_at``, only those due by then."""
    if ready_at is None:
        rows = db.conn.execute(
            "SELECT id FROM jobs WHERE state = ? ORDER BY id", (state.value,)
        ).fetchall()
    else:
        rows = db.conn.execute(
            "SELECT id FROM jobs WHERE state = ? AND (next_attempt_at IS NULL OR"
            " next_attempt_at <= ?) ORDER BY next_attempt_at, id",
            (state.value, ready_at),
        ).fetchall()
    return [int(r[0]) for r in rows]


def job(db: Database, job_id: int) -> dict[str, Any]:
    rows = db.query("SELECT * FROM jobs WHERE id = ?", (job_id,))
    if not rows:
        raise KeyError(f"no job {job_id}")
    return rows[0]


def add_outputs_in(conn: sqlite3.Connection, job_id: int, outputs: Sequence[PlannedOutput]) -> None:
    """Record the result objects a job will deliver (inside the caller's transaction)."""
    for out in outputs:
        conn.execute(
            "INSERT INTO outputs (job_id, kind, sop_instance_uid, sop_class_uid, path, state)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sop_instance_uid) DO UPDATE SET"
            " path = excluded.path",
            (
                job_id,
                out.kind,
                out.sop_instance_uid,
                out.sop_class_uid,
                out.path,
                OutputState.PENDING.value,
            ),
        )


def outputs(db: Database, job_id: int) -> list[dict[str, Any]]:
    return db.query("SELECT * FROM outputs WHERE job_id = ? ORDER BY id", (job_id,))


def mark_output_delivered(db: Database, output_id: int, detail: str) -> None:
    with db.transaction() as conn:
        row = conn.execute(
            "UPDATE outputs SET state = ?, delivered_at = ?, attempts = attempts + 1,"
            " last_error = NULL WHERE id = ? AND state = ? RETURNING job_id, kind",
            (OutputState.DELIVERED.value, now(), output_id, OutputState.PENDING.value),
        ).fetchone()
        if row is None:
            raise StaleStateError(f"output {output_id} is no longer pending")
        audit.record(
            conn, "delivery", "output_delivered", job_id=int(row[0]), detail=f"{row[1]}: {detail}"
        )


def record_output_failure(db: Database, output_id: int, error: str) -> None:
    with db.transaction() as conn:
        row = conn.execute(
            "UPDATE outputs SET attempts = attempts + 1, last_error = ? WHERE id = ?"
            " RETURNING job_id, kind",
            (error, output_id),
        ).fetchone()
        audit.record(
            conn, "delivery", "send_failed", job_id=int(row[0]), detail=f"{row[1]}: {error}"
        )


def retry_job(db: Database, job_id: int, actor: str) -> JobState:
    """A person's retry of a failed, rejected or cancelled job; returns the new state.

    A job whose results were already built only retries their delivery.
    """
    with db.transaction() as conn:
        row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job {job_id}")
        state = JobState(row[0])
        if state not in (JobState.FAILED, JobState.REJECTED, JobState.CANCELLED):
            raise InvalidTransitionError(f"job {job_id} is {state}; only finished jobs retry")
        has_outputs = conn.execute(
            "SELECT COUNT(*) FROM outputs WHERE job_id = ?", (job_id,)
        ).fetchone()[0]
        target = (
            JobState.RESULT_RECEIVED
            if has_outputs and state == JobState.FAILED
            else (JobState.QUEUED)
        )
        transition_in(
            conn,
            job_id,
            state,
            target,
            detail="retry",
            actor=actor,
            attempts=0,
            next_attempt_at=None,
        )
    return target


def postpone(db: Database, job_id: int, state: JobState, until: float) -> None:
    """Look at a job again no earlier than ``until`` (no state change, no audit event)."""
    with db.transaction() as conn:
        conn.execute(
            "UPDATE jobs SET next_attempt_at = ? WHERE id = ? AND state = ?",
            (until, job_id, state.value),
        )


def studies_with_uid(db: Database, study_uid: str) -> list[dict[str, Any]]:
    """Every episode received under ``study_uid``, oldest first."""
    return db.query("SELECT * FROM studies WHERE study_uid = ? ORDER BY episode", (study_uid,))


def record_study(db: Database, study_id: int, reason: str) -> None:
    """Complete -> recorded (kept and shown, not routed), with the reason."""
    with db.transaction() as conn:
        cur = conn.execute(
            "UPDATE studies SET state = ?, reason = ? WHERE id = ? AND state = ?",
            (StudyState.RECORDED.value, reason, study_id, StudyState.COMPLETE.value),
        )
        if cur.rowcount != 1:
            raise StaleStateError(f"study {study_id} is no longer complete")
        audit.record(
            conn,
            "study",
            "recorded",
            study_id=study_id,
            from_state=StudyState.COMPLETE.value,
            to_state=StudyState.RECORDED.value,
            detail=reason,
        )


CANCELLABLE_JOB_STATES = frozenset(
    {JobState.QUEUED, JobState.PSEUDONYMISED, JobState.SUBMITTED, JobState.RESULT_RECEIVED}
)


def cancel_job(db: Database, job_id: int, actor: str) -> None:
    """A person's cancel of a job that is not finished yet; it can be retried later.

    A step already running on the worker finishes its work, then finds the job moved
    (:class:`StaleStateError` there) and drops its result.
    """
    with db.transaction() as conn:
        row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job {job_id}")
        state = JobState(row[0])
        if state not in CANCELLABLE_JOB_STATES:
            raise InvalidTransitionError(f"job {job_id} is {state}; only unfinished jobs cancel")
        transition_in(
            conn,
            job_id,
            state,
            JobState.CANCELLED,
            detail="cancelled",
            actor=actor,
            next_attempt_at=None,
        )


def resend_results(db: Database, data_dir: Path, job_id: int, actor: str) -> int:
    """A person's "resend to PACS": a delivered job's result objects go out again.

    Every output is pending again and the job goes back to ``result_received``; the
    dispatcher sends them on its next pass. Returns how many objects will be sent.
    Raises :class:`InvalidTransitionError` for a job that is not delivered, and
    FileNotFoundError when retention already removed the result files.
    """
    with db.transaction() as conn:
        row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job {job_id}")
        if row[0] != JobState.DELIVERED.value:
            raise InvalidTransitionError(f"job {job_id} is {row[0]}; only delivered jobs resend")
        paths = [r[0] for r in conn.execute("SELECT path FROM outputs WHERE job_id = ?", (job_id,))]
        if not paths:
            raise InvalidTransitionError(f"job {job_id} has no result objects to send")
        if not all((data_dir / p).is_file() for p in paths):
            raise FileNotFoundError(f"the result files of job {job_id} were removed (retention)")
        conn.execute(
            "UPDATE outputs SET state = ?, delivered_at = NULL WHERE job_id = ?",
            (OutputState.PENDING.value, job_id),
        )
        transition_in(
            conn,
            job_id,
            JobState.DELIVERED,
            JobState.RESULT_RECEIVED,
            detail=f"resend to PACS ({len(paths)} object(s))",
            actor=actor,
            attempts=0,
            next_attempt_at=None,
        )
    return len(paths)


def route_to_algorithm(db: Database, study_id: int, algorithm_id: str, actor: str) -> int:
    """A person sends a study to another algorithm than its routes chose: a new queued job.

    The study must have been routed (or found no match); a study that already has a job
    for that algorithm is refused (retry that job instead). Returns the new job's id.
    """
    t = now()
    with db.transaction() as conn:
        row = conn.execute("SELECT state FROM studies WHERE id = ?", (study_id,)).fetchone()
        if row is None:
            raise KeyError(f"no study {study_id}")
        state = row[0]
        if state not in (StudyState.ROUTED.value, StudyState.NO_MATCH.value):
            raise InvalidTransitionError(
                f"study {study_id} is {state}; only routed or unmatched studies can be sent"
            )
        existing = conn.execute(
            "SELECT id FROM jobs WHERE study_id = ? AND algorithm_id = ?",
            (study_id, algorithm_id),
        ).fetchone()
        if existing is not None:
            raise InvalidTransitionError(
                f"study {study_id} already has job {existing[0]} for {algorithm_id}; retry it"
            )
        cur = conn.execute(
            "INSERT INTO jobs (study_id, algorithm_id, route, state, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (study_id, algorithm_id, "(by hand)", JobState.QUEUED.value, t, t),
        )
        job_id = int(cur.lastrowid or 0)
        if state == StudyState.NO_MATCH.value:
            conn.execute(
                "UPDATE studies SET state = ?, reason = NULL WHERE id = ?",
                (StudyState.ROUTED.value, study_id),
            )
        audit.record(
            conn,
            "job",
            "job_created",
            study_id=study_id,
            job_id=job_id,
            to_state=JobState.QUEUED.value,
            detail=f"sent by hand to algorithm {algorithm_id}",
            actor=actor,
        )
    return job_id
