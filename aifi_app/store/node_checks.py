"""Every contact with a remote node, successful or not: the evidence for its availability.

The dispatcher records each delivery attempt to the PACS and the remote runner each
submission to a vendor's node; a connection test (C-ECHO) may record one too. Each check
also has its audit event where the step writes one; this table names the node in a column
so that availability can be computed without reading words.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifi_app.store.database import Database, now

DELIVERY = "delivery"
SUBMISSION = "submission"
ECHO = "echo"


@dataclass(frozen=True)
class NodeCheck:
    at: float
    node: str
    kind: str
    ok: bool
    detail: str


def record(
    db: Database, node: str, kind: str, ok: bool, detail: str = "", at: float | None = None
) -> None:
    """Record one check of ``node`` (its name in the settings), in a transaction of its own.
    ``detail`` is for people and holds no patient data (an error in words, a status)."""
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO node_checks (at, node, kind, ok, detail) VALUES (?, ?, ?, ?, ?)",
            (now() if at is None else at, node, kind, int(ok), detail),
        )


def between(db: Database, start: float, end: float) -> list[NodeCheck]:
    """Checks in [start, end), oldest first."""
    rows = db.conn.execute(
        "SELECT at, node, kind, ok, detail FROM node_checks WHERE at >= ? AND at < ?"
        " ORDER BY at, id",
        (start, end),
    ).fetchall()
    return [NodeCheck(float(r[0]), str(r[1]), str(r[2]), bool(r[3]), str(r[4])) for r in rows]


def last_before(db: Database, node: str, at: float) -> NodeCheck | None:
    """The last check of ``node`` before ``at`` (what state a period starts in)."""
    r = db.conn.execute(
        "SELECT at, node, kind, ok, detail FROM node_checks WHERE node = ? AND at < ?"
        " ORDER BY at DESC, id DESC LIMIT 1",
        (node, at),
    ).fetchone()
    return None if r is None else NodeCheck(float(r[0]), str(r[1]), str(r[2]), bool(r[3]), r[4])
