"""A person's verdict on a job's result: agreed, disagreed (false positive or missed
finding) or unsure, with an optional comment, who and when.

Verdicts are kept as a history (every one recorded, with an audit event); the evaluation
counts each job's newest. ``who`` is the operating-system user or the initials a person
typed, never a patient's; the comment is free text for the people at the hospital and is
left out of every report.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from enum import StrEnum

from aifi_app.store import audit
from aifi_app.store.database import Database, now

MAX_COMMENT = 2000
_WHO = re.compile(r"^[A-Za-z0-9._\\-]{1,32}$")


class Verdict(StrEnum):
    AGREE = "agree"
    FALSE_POSITIVE = "false_positive"
    """The algorithm reported a finding that is not there."""
    MISSED = "missed"
    """The algorithm missed a finding that is there."""
    UNSURE = "unsure"


class FeedbackError(ValueError):
    """The verdict cannot be recorded (reason in words)."""


@dataclass(frozen=True)
class Feedback:
    job_id: int
    verdict: Verdict
    comment: str
    who: str
    at: float


def current_user() -> str:
    """The operating-system user, as ``who`` (falls back to ``unknown``)."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # pragma: no cover - no user name in the environment
        return "unknown"
    cleaned = re.sub(r"[^A-Za-z0-9._\\-]", "", name)[:32]
    return cleaned or "unknown"


def record(db: Database, job_id: int, verdict: Verdict, who: str, comment: str = "") -> Feedback:
    """Record a verdict on job ``job_id``'s result; raises :class:`FeedbackError`."""
    if not _WHO.match(who):
        raise FeedbackError(
            "who must be a user name or initials: 1-32 letters, digits, '.', '_' or '-'"
        )
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        raise FeedbackError(f"comment longer than {MAX_COMMENT} characters")
    at = now()
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT study_id, result_json FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise FeedbackError(f"no job {job_id}")
        if row[1] is None:
            raise FeedbackError(f"job {job_id} has no result to judge")
        conn.execute(
            "INSERT INTO feedback (job_id, verdict, comment, who, at) VALUES (?, ?, ?, ?, ?)",
            (job_id, verdict.value, comment, who, at),
        )
        audit.record(
            conn,
            "feedback",
            "verdict",
            study_id=int(row[0]),
            job_id=job_id,
            detail=verdict.value + (" (with comment)" if comment else ""),
            actor=who,
        )
    return Feedback(job_id, verdict, comment, who, at)


def latest(db: Database, job_id: int) -> Feedback | None:
    """The job's newest verdict, or None."""
    r = db.conn.execute(
        "SELECT job_id, verdict, comment, who, at FROM feedback WHERE job_id = ?"
        " ORDER BY at DESC, id DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    return None if r is None else Feedback(int(r[0]), Verdict(r[1]), r[2], r[3], float(r[4]))


def history(db: Database, job_id: int) -> list[Feedback]:
    """Every verdict on the job, oldest first."""
    rows = db.conn.execute(
        "SELECT job_id, verdict, comment, who, at FROM feedback WHERE job_id = ? ORDER BY at, id",
        (job_id,),
    ).fetchall()
    return [Feedback(int(r[0]), Verdict(r[1]), r[2], r[3], float(r[4])) for r in rows]
