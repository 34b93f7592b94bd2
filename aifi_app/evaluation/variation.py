"""Results and rejections broken down by what the input was: scanner, slice thickness,
kernel, protocol, study description and site (the sending node), so that an algorithm's
weak spots show.

Each row counts one algorithm's jobs that share one value of one dimension. Values are
device and technique attributes and cleaned free text (see
:mod:`aifi_app.store.job_inputs`); an empty value is shown as ``(none)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aifi_app.evaluation.records import POSITIVE, JobRecord
from aifi_app.store.feedback import Verdict

NONE = "(none)"


def _thickness(job: JobRecord) -> str:
    return NONE if job.slice_thickness is None else f"{job.slice_thickness:g} mm"


def _scanner(job: JobRecord) -> str:
    return " ".join(p for p in (job.manufacturer, job.model) if p) or NONE


DIMENSIONS: dict[str, Callable[[JobRecord], str]] = {
    "scanner": _scanner,
    "slice_thickness": _thickness,
    "kernel": lambda j: j.kernel or NONE,
    "protocol": lambda j: j.protocol or NONE,
    "study_description": lambda j: j.study_description or NONE,
    "site": lambda j: j.site or NONE,
}


@dataclass(frozen=True)
class VariationRow:
    dimension: str
    value: str
    algorithm_id: str
    jobs: int
    delivered: int
    rejected: int
    failed: int
    positive: int
    """Delivered jobs with a positive finding."""
    agree: int
    false_positive: int
    missed: int
    unsure: int


def breakdown(jobs: Sequence[JobRecord]) -> list[VariationRow]:
    """Rows sorted by dimension (in :data:`DIMENSIONS` order), algorithm and value."""
    out = []
    for dimension, value_of in DIMENSIONS.items():
        groups: dict[tuple[str, str], list[JobRecord]] = {}
        for job in jobs:
            groups.setdefault((job.algorithm_id, value_of(job)), []).append(job)
        for (algorithm_id, value), mine in sorted(groups.items()):
            out.append(
                VariationRow(
                    dimension=dimension,
                    value=value,
                    algorithm_id=algorithm_id,
                    jobs=len(mine),
                    delivered=sum(1 for j in mine if j.state == "delivered"),
                    rejected=sum(1 for j in mine if j.state == "rejected"),
                    failed=sum(1 for j in mine if j.state == "failed"),
                    positive=sum(
                        1 for j in mine if j.state == "delivered" and j.polarity == POSITIVE
                    ),
                    agree=sum(1 for j in mine if j.verdict == Verdict.AGREE),
                    false_positive=sum(1 for j in mine if j.verdict == Verdict.FALSE_POSITIVE),
                    missed=sum(1 for j in mine if j.verdict == Verdict.MISSED),
                    unsure=sum(1 for j in mine if j.verdict == Verdict.UNSURE),
                )
            )
    return out
