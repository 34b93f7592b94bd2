"""The queue as people see it: one row per job, and one per study that has no job.

Read-only queries for the desktop client (and anything else that shows the queue). Rows
hold no patient names or IDs: the queue never stores them outside the spooled files.
Safe to call from any thread (each thread has its own connection).
"""

from __future__ import annotations

from dataclasses import dataclass

from aifi_app.store.database import Database

DEFAULT_LIMIT = 5000


@dataclass(frozen=True)
class QueueRow:
    key: tuple[str, int]
    """("job", job id) or ("study", study id): stable while the row exists."""
    study_id: int
    job_id: int | None
    received_at: float
    modality: str
    study_description: str
    algorithm: str
    route: str
    state: str
    stage_since: float
    """When the row entered its current state (for "time in stage")."""
    reason: str
    instance_count: int
    calling_ae: str


@dataclass(frozen=True)
class TimelineEvent:
    at: float
    category: str
    event: str
    from_state: str
    to_state: str
    detail: str
    actor: str


def queue_rows(db: Database, *, limit: int = DEFAULT_LIMIT) -> list[QueueRow]:
    """The newest ``limit`` jobs, and the newest studies that have no job (yet)."""
    rows: list[QueueRow] = []
    for r in db.conn.execute(
        "SELECT j.id, j.study_id, s.first_received_at, s.modality, s.study_description,"
        " j.algorithm_id, j.route, j.state, j.updated_at, j.reason, s.instance_count,"
        " s.calling_ae FROM jobs j JOIN studies s ON s.id = j.study_id"
        " ORDER BY j.id DESC LIMIT ?",
        (limit,),
    ):
        rows.append(
            QueueRow(
                key=("job", r[0]),
                study_id=r[1],
                job_id=r[0],
                received_at=r[2],
                modality=r[3],
                study_description=r[4],
                algorithm=r[5],
                route=r[6],
                state=r[7],
                stage_since=r[8],  # a job's updated_at moves with each state change only
                reason=r[9] or "",
                instance_count=r[10],
                calling_ae=r[11],
            )
        )
    for r in db.conn.execute(
        "SELECT id, first_received_at, modality, study_description, state,"
        " COALESCE(completed_at, first_received_at), reason, instance_count, calling_ae"
        " FROM studies WHERE state IN ('receiving', 'complete', 'no_match', 'recorded')"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    ):
        rows.append(
            QueueRow(
                key=("study", r[0]),
                study_id=r[0],
                job_id=None,
                received_at=r[1],
                modality=r[2],
                study_description=r[3],
                algorithm="",
                route="",
                state=r[4],
                stage_since=r[5],
                reason=r[6] or "",
                instance_count=r[7],
                calling_ae=r[8],
            )
        )
    return rows


def timeline(db: Database, *, study_id: int, job_id: int | None) -> list[TimelineEvent]:
    """The audit events of a study (receiving, routing) and of one of its jobs, oldest first."""
    found = db.conn.execute(
        "SELECT at, category, event, from_state, to_state, detail, actor FROM audit_events"
        " WHERE (study_id = ? AND job_id IS NULL) OR (job_id IS NOT NULL AND job_id = ?)"
        " ORDER BY id",
        (study_id, job_id if job_id is not None else -1),
    ).fetchall()
    return [
        TimelineEvent(r[0], r[1], r[2], r[3] or "", r[4] or "", r[5] or "", r[6] or "")
        for r in found
    ]
