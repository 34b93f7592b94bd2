"""How long the evaluation takes on a year of data: ``compute`` (the dashboard's work, off
the GUI thread) and ``write_report`` (``aifi-app report``).

Fills a fresh store with N delivered/rejected jobs spread over D days (five state changes
and five stage times per job, a verdict on every tenth, node checks every 5 minutes,
one service run per day), then times the period of all D days and of the last 30.

    .venv/bin/python bench/evaluation_bench.py --jobs 100000 --days 365
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aifi_app.evaluation.period import Period
from aifi_app.report.figures import compute
from aifi_app.report.html_page import write_report
from aifi_app.store.database import Database

FIRST = date(2026, 1, 1)


def fill(db: Database, jobs: int, days: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    t0 = datetime.combine(FIRST, datetime.min.time(), tzinfo=UTC).timestamp()
    span = days * 86400.0
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    for d in range(days):
        conn.execute(
            "INSERT INTO audit_events (at, category, event) VALUES (?, 'service', 'started')",
            (t0 + d * 86400 + 60,),
        )
        conn.execute(
            "INSERT INTO audit_events (at, category, event) VALUES (?, 'service', 'stopped')",
            (t0 + d * 86400 + 86000,),
        )
    conn.executemany(
        "INSERT INTO node_checks (at, node, kind, ok) VALUES (?, 'pacs', 'echo', ?)",
        [(t0 + i * 300.0, int(rng.random() > 0.01)) for i in range(int(span // 300))],
    )
    scanners = [("GE", "Revolution"), ("SIEMENS", "Force"), ("Philips", "iCT")]
    for j in range(1, jobs + 1):
        t = t0 + rng.random() * span
        alg = "cxr" if j % 3 else "ct-pe"
        rejected = rng.random() < 0.05
        conn.execute(
            "INSERT INTO studies (id, study_uid, episode, kind, state, calling_ae, modality,"
            " study_description, first_received_at, last_received_at, idle_seconds,"
            " complete_due_at, completed_at) VALUES (?, ?, 1, 'primary', 'routed', ?, 'CT',"
            " 'CT THORAX', ?, ?, 30, ?, ?)",
            (j, f"2.25.{j}", f"CT0{j % 4}", t, t + 20, t + 50, t + 50),
        )
        positive = rng.random() < 0.3
        conn.execute(
            "INSERT INTO jobs (id, study_id, algorithm_id, route, state, result_json,"
            " created_at, updated_at) VALUES (?, ?, ?, 'r', ?, ?, ?, ?)",
            (
                j,
                j,
                alg,
                "rejected" if rejected else "delivered",
                None if rejected else f'{{"findings": [{{"positive": {str(positive).lower()}}}]}}',
                t + 51,
                t + 51,
            ),
        )
        moves = [("queued", "rejected")] if rejected else [
            ("queued", "pseudonymised"), ("pseudonymised", "submitted"),
            ("submitted", "result_received"), ("result_received", "delivered"),
        ]  # fmt: skip
        conn.executemany(
            "INSERT INTO audit_events (at, category, event, study_id, job_id, from_state,"
            " to_state) VALUES (?, 'job', 'state_changed', ?, ?, ?, ?)",
            [(t + 52 + 2 * i, j, j, a, b) for i, (a, b) in enumerate(moves)],
        )
        if not rejected:
            conn.executemany(
                "INSERT INTO job_stage_times VALUES (?, ?, ?, ?)",
                [(j, s, t + 52 + i, t + 53 + i) for i, s in enumerate(
                    ("pseudonymise", "model", "build_results", "reidentify", "deliver"))],
            )  # fmt: skip
            if j % 10 == 0:
                verdict = rng.choice(["agree", "agree", "agree", "false_positive", "missed"])
                conn.execute(
                    "INSERT INTO feedback (job_id, verdict, who, at) VALUES (?, ?, 'MB', ?)",
                    (j, verdict, t + 3600),
                )
        maker, model = scanners[j % 3]
        conn.execute(
            "INSERT INTO job_inputs (job_id, manufacturer, model, slice_thickness, kernel,"
            " protocol) VALUES (?, ?, ?, ?, ?, 'THORAX')",
            (j, maker, model, rng.choice([0.625, 1.0, 1.25, 2.5, 5.0]), f"K{j % 5}"),
        )
    conn.execute("COMMIT")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "q.db")
        started = time.perf_counter()
        fill(db, args.jobs, args.days)
        took = time.perf_counter() - started
        print(f"filled {args.jobs} jobs over {args.days} days in {took:.1f} s")
        last = FIRST + timedelta(days=args.days - 1)
        now = time.time()
        for label, period in (
            (f"all {args.days} days", Period.days(FIRST, last)),
            ("last 30 days", Period.days(last - timedelta(days=29), last)),
        ):
            t = time.perf_counter()
            figures = compute(db, period, now=now)
            computed = time.perf_counter() - t
            t = time.perf_counter()
            write_report(figures, Path(tmp) / label.replace(" ", "-"))
            written = time.perf_counter() - t
            print(
                f"{label}: {len(figures.jobs)} jobs; compute {computed:.2f} s,"
                f" write report {written:.2f} s"
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {peak:.0f} MB")
        db.close()


if __name__ == "__main__":
    main()
