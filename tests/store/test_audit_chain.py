"""The audit log's hash chain: every kind of tampering is found and the first broken row
named; rows from before the chain are chained on migration; the CLI verifies and exports."""

from __future__ import annotations

import csv
import getpass
import itertools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifi_app.cli import main
from aifi_app.store import audit, audit_chain
from aifi_app.store.database import Database
from aifi_app.store.schema import MIGRATIONS


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "aifi.sqlite3")
    for i in range(1, 7):
        with database.transaction() as conn:
            audit.record(conn, "test", f"event{i}", detail=f"detail {i}", job_id=i)
    yield database
    database.close()


def _raw(db: Database, sql: str, params: tuple[object, ...] = ()) -> None:
    """A write straight into the file, as someone with a SQLite tool would make it."""
    conn = sqlite3.connect(db.path)
    with conn:
        conn.execute(sql, params)
    conn.close()


def test_intact_chain_verifies(db: Database) -> None:
    report = audit_chain.verify(db.conn)
    assert report.ok and report.rows == 6
    rows = db.query("SELECT prev_hash, hash FROM audit_events ORDER BY id")
    assert rows[0]["prev_hash"] == audit_chain.GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))


def test_changed_row_is_named(db: Database) -> None:
    _raw(db, "UPDATE audit_events SET detail = 'nothing happened' WHERE id = 3")
    report = audit_chain.verify(db.conn)
    assert report.broken_at == 3 and "changed" in report.reason


def test_changed_actor_or_time_is_found(db: Database) -> None:
    _raw(db, "UPDATE audit_events SET at = at + 1 WHERE id = 2")
    assert audit_chain.verify(db.conn).broken_at == 2


def test_deleted_row_is_found_at_the_next(db: Database) -> None:
    _raw(db, "DELETE FROM audit_events WHERE id = 4")
    report = audit_chain.verify(db.conn)
    assert report.broken_at == 5 and "does not follow" in report.reason


def test_inserted_row_without_hash_is_named(db: Database) -> None:
    _raw(
        db,
        "INSERT INTO audit_events (id, at, category, event, detail, actor)"
        " VALUES (100, 0, 'x', 'forged', '', 'someone')",
    )
    report = audit_chain.verify(db.conn)
    assert report.broken_at == 100 and "no hash" in report.reason


def test_inserted_row_with_a_hash_is_found(db: Database) -> None:
    # a row slipped in between 2 and 3, hashed correctly on top of row 2
    row2 = db.query("SELECT hash FROM audit_events WHERE id = 2")[0]["hash"]
    forged = (3, 0.0, "x", "forged", None, None, None, None, "", "someone")
    _raw(db, "UPDATE audit_events SET id = id + 10 WHERE id >= 3")
    digest = audit_chain.row_hash(row2, forged)
    _raw(
        db,
        "INSERT INTO audit_events (id, at, category, event, detail, actor, prev_hash, hash)"
        " VALUES (3, 0.0, 'x', 'forged', '', 'someone', ?, ?)",
        (row2, digest),
    )
    report = audit_chain.verify(db.conn)
    assert report.broken_at == 13  # the former row 3: its content (id) no longer matches


def test_rows_cut_off_the_end_are_found(db: Database) -> None:
    _raw(db, "DELETE FROM audit_events WHERE id >= 5")
    report = audit_chain.verify(db.conn)
    assert not report.ok and "removed from the end" in report.reason


def test_new_rows_after_tampering_do_not_hide_it(db: Database) -> None:
    _raw(db, "UPDATE audit_events SET detail = 'x' WHERE id = 2")
    before = db.query("SELECT COUNT(*) AS n FROM audit_events")[0]["n"]
    with db.transaction() as conn:
        audit.record(conn, "test", "later")
    assert db.query("SELECT COUNT(*) AS n FROM audit_events")[0]["n"] == before + 1
    assert audit_chain.verify(db.conn).broken_at == 2


def test_rows_from_before_the_chain_are_chained_by_the_migration(tmp_path: Path) -> None:
    ours = next(i for i, m in enumerate(MIGRATIONS) if "audit_chain" in m)
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    for number, migration in enumerate(MIGRATIONS[:ours], start=1):
        conn.executescript(migration + f"\nPRAGMA user_version = {number};")
    for i in range(5):
        conn.execute(
            "INSERT INTO audit_events (at, category, event, detail, actor)"
            " VALUES (?, 'old', 'event', ?, 'system')",
            (1000.0 + i, f"old {i}"),
        )
    conn.commit()
    conn.close()
    db = Database(path)
    try:
        assert db.schema_version() == len(MIGRATIONS)
        assert audit_chain.verify(db.conn).ok
        with db.transaction() as c:
            audit.record(c, "new", "event")
        report = audit_chain.verify(db.conn)
        assert report.ok and report.rows == 6
    finally:
        db.close()
    # reopening chains nothing again, and a hash-less row slipped in later stays unchained
    _raw_conn = sqlite3.connect(path)
    with _raw_conn:
        _raw_conn.execute(
            "INSERT INTO audit_events (at, category, event, detail, actor)"
            " VALUES (0, 'x', 'forged', '', 'x')"
        )
    _raw_conn.close()
    db = Database(path)
    try:
        assert audit_chain.verify(db.conn).broken_at == 7
    finally:
        db.close()


def test_cli_verify_export_and_os_user(
    db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(db.path.parent)]
    assert main(["audit", "verify", *data]) == 0
    assert "chain intact" in capsys.readouterr().out
    out_csv = tmp_path / "audit.csv"
    assert main(["audit", "export", "--format", "csv", "--output", str(out_csv), *data]) == 0
    with out_csv.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(len(r["hash"]) == 64 for r in rows)
    out_jsonl = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--format", "jsonl", "--output", str(out_jsonl), *data]) == 0
    lines = [json.loads(line) for line in out_jsonl.read_text(encoding="utf-8").splitlines()]
    # the export can be re-verified on its own: each line's hash covers its content
    prev = audit_chain.GENESIS
    for line in lines:
        values = [line[c] for c in audit_chain.COLUMNS]
        values[6] = line["from_state"] or None
        values[7] = line["to_state"] or None
        assert line["prev_hash"] == prev
        assert audit_chain.row_hash(prev, values) == line["hash"]
        prev = line["hash"]
    exported = db.query("SELECT actor, detail FROM audit_events WHERE event = 'exported'")
    assert exported[0]["actor"] == f"cli:{getpass.getuser()}"
    _raw(db, "UPDATE audit_events SET actor = 'nobody' WHERE id = 4")
    assert main(["audit", "verify", *data]) == 1
    assert "BROKEN at row 4" in capsys.readouterr().err
