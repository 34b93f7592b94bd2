"""The audit log's hash chain: tampering with a row (changed, deleted, slipped in) shows.

Each row of ``audit_events`` carries ``prev_hash`` (the previous row's hash) and ``hash``,
the SHA-256 of ``prev_hash``, a newline and the row's canonical content (a compact JSON
array of its id and every column, in a fixed order). The first row's ``prev_hash`` is
:data:`GENESIS`. The table ``audit_chain`` keeps the head (last id and hash), so that rows
cut off the end show too.

What it does not do: someone who can write the database *and* recompute every later hash
(the algorithm is public) can rewrite the chain. An export kept elsewhere (``aifi-app
audit export``, the hashes included) pins the chain up to that point: a later rewrite no
longer matches the exported hashes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
COLUMNS = (
    "id",
    "at",
    "category",
    "event",
    "study_id",
    "job_id",
    "from_state",
    "to_state",
    "detail",
    "actor",
)
"""The columns a row's hash covers, in this order."""


def canonical(row: Sequence[Any]) -> str:
    """The row's content (values in :data:`COLUMNS` order) as compact JSON."""
    return json.dumps(list(row), ensure_ascii=False, separators=(",", ":"))


def row_hash(prev_hash: str, row: Sequence[Any]) -> str:
    return hashlib.sha256(f"{prev_hash}\n{canonical(row)}".encode()).hexdigest()


def _select(where: str = "") -> str:
    return f"SELECT {', '.join(COLUMNS)}, prev_hash, hash FROM audit_events {where} ORDER BY id"  # noqa: S608


def head(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT head_id, head_hash FROM audit_chain WHERE id = 1").fetchone()
    if row is None or not row[1]:
        return 0, GENESIS
    return int(row[0]), str(row[1])


def append(conn: sqlite3.Connection, row_id: int) -> None:
    """Chain the row just inserted (inside the caller's write transaction)."""
    _, prev = head(conn)
    values = conn.execute(_select("WHERE id = ?"), (row_id,)).fetchone()
    digest = row_hash(prev, tuple(values)[: len(COLUMNS)])
    conn.execute(
        "UPDATE audit_events SET prev_hash = ?, hash = ? WHERE id = ?", (prev, digest, row_id)
    )
    conn.execute("UPDATE audit_chain SET head_id = ?, head_hash = ? WHERE id = 1", (row_id, digest))


def chain_legacy_rows(conn: sqlite3.Connection) -> int:
    """Chain rows written before the chain existed (ids up to ``legacy_until``); returns
    how many. Idempotent; the caller holds no transaction."""
    state = conn.execute("SELECT legacy_until FROM audit_chain WHERE id = 1").fetchone()
    if state is None:
        return 0
    pending = conn.execute(
        "SELECT 1 FROM audit_events WHERE id <= ? AND hash IS NULL LIMIT 1", (state[0],)
    ).fetchone()
    if pending is None:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        prev = GENESIS
        count = 0
        rows = conn.execute(_select("WHERE id <= ?"), (state[0],)).fetchall()
        for row in rows:
            values = tuple(row)
            if values[-1] is None:
                digest = row_hash(prev, values[: len(COLUMNS)])
                conn.execute(
                    "UPDATE audit_events SET prev_hash = ?, hash = ? WHERE id = ?",
                    (prev, digest, values[0]),
                )
                count += 1
            else:
                digest = values[-1]
            prev = digest
        last_id = int(rows[-1][0]) if rows else 0
        conn.execute(
            "UPDATE audit_chain SET head_id = ?, head_hash = ? WHERE id = 1 AND head_id <= ?",
            (last_id, prev, last_id),
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return count


@dataclass(frozen=True)
class ChainReport:
    rows: int
    """Rows checked."""
    broken_at: int | None
    """Id of the first row that does not verify (None: the chain is intact)."""
    reason: str

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(conn: sqlite3.Connection) -> ChainReport:
    """Walk the chain from the first row; name the first row that does not verify."""
    prev = GENESIS
    count = 0
    last_id = 0
    for row in conn.execute(_select()):
        values = tuple(row)
        row_id, prev_hash, digest = values[0], values[-2], values[-1]
        count += 1
        if digest is None:
            return ChainReport(
                count, row_id, f"row {row_id} has no hash (inserted outside the log)"
            )
        if prev_hash != prev:
            return ChainReport(
                count,
                row_id,
                f"row {row_id} does not follow the row before it (a row before it was "
                "deleted, inserted or changed)",
            )
        if row_hash(prev, values[: len(COLUMNS)]) != digest:
            return ChainReport(count, row_id, f"row {row_id}'s content was changed")
        prev = digest
        last_id = row_id
    head_id, head_hash = head(conn)
    if (head_id, head_hash) != (last_id, prev) and not (head_id == 0 and last_id == 0):
        return ChainReport(
            count,
            last_id + 1 if head_id > last_id else head_id,
            f"the log ends at row {last_id} but its recorded head is row {head_id} "
            "(rows were removed from the end, or the head was altered)",
        )
    return ChainReport(count, None, f"{count} rows, chain intact")
