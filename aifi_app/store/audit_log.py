"""Reading and exporting the audit log (the writing side is :mod:`aifi_app.store.audit`).

Safe to call from any thread. Details never hold patient data (see ``audit``), so an
export can leave the workstation.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, astuple, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aifi_app.store.database import Database


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    category: str
    event: str
    study_id: int | None
    job_id: int | None
    from_state: str
    to_state: str
    detail: str
    actor: str
    prev_hash: str = ""
    hash: str = ""
    """The row's place in the hash chain (:mod:`aifi_app.store.audit_chain`)."""


def entries(
    db: Database,
    *,
    category: str = "",
    text: str = "",
    since: float | None = None,
    until: float | None = None,
    limit: int = 10_000,
    oldest_first: bool = False,
) -> list[AuditEntry]:
    """Newest first (or oldest first); ``text`` is searched in event, detail and actor
    (case-insensitive)."""
    where: list[str] = []
    params: list[Any] = []
    if category:
        where.append("category = ?")
        params.append(category)
    if text:
        where.append("(event LIKE ? OR detail LIKE ? OR actor LIKE ?)")
        params += [f"%{text}%"] * 3
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if until is not None:
        where.append("at < ?")
        params.append(until)
    columns = (
        "id, at, category, event, study_id, job_id, from_state, to_state, detail, actor,"
        " prev_hash, hash"
    )
    condition = " WHERE " + " AND ".join(where) if where else ""
    order = "ASC" if oldest_first else "DESC"
    sql = f"SELECT {columns} FROM audit_events{condition} ORDER BY id {order} LIMIT ?"  # noqa: S608
    rows = db.conn.execute(sql, (*params, limit)).fetchall()
    return [
        AuditEntry(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6] or "",
            r[7] or "",
            r[8],
            r[9],
            r[10] or "",
            r[11] or "",
        )
        for r in rows
    ]


def categories(db: Database) -> list[str]:
    return [r[0] for r in db.conn.execute("SELECT DISTINCT category FROM audit_events ORDER BY 1")]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def write_jsonl(rows: list[AuditEntry], path: Path) -> int:
    """Write the entries as JSON lines (``at`` as stored, plus ``time`` in ISO 8601 UTC),
    hashes included, so that the chain can be re-verified from the export."""
    with path.open("w", encoding="utf-8") as f:
        for entry in rows:
            record = {**asdict(entry), "time": _iso(entry.at)}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(rows)


def write_csv(rows: list[AuditEntry], path: Path) -> int:
    """Write the entries as CSV (UTF-8, times in ISO 8601 UTC), hashes included; returns
    the number written."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow([f.name for f in fields(AuditEntry)])
        for entry in rows:
            values = list(astuple(entry))
            values[1] = _iso(entry.at)
            out.writerow(["" if v is None else v for v in values])
    return len(rows)
