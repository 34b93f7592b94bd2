"""Agreement, positive predictive value and sensitivity per algorithm, from people's verdicts.

Each job counts with its newest verdict; jobs nobody judged do not count. With the
algorithm's decision (a positive finding or not):

- ``agree`` on a positive result: a true positive (TP); on a negative one: a true negative;
- ``false_positive``: the algorithm reported a finding that is not there (FP);
- ``missed``: the algorithm missed a finding that is there (FN), whatever its decision;
- ``unsure``: counted apart, in no rate.

**Agreement rate** = agree / (agree + false_positive + missed).
**PPV** = TP / (TP + FP), from positive results only.
**Sensitivity** = TP / (TP + FN), where FN are only the misses people *reported*: misses
nobody noticed or reported are unknown, so this is an upper bound of the true
sensitivity and a lower-confidence figure than PPV. It is shown only where at least one
miss was reported.

Each rate comes with its Wilson score 95 % interval and the count it rests on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aifi_app.evaluation.records import NEGATIVE, POSITIVE, JobRecord
from aifi_app.evaluation.stats import Proportion
from aifi_app.store.feedback import Verdict


@dataclass(frozen=True)
class Accuracy:
    algorithm_id: str
    judged: int
    """Jobs with a verdict (unsure included)."""
    agree: int
    false_positive: int
    missed: int
    unsure: int
    true_positive: int
    true_negative: int
    agreement: Proportion
    ppv: Proportion
    sensitivity: Proportion | None
    """None when no miss was reported."""


def per_algorithm(jobs: Sequence[JobRecord]) -> list[Accuracy]:
    """One entry per algorithm with at least one verdict, sorted by id."""
    judged: dict[str, list[JobRecord]] = {}
    for job in jobs:
        if job.verdict is not None:
            judged.setdefault(job.algorithm_id, []).append(job)
    out = []
    for algorithm_id in sorted(judged):
        mine = judged[algorithm_id]

        def count(verdict: Verdict, polarity: str | None = None, of: list[JobRecord] = mine) -> int:
            return sum(
                1
                for j in of
                if j.verdict == verdict and (polarity is None or j.polarity == polarity)
            )

        agree = count(Verdict.AGREE)
        fp = count(Verdict.FALSE_POSITIVE)
        missed = count(Verdict.MISSED)
        tp = count(Verdict.AGREE, POSITIVE)
        fp_on_positive = count(Verdict.FALSE_POSITIVE, POSITIVE)
        out.append(
            Accuracy(
                algorithm_id=algorithm_id,
                judged=len(mine),
                agree=agree,
                false_positive=fp,
                missed=missed,
                unsure=count(Verdict.UNSURE),
                true_positive=tp,
                true_negative=count(Verdict.AGREE, NEGATIVE),
                agreement=Proportion(agree, agree + fp + missed),
                ppv=Proportion(tp, tp + fp_on_positive),
                sensitivity=Proportion(tp, tp + missed) if missed else None,
            )
        )
    return out
