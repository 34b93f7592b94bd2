"""The queue as people see it: one row per job, and one per study that has no job.

Read-only queries for the desktop client (and anything else that shows the queue). Rows
hold no patient names or IDs: the queue never stores them outside the spooled files.
Safe to call from any thread (each thread has its own connection).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from aifi_app.store.database import Database

DEFAULT_LIMIT = 5000


@dataclass(frozen=True, slots=True)
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
    urgent: bool = False
    """A positive finding the algorithm's manifest calls urgent (the order's priority was
    raised)."""
    hl7: str = ""
    """Where the job's HL7 messages to the RIS stand, the worst of them: "" (none),
    "failed", "pending" or "sent" (acknowledged)."""
    search_text: str = field(init=False, compare=False, repr=False)
    """The row's words, case-folded, for free-text search (built once, on the reading thread)."""

    def __post_init__(self) -> None:
        words = (
            self.modality,
            self.study_description,
            self.algorithm,
            self.route,
            self.state,
            self.reason,
            self.calling_ae,
            f"#{self.job_id}" if self.job_id is not None else "",
            "urgent" if self.urgent else "",
        )
        object.__setattr__(self, "search_text", " ".join(words).casefold())


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
        " s.calling_ae, j.urgent, (SELECT group_concat(DISTINCT o.state) FROM ris_outbox o"
        " WHERE o.job_id = j.id) FROM jobs j JOIN studies s ON s.id = j.study_id"
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
                urgent=bool(r[12]),
                hl7=_worst_hl7_state(r[13]),
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


_HL7_STATES = ("failed", "pending", "sent")
"""The outbox's message states, the one that most needs a person first."""


def _worst_hl7_state(states: str | None) -> str:
    """ "failed" when any of a job's messages failed, else "pending", else "sent"; "" when
    it has none (``states``: the outbox states, comma-separated)."""
    found = set((states or "").split(","))
    return next((s for s in _HL7_STATES if s in found), "")


RowKey = tuple[str, int]


@dataclass(frozen=True)
class QueueSummary:
    """What the status line and the tray need, counted off the GUI thread."""

    job_states: dict[str, int]
    """Job rows per state."""
    states: frozenset[str]
    """Every state shown (jobs and studies)."""
    algorithms: tuple[str, ...]
    senders: tuple[str, ...]
    """The calling AE titles of the studies shown."""


@dataclass(frozen=True)
class QueueDelta:
    """The difference between two queue snapshots."""

    removed: tuple[RowKey, ...]
    changed: tuple[QueueRow, ...]
    """Rows whose key was there before and whose values differ."""
    added: tuple[QueueRow, ...]
    newly_failed: tuple[QueueRow, ...]
    """Jobs failed now that were not failed before (none in the first delta: the baseline)."""
    summary: QueueSummary
    first: bool
    newly_resulted: tuple[QueueRow, ...] = ()
    """Jobs that have their results now and did not before (none in the first delta)."""
    urgent: tuple[tuple[QueueRow, tuple[str, ...]], ...] = ()
    """Of those, the urgent jobs, with their positive findings' labels (filled in by the
    reader with :func:`urgent_findings`)."""

    def __bool__(self) -> bool:
        return bool(self.removed or self.changed or self.added)


class QueueDiffer:
    """Turns full snapshots into deltas; keeps the previous snapshot (one reader thread)."""

    def __init__(self) -> None:
        self._rows: dict[RowKey, QueueRow] = {}
        self._first = True

    def update(self, rows: list[QueueRow]) -> QueueDelta:
        before = self._rows
        now = {r.key: r for r in rows}
        removed = tuple(k for k in before if k not in now)
        changed: list[QueueRow] = []
        added: list[QueueRow] = []
        for r in rows:
            old = before.get(r.key)
            if old is None:
                added.append(r)
            elif old != r:
                changed.append(r)
        failed = tuple(
            r
            for r in (*changed, *added)
            if r.state == "failed" and getattr(before.get(r.key), "state", "") != "failed"
        )
        done = ("result_received", "delivered")
        resulted = tuple(
            r
            for r in (*changed, *added)
            if r.job_id is not None
            and r.state in done
            and getattr(before.get(r.key), "state", "") not in done
        )
        first, self._first = self._first, False
        self._rows = now
        return QueueDelta(
            removed=removed,
            changed=tuple(changed),
            added=tuple(added),
            newly_failed=() if first else failed,
            summary=summarise(rows),
            first=first,
            newly_resulted=() if first else resulted,
        )


def summarise(rows: list[QueueRow]) -> QueueSummary:
    return QueueSummary(
        job_states=dict(Counter(r.state for r in rows if r.job_id is not None)),
        states=frozenset(r.state for r in rows),
        algorithms=tuple(sorted({r.algorithm for r in rows if r.algorithm})),
        senders=tuple(sorted({r.calling_ae for r in rows if r.calling_ae})),
    )


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


@dataclass(frozen=True)
class InstanceLine:
    """One received instance of a study, without identifiers (no UIDs)."""

    series: int
    """The series' number within the study (1, 2, … in order of arrival)."""
    sop_class_uid: str
    size: int
    received_at: float
    calling_ae: str


def instances(db: Database, study_id: int) -> list[InstanceLine]:
    """The study's instances in order of arrival."""
    series_numbers: dict[str, int] = {}
    lines = []
    for r in db.conn.execute(
        "SELECT series_uid, sop_class_uid, size, received_at, calling_ae FROM instances"
        " WHERE study_id = ? ORDER BY id",
        (study_id,),
    ):
        number = series_numbers.setdefault(r[0], len(series_numbers) + 1)
        lines.append(InstanceLine(number, r[1], r[2], r[3], r[4]))
    return lines


@dataclass(frozen=True)
class OutputLine:
    """One result object of a job."""

    output_id: int
    kind: str
    sop_class_uid: str
    path: str
    """Relative to the data directory."""
    state: str
    delivered_at: float | None
    last_error: str


def outputs(db: Database, job_id: int) -> list[OutputLine]:
    return [
        OutputLine(r[0], r[1], r[2], r[3], r[4], r[5], r[6] or "")
        for r in db.conn.execute(
            "SELECT id, kind, sop_class_uid, path, state, delivered_at, last_error FROM outputs"
            " WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
    ]


def urgent_findings(db: Database, job_ids: list[int]) -> dict[int, tuple[str, ...]]:
    """The labels of the positive findings of those of these jobs that are urgent (a
    positive finding the algorithm's manifest lists in ``urgent_findings``; the job's
    ``urgent`` flag, set with its result): what a desktop notification says. Jobs that are
    not urgent are left out."""
    found: dict[int, tuple[str, ...]] = {}
    for job_id in job_ids:
        row = db.conn.execute(
            "SELECT result_json FROM jobs WHERE id = ? AND urgent = 1", (job_id,)
        ).fetchone()
        if row is None or not row[0]:
            continue
        try:
            findings = json.loads(row[0]).get("findings", [])
        except (ValueError, AttributeError):
            continue
        labels = tuple(
            str(f.get("label") or "positive finding")
            for f in findings
            if isinstance(f, dict) and f.get("positive") is True
        )
        found[job_id] = labels or ("urgent finding",)
    return found
