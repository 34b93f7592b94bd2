"""Availability of the service and of each remote node in a period.

**Service.** Each ``service started`` audit event begins a run; the run ends at the next
``service stopped`` event. A run followed by another start without a stop ended uncleanly
(a crash, a power cut): its end is taken as its last sign of life, the last audit event
or node check before the next start, so its uptime is a lower bound. A run still open at
the end of the data ends at its last sign of life too, unless the caller says the
service is running now (the desktop application), when it lasts until now. The period
counts from the first start ever recorded, if that is later than the period's start.

**Remote nodes.** Every contact (delivery attempt, submission, connection test) is a
check (``node_checks``). A node is counted down from a failed check until its next
successful one, and up otherwise; it is observed from its first check ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from aifi_app.evaluation.period import Period
from aifi_app.store import node_checks
from aifi_app.store.database import Database


@dataclass(frozen=True)
class Run:
    started_at: float
    ended_at: float
    clean: bool
    """False when the run ended without a ``stopped`` event (end estimated)."""


@dataclass(frozen=True)
class ServiceAvailability:
    observed_seconds: float
    up_seconds: float
    starts: int
    """Starts within the period."""
    unclean_ends: int
    """Runs within the period that ended without a stop event."""
    longest_outage_seconds: float

    @property
    def fraction(self) -> float | None:
        return None if self.observed_seconds <= 0 else self.up_seconds / self.observed_seconds


@dataclass(frozen=True)
class NodeAvailability:
    node: str
    checks: int
    failures: int
    observed_seconds: float
    down_seconds: float

    @property
    def fraction(self) -> float | None:
        if self.observed_seconds <= 0:
            return None
        return 1 - self.down_seconds / self.observed_seconds


def _last_sign_of_life(db: Database, after: float, before: float | None) -> float:
    bound = float("inf") if before is None else before
    r = db.conn.execute(
        "SELECT MAX(at) FROM (SELECT at FROM audit_events WHERE at >= ? AND at < ?"
        " UNION ALL SELECT at FROM node_checks WHERE at >= ? AND at < ?)",
        (after, bound, after, bound),
    ).fetchone()
    return after if r is None or r[0] is None else float(r[0])


def service_runs(db: Database, *, running_now: float | None = None) -> list[Run]:
    """Every run of the service, oldest first. ``running_now``: the service is running
    at this time (the last run lasts until then)."""
    events = db.conn.execute(
        "SELECT at, event FROM audit_events WHERE category = 'service'"
        " AND event IN ('started', 'stopped') ORDER BY at, id"
    ).fetchall()
    runs: list[Run] = []
    open_at: float | None = None
    for at, event in events:
        if event == "started":
            if open_at is not None:
                runs.append(Run(open_at, _last_sign_of_life(db, open_at, at), False))
            open_at = float(at)
        elif open_at is not None:
            runs.append(Run(open_at, float(at), True))
            open_at = None
    if open_at is not None:
        if running_now is not None:
            runs.append(Run(open_at, running_now, True))
        else:
            runs.append(Run(open_at, _last_sign_of_life(db, open_at, None), False))
    return runs


def _overlap(a: float, b: float, start: float, end: float) -> float:
    return max(0.0, min(b, end) - max(a, start))


def service_availability(
    db: Database, period: Period, *, now: float, running_now: bool = False
) -> ServiceAvailability:
    runs = service_runs(db, running_now=now if running_now else None)
    end = min(period.end, now)
    start = max(period.start, runs[0].started_at) if runs else end
    observed = max(0.0, end - start)
    up = sum(_overlap(r.started_at, r.ended_at, start, end) for r in runs)
    # the gaps between runs (and after the last one) that fall in the period
    longest = 0.0
    edges = [(r.started_at, r.ended_at) for r in runs]
    for (_, prev_end), (next_start, _) in pairwise(edges):
        longest = max(longest, _overlap(prev_end, next_start, start, end))
    if edges:
        longest = max(longest, _overlap(edges[-1][1], end, start, end))
    return ServiceAvailability(
        observed_seconds=observed,
        up_seconds=up,
        starts=sum(1 for r in runs if start <= r.started_at < end),
        unclean_ends=sum(1 for r in runs if not r.clean and start <= r.ended_at < end),
        longest_outage_seconds=longest,
    )


def node_availability(db: Database, period: Period, *, now: float) -> list[NodeAvailability]:
    """Per node with a check in or before the period, sorted by name."""
    end = min(period.end, now)
    checks = node_checks.between(db, period.start, end)
    names = sorted(
        {c.node for c in checks}
        | {
            str(r[0])
            for r in db.conn.execute(
                "SELECT DISTINCT node FROM node_checks WHERE at < ?", (period.start,)
            )
        }
    )
    out = []
    for name in names:
        mine = [c for c in checks if c.node == name]
        before = node_checks.last_before(db, name, period.start)
        if before is not None:
            start = period.start
            down_since: float | None = None if before.ok else period.start
        else:
            start = mine[0].at
            down_since = None
        down = 0.0
        for c in mine:
            if not c.ok and down_since is None:
                down_since = c.at
            elif c.ok and down_since is not None:
                down += c.at - down_since
                down_since = None
        if down_since is not None:
            down += end - down_since
        out.append(
            NodeAvailability(
                node=name,
                checks=len(mine),
                failures=sum(1 for c in mine if not c.ok),
                observed_seconds=max(0.0, end - start),
                down_seconds=down,
            )
        )
    return out
