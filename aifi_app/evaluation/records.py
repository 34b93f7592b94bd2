"""Every job of a period, with what the evaluation needs of it, in one read.

A job belongs to the period of its study's first received instance. Records hold row ids,
algorithm ids, times, header values of the input (device and technique, free text cleaned)
and verdicts; never a name, patient ID, accession number or UID.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

from aifi_app.evaluation.period import Period
from aifi_app.pseudonymise.clean_descriptors import clean_descriptor
from aifi_app.store.database import Database
from aifi_app.store.feedback import Verdict

POSITIVE = "positive"
NEGATIVE = "negative"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class JobRecord:
    job_id: int
    study_id: int
    algorithm_id: str
    state: str
    site: str
    """The sending node's AE title."""
    modality: str
    study_description: str
    """After Clean Descriptors."""
    first_received_at: float
    last_received_at: float
    completed_at: float | None
    created_at: float
    state_times: dict[str, float] = field(default_factory=dict)
    """The last time the job entered each state."""
    stage_times: dict[str, tuple[float, float]] = field(default_factory=dict)
    polarity: str = UNKNOWN
    """positive / negative / unknown: the algorithm's decision, from its findings."""
    verdict: Verdict | None = None
    """The newest verdict of a person, if any."""
    manufacturer: str = ""
    model: str = ""
    slice_thickness: float | None = None
    kernel: str = ""
    protocol: str = ""
    body_part: str = ""
    memo: dict[str, object] = field(default_factory=dict, compare=False, repr=False)
    """Figures derived from the record, computed once (see :func:`timing.job_stages`)."""

    @property
    def delivered_at(self) -> float | None:
        return self.state_times.get("delivered") if self.state == "delivered" else None


@lru_cache(maxsize=4096)
def _cleaned(text: str) -> str:
    return clean_descriptor(text, "LO")


def polarity_of(result_json: str | None) -> str:
    """positive when any finding is positive; negative when there are findings and none
    is; unknown without findings (measurements only, or a vendor's own objects)."""
    if not result_json:
        return UNKNOWN
    try:
        findings = json.loads(result_json).get("findings") or []
    except (ValueError, AttributeError):
        return UNKNOWN
    if not findings:
        return UNKNOWN
    return POSITIVE if any(bool(f.get("positive")) for f in findings) else NEGATIVE


def load(db: Database, period: Period) -> list[JobRecord]:
    """Every job whose study started arriving within ``period``, oldest first."""
    conn = db.conn
    params = (period.start, period.end)
    state_times: dict[int, dict[str, float]] = {}
    for job_id, to_state, at in conn.execute(
        "SELECT a.job_id, a.to_state, MAX(a.at) FROM audit_events a"
        " WHERE a.category = 'job' AND a.event = 'state_changed' AND a.job_id IN"
        " (SELECT j.id FROM jobs j JOIN studies s ON s.id = j.study_id"
        " WHERE s.first_received_at >= ? AND s.first_received_at < ?)"
        " GROUP BY a.job_id, a.to_state",
        params,
    ):
        state_times.setdefault(int(job_id), {})[str(to_state)] = float(at)
    stages: dict[int, dict[str, tuple[float, float]]] = {}
    for job_id, stage, started, finished in conn.execute(
        "SELECT t.job_id, t.stage, t.started_at, t.finished_at FROM job_stage_times t"
        " WHERE t.job_id IN (SELECT j.id FROM jobs j JOIN studies s ON s.id = j.study_id"
        " WHERE s.first_received_at >= ? AND s.first_received_at < ?)",
        params,
    ):
        stages.setdefault(int(job_id), {})[str(stage)] = (float(started), float(finished))
    verdicts: dict[int, Verdict] = {}
    for job_id, verdict in conn.execute(
        "SELECT f.job_id, f.verdict FROM feedback f WHERE f.job_id IN"
        " (SELECT j.id FROM jobs j JOIN studies s ON s.id = j.study_id"
        " WHERE s.first_received_at >= ? AND s.first_received_at < ?) ORDER BY f.at, f.id",
        params,
    ):
        verdicts[int(job_id)] = Verdict(verdict)  # the newest wins
    records = []
    for r in conn.execute(
        "SELECT j.id, j.study_id, j.algorithm_id, j.state, s.calling_ae, s.modality,"
        " s.study_description, s.first_received_at, s.last_received_at, s.completed_at,"
        " j.created_at, j.result_json, i.manufacturer, i.model, i.slice_thickness, i.kernel,"
        " i.protocol, i.body_part FROM jobs j JOIN studies s ON s.id = j.study_id"
        " LEFT JOIN job_inputs i ON i.job_id = j.id"
        " WHERE s.first_received_at >= ? AND s.first_received_at < ? ORDER BY j.id",
        params,
    ):
        job_id = int(r[0])
        records.append(
            JobRecord(
                job_id=job_id,
                study_id=int(r[1]),
                algorithm_id=str(r[2]),
                state=str(r[3]),
                site=str(r[4]),
                modality=str(r[5]),
                study_description=_cleaned(str(r[6] or "")),
                first_received_at=float(r[7]),
                last_received_at=float(r[8]),
                completed_at=None if r[9] is None else float(r[9]),
                created_at=float(r[10]),
                state_times=state_times.get(job_id, {}),
                stage_times=stages.get(job_id, {}),
                polarity=polarity_of(r[11]),
                verdict=verdicts.get(job_id),
                manufacturer=r[12] or "",
                model=r[13] or "",
                slice_thickness=None if r[14] is None else float(r[14]),
                kernel=r[15] or "",
                protocol=r[16] or "",
                body_part=r[17] or "",
            )
        )
    return records
