"""The audit log: every state change and every fault, with a time stamp.

Details are written for people and never hold patient data: identifiers are the
appliance's own row ids, never names, patient IDs or UIDs of the original study.
"""

from __future__ import annotations

import sqlite3

from aifi_app.store import audit_chain
from aifi_app.store.database import now


def record(
    conn: sqlite3.Connection,
    category: str,
    event: str,
    *,
    study_id: int | None = None,
    job_id: int | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    detail: str = "",
    actor: str = "system",
) -> None:
    """Append one audit event, inside the caller's transaction, chained to the one before
    (:mod:`aifi_app.store.audit_chain`)."""
    cursor = conn.execute(
        "INSERT INTO audit_events (at, category, event, study_id, job_id, from_state, to_state,"
        " detail, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now(), category, event, study_id, job_id, from_state, to_state, detail, actor),
    )
    if cursor.lastrowid is None:  # pragma: no cover - sqlite always gives the rowid
        raise RuntimeError("the audit row got no id")
    audit_chain.append(conn, cursor.lastrowid)
