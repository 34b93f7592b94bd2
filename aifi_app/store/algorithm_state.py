"""Which algorithm packages are enabled, and a generation counter that changes with every
install, update, removal, enable or disable, so that the running service notices a change
made by another process (``aifi-app algorithms ...``) with one cheap query per pass.
"""

from __future__ import annotations

import sqlite3

from aifi_app.store import audit
from aifi_app.store.database import Database, now


def generation(db: Database) -> int:
    """The current generation; any thread."""
    row = db.conn.execute("SELECT generation FROM algorithm_generation WHERE id = 1").fetchone()
    return int(row[0])


def bump_in(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE algorithm_generation SET generation = generation + 1 WHERE id = 1")


def disabled_ids(db: Database) -> set[str]:
    rows = db.conn.execute("SELECT algorithm_id FROM algorithm_state WHERE enabled = 0")
    return {str(r[0]) for r in rows}


def set_enabled(db: Database, algorithm_id: str, enabled: bool, *, actor: str) -> None:
    """Enable or disable a package (kept across restarts and reinstalls)."""
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO algorithm_state (algorithm_id, enabled, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (algorithm_id) DO UPDATE SET enabled = excluded.enabled,"
            " updated_at = excluded.updated_at",
            (algorithm_id, int(enabled), now()),
        )
        bump_in(conn)
        audit.record(
            conn,
            "algorithm",
            "enabled" if enabled else "disabled",
            detail=algorithm_id,
            actor=actor,
        )


def record_installed(
    db: Database, algorithm_id: str, version: str, detail: str, *, actor: str
) -> None:
    """Record an install or update (a new package starts enabled; an update keeps its state)."""
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO algorithm_state (algorithm_id, enabled, version, installed, updated_at)"
            " VALUES (?, 1, ?, 1, ?) ON CONFLICT (algorithm_id) DO UPDATE SET"
            " version = excluded.version, installed = 1, updated_at = excluded.updated_at",
            (algorithm_id, version, now()),
        )
        bump_in(conn)
        audit.record(conn, "algorithm", "installed", detail=detail, actor=actor)


def record_removed(db: Database, algorithm_id: str, *, actor: str) -> None:
    with db.transaction() as conn:
        conn.execute("DELETE FROM algorithm_state WHERE algorithm_id = ?", (algorithm_id,))
        bump_in(conn)
        audit.record(conn, "algorithm", "removed", detail=algorithm_id, actor=actor)
