"""How long the parts of a job took that its state changes do not separate.

The audit log already dates every state change (routed, pseudonymised, submitted, result
received, delivered). Inside a step some parts matter on their own for the evaluation:
the model's (or vendor's) time apart from building and re-identifying the results, and
the send to a vendor or the PACS. A step records them here, one row per (job, stage);
a step that runs again (a retry, a restart after a crash) replaces its row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from aifi_app.store.database import Database, now

PSEUDONYMISE = "pseudonymise"
SUBMIT = "submit"
MODEL = "model"
"""A local runner's inference."""
VENDOR = "vendor"
"""A remote vendor: from the end of the submission until its results were all back."""
BUILD = "build_results"
"""Building the result objects, re-identification included."""
REIDENTIFY = "reidentify"
DELIVER = "deliver"
"""The last send to the PACS (the one that succeeded)."""

STAGES = (PSEUDONYMISE, SUBMIT, MODEL, VENDOR, BUILD, REIDENTIFY, DELIVER)


def record(db: Database, job_id: int, stage: str, started_at: float, finished_at: float) -> None:
    """Record (or replace) one stage's times, in a transaction of its own."""
    with db.transaction() as conn:
        record_in(conn, job_id, stage, started_at, finished_at)


def record_in(
    conn: sqlite3.Connection, job_id: int, stage: str, started_at: float, finished_at: float
) -> None:
    """Record (or replace) one stage's times in the caller's transaction."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    conn.execute(
        "INSERT INTO job_stage_times (job_id, stage, started_at, finished_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (job_id, stage) DO UPDATE SET"
        " started_at = excluded.started_at, finished_at = excluded.finished_at",
        (job_id, stage, started_at, finished_at),
    )


@contextmanager
def timed(db: Database, job_id: int, stage: str) -> Iterator[None]:
    """Record the time the block took, when it finishes without an exception."""
    started = now()
    yield
    record(db, job_id, stage, started, now())


def of_job(db: Database, job_id: int) -> dict[str, tuple[float, float]]:
    """Each recorded stage of a job: (started_at, finished_at)."""
    rows = db.conn.execute(
        "SELECT stage, started_at, finished_at FROM job_stage_times WHERE job_id = ?", (job_id,)
    ).fetchall()
    return {str(r[0]): (float(r[1]), float(r[2])) for r in rows}
