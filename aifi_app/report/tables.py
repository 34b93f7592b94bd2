"""The figures as tables: each becomes one CSV file of the report and one HTML table.

Cells hold job ids, algorithm ids, node names, AE titles of sending nodes, device and
technique values, cleaned descriptions, counts, seconds and fractions; never a patient
name, ID, accession number, UID or date of birth, and never a verdict's comment.
Seconds are rounded to milliseconds, fractions to four decimals; an empty cell means the
figure does not exist (no data, or the stage does not apply).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from aifi_app.evaluation import timing
from aifi_app.evaluation.period import utc_day
from aifi_app.evaluation.stats import Proportion
from aifi_app.report.figures import Figures

Cell = str | int | float | None


@dataclass(frozen=True)
class Table:
    name: str
    """File name without ``.csv``."""
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]]


def seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def fraction(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _proportion(p: Proportion | None) -> tuple[Cell, ...]:
    if p is None:
        return (None, None, None, None, None)
    interval = p.interval
    return (
        p.successes,
        p.n,
        fraction(p.value),
        None if interval is None else fraction(interval[0]),
        None if interval is None else fraction(interval[1]),
    )


def _proportion_columns(name: str) -> tuple[str, ...]:
    return (f"{name}_k", f"{name}_n", name, f"{name}_ci95_low", f"{name}_ci95_high")


def build(f: Figures) -> list[Table]:
    """Every table of the report, in the order the report shows them."""
    jobs = Table(
        "job_stages",
        "Stages of every job (seconds)",
        ("job_id", "algorithm_id", "state", "day", "site", *timing.STAGES),
        [
            (
                j.job_id,
                j.algorithm_id,
                j.state,
                utc_day(j.first_received_at).isoformat(),
                j.site,
                *(seconds(v) for v in timing.job_stages(j).values()),
            )
            for j in f.jobs
        ],
    )
    stages = Table(
        "stage_summary",
        "Stage times per algorithm, delivered jobs (seconds)",
        ("algorithm_id", "stage", "count", "median", "p90", "min", "max"),
        [
            (
                s.algorithm_id,
                s.stage,
                s.count,
                seconds(s.median),
                seconds(s.p90),
                seconds(s.minimum),
                seconds(s.maximum),
            )
            for s in f.stages
        ],
    )
    volume = Table(
        "volume_per_day",
        "Jobs per day (UTC day of the study's first image)",
        ("day", "algorithm_id", "total", "delivered", "rejected", "failed", "other"),
        [
            (v.day.isoformat(), v.algorithm_id, v.total, v.delivered, v.rejected, v.failed, v.other)
            for v in f.volume
        ],
    )
    accuracy = Table(
        "accuracy",
        "Agreement, PPV and sensitivity per algorithm (Wilson 95 % intervals)",
        (
            "algorithm_id",
            "judged",
            "agree",
            "false_positive",
            "missed",
            "unsure",
            "true_positive",
            "true_negative",
            *_proportion_columns("agreement"),
            *_proportion_columns("ppv"),
            *_proportion_columns("sensitivity_reported_misses"),
        ),
        [
            (
                a.algorithm_id,
                a.judged,
                a.agree,
                a.false_positive,
                a.missed,
                a.unsure,
                a.true_positive,
                a.true_negative,
                *_proportion(a.agreement),
                *_proportion(a.ppv if a.ppv.n else None),
                *_proportion(a.sensitivity),
            )
            for a in f.accuracy
        ],
    )
    verdicts = Table(
        "verdicts",
        "The newest verdict on every judged job",
        ("job_id", "algorithm_id", "result", "verdict"),
        [
            (j.job_id, j.algorithm_id, j.polarity, j.verdict.value)
            for j in f.jobs
            if j.verdict is not None
        ],
    )
    variation = Table(
        "input_variation",
        "Results and rejections by input",
        (
            "dimension",
            "value",
            "algorithm_id",
            "jobs",
            "delivered",
            "rejected",
            "failed",
            "positive",
            "agree",
            "false_positive",
            "missed",
            "unsure",
        ),
        [
            (
                r.dimension,
                r.value,
                r.algorithm_id,
                r.jobs,
                r.delivered,
                r.rejected,
                r.failed,
                r.positive,
                r.agree,
                r.false_positive,
                r.missed,
                r.unsure,
            )
            for r in f.variation
        ],
    )
    s = f.service
    service = Table(
        "service_availability",
        "Availability of the service",
        (
            "observed_seconds",
            "up_seconds",
            "availability",
            "starts",
            "unclean_ends",
            "longest_outage_seconds",
        ),
        [
            (
                seconds(s.observed_seconds),
                seconds(s.up_seconds),
                fraction(s.fraction),
                s.starts,
                s.unclean_ends,
                seconds(s.longest_outage_seconds),
            )
        ],
    )
    nodes = Table(
        "node_availability",
        "Availability of the remote nodes",
        ("node", "checks", "failed_checks", "observed_seconds", "down_seconds", "availability"),
        [
            (
                n.node,
                n.checks,
                n.failures,
                seconds(n.observed_seconds),
                seconds(n.down_seconds),
                fraction(n.fraction),
            )
            for n in f.nodes
        ],
    )
    return [stages, volume, accuracy, variation, service, nodes, verdicts, jobs]


def write_csv(table: Table, folder: Path) -> Path:
    """``folder/<name>.csv``: UTF-8, a header row, comma-separated."""
    path = folder / f"{table.name}.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(table.columns)
        for row in table.rows:
            writer.writerow("" if v is None else v for v in row)
    return path
