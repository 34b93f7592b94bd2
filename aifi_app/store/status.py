"""A snapshot of the queue for monitoring and scripts (``aifi-app status --json``).

Holds no patient data: studies are shown by row id, modality and instance counts; the
original identifiers stay in the database.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from aifi_app.store.database import Database, now
from aifi_app.store.disk_space import DiskGuard


def _stage_seconds(events: list[dict[str, Any]], until: float) -> dict[str, float]:
    """Seconds spent in each state, from consecutive state-change events."""
    stages: dict[str, float] = defaultdict(float)
    for ev, nxt in zip(events, [*events[1:], None], strict=True):
        end = nxt["at"] if nxt is not None else until
        if ev["to_state"]:
            stages[ev["to_state"]] += max(0.0, end - ev["at"])
    return {k: round(v, 3) for k, v in stages.items()}


def queue_snapshot(
    db: Database, *, limit: int = 500, disk: DiskGuard | None = None
) -> dict[str, Any]:
    """Studies and jobs (newest first), with states, reasons and time per stage.

    With ``disk``, also the data volume's free space against its floor (``disk``) and the
    warnings a monitor or the GUI should show (``warnings``, a list of sentences).
    """
    t = now()
    studies = db.query(
        "SELECT id, episode, kind, state, calling_ae, modality, instance_count, received_bytes,"
        " first_received_at, last_received_at, complete_due_at, completed_at, reason"
        " FROM studies ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    jobs = db.query(
        "SELECT j.id, j.study_id, j.algorithm_id, j.route, j.state, j.reason, j.attempts,"
        " j.next_attempt_at, j.created_at, j.updated_at, j.urgent,"
        " s.last_received_at AS study_last_received_at"
        " FROM jobs j JOIN studies s ON s.id = j.study_id ORDER BY j.id DESC LIMIT ?",
        (limit,),
    )
    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if jobs:
        low = min(j["id"] for j in jobs)
        for ev in db.query(
            "SELECT job_id, at, to_state FROM audit_events WHERE job_id >= ? AND"
            " event IN ('job_created', 'state_changed') ORDER BY id",
            (low,),
        ):
            events[int(ev["job_id"])].append(ev)
    outputs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if jobs:
        for out in db.query(
            "SELECT job_id, kind, state, attempts, last_error, delivered_at FROM outputs"
            " WHERE job_id >= ? ORDER BY id",
            (min(j["id"] for j in jobs),),
        ):
            outputs[int(out["job_id"])].append(out)
    hl7: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if jobs:
        for msg in db.query(
            "SELECT job_id, message_type, control_id, state, attempts, ack_code, last_error,"
            " sent_at FROM ris_outbox WHERE job_id >= ? ORDER BY id",
            (min(j["id"] for j in jobs),),
        ):
            hl7[int(msg["job_id"])].append(msg)
    finished = {"delivered", "rejected", "failed", "cancelled"}
    for j in jobs:
        j["urgent"] = bool(j["urgent"])
        j["hl7"] = hl7.get(j["id"], [])
        evs = events.get(j["id"], [])
        stages = _stage_seconds(evs, t)
        if j["state"] in finished:
            stages.pop(j["state"], None)  # a finished job spends no time "in" its end state
        j["stage_seconds"] = stages
        j["outputs"] = outputs.get(j["id"], [])
        last_received = j.pop("study_last_received_at")
        if j["state"] == "delivered":
            j["turnaround_seconds"] = round(j["updated_at"] - last_received, 3)
    extra: dict[str, Any] = {}
    if disk is not None:
        extra["disk"] = disk.status()
        extra["warnings"] = [extra["disk"]["warning"]] if extra["disk"]["warning"] else []
    return {
        **extra,
        "generated_at": t,
        "schema_version": db.schema_version(),
        "counts": {
            "studies": dict(Counter(s["state"] for s in studies)),
            "jobs": dict(Counter(j["state"] for j in jobs)),
        },
        "studies": studies,
        "jobs": jobs,
    }
