"""How long each stage of each job took, and the turnaround from the last image received
to the results in the PACS.

The stages of a job (seconds; empty where a stage does not apply or did not happen):

- ``receiving``: first to last instance of the study;
- ``completion_wait``: last instance until the study was judged complete (idle timer);
- ``queued``: complete until pseudonymisation started (routing and the worker's queue);
- ``pseudonymise``: selecting and pseudonymising the images;
- ``submit``: sending them to a vendor's node (remote algorithms only);
- ``model``: the local model's inference, or for a vendor the time from the end of the
  submission until its results were all back;
- ``build_results``: building the result objects (SC, SR, SEG), re-identification not included;
- ``reidentify``: re-identifying and writing the result objects;
- ``deliver``: results ready until the job was delivered (waits for retries included);
- ``turnaround``: last instance received until every result was in the PACS.

Times come from the studies table, the audit log's state changes and ``job_stage_times``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aifi_app.evaluation.records import JobRecord
from aifi_app.evaluation.stats import median, nearest_rank
from aifi_app.store import stage_times

STAGES = (
    "receiving",
    "completion_wait",
    "queued",
    "pseudonymise",
    "submit",
    "model",
    "build_results",
    "reidentify",
    "deliver",
    "turnaround",
)


def _span(stages: dict[str, tuple[float, float]], name: str) -> float | None:
    found = stages.get(name)
    return None if found is None else found[1] - found[0]


def _between(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def job_stages(job: JobRecord) -> dict[str, float | None]:
    """Each stage's duration in seconds for one job (None: did not apply or not reached).
    Computed once per record; do not change the dictionary returned."""
    found = job.memo.get("stages")
    if found is None:
        found = job.memo["stages"] = _job_stages(job)
    return found  # type: ignore[return-value]


def _job_stages(job: JobRecord) -> dict[str, float | None]:
    st = job.stage_times
    pseudo = st.get(stage_times.PSEUDONYMISE)
    model = _span(st, stage_times.MODEL)
    if model is None:
        model = _span(st, stage_times.VENDOR)
    build = _span(st, stage_times.BUILD)
    reidentify = _span(st, stage_times.REIDENTIFY)
    if build is not None and reidentify is not None:
        build = max(0.0, build - reidentify)
    return {
        # a study's first_received_at is taken a moment after its first instance's time
        # (store/receiving.py), so a one-instance study can differ by microseconds
        "receiving": max(0.0, job.last_received_at - job.first_received_at),
        "completion_wait": _between(job.last_received_at, job.completed_at),
        "queued": _between(job.completed_at, None if pseudo is None else pseudo[0]),
        "pseudonymise": _span(st, stage_times.PSEUDONYMISE),
        "submit": _span(st, stage_times.SUBMIT),
        "model": model,
        "build_results": build,
        "reidentify": reidentify,
        "deliver": _between(job.state_times.get("result_received"), job.delivered_at),
        "turnaround": _between(job.last_received_at, job.delivered_at),
    }


@dataclass(frozen=True)
class StageSummary:
    algorithm_id: str
    stage: str
    count: int
    median: float | None
    p90: float | None
    minimum: float | None
    maximum: float | None


def summarise(jobs: Sequence[JobRecord]) -> list[StageSummary]:
    """Per algorithm and stage: count, median, 90th percentile (nearest rank), min, max.
    Only delivered jobs count, so that every figure describes a whole journey."""
    by_algorithm: dict[str, list[dict[str, float | None]]] = {}
    for job in jobs:
        if job.delivered_at is not None:
            by_algorithm.setdefault(job.algorithm_id, []).append(job_stages(job))
    out = []
    for algorithm_id in sorted(by_algorithm):
        for stage in STAGES:
            values = [v for s in by_algorithm[algorithm_id] if (v := s[stage]) is not None]
            out.append(
                StageSummary(
                    algorithm_id,
                    stage,
                    len(values),
                    median(values),
                    nearest_rank(values, 90),
                    min(values) if values else None,
                    max(values) if values else None,
                )
            )
    return out


def turnarounds(jobs: Sequence[JobRecord]) -> dict[str, list[float]]:
    """Each algorithm's turnaround times (seconds) of delivered jobs."""
    out: dict[str, list[float]] = {}
    for job in jobs:
        t = job_stages(job)["turnaround"]
        if t is not None:
            out.setdefault(job.algorithm_id, []).append(t)
    return out
