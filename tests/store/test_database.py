from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
from pathlib import Path

import pytest

from aifi_app.store.database import CACHE_KIB, Database, SchemaTooNewError
from aifi_app.store.schema import MIGRATIONS


def test_new_database_is_migrated_and_durable(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.db")
    assert db.schema_version() == len(MIGRATIONS)
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.integrity_check() == "ok"
    assert (tmp_path / "q.db").stat().st_mode & 0o077 == 0
    db.close()


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    Database(tmp_path / "q.db").close()
    db = Database(tmp_path / "q.db")
    assert db.schema_version() == len(MIGRATIONS)
    db.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "q.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(SchemaTooNewError):
        Database(tmp_path / "q.db")


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.db")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO installation (key, value) VALUES ('a', 'b')")
        raise RuntimeError("boom")
    assert db.query("SELECT * FROM installation") == []
    db.close()


def test_an_own_connection_may_leave_its_commits_to_the_next_flush(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.db")
    relaxed = db.connection(synchronous="NORMAL")
    assert relaxed.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert db.connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with pytest.raises(ValueError):
        db.connection(synchronous="OFF")
    relaxed.execute("INSERT INTO installation (key, value) VALUES ('a', 'b')")
    assert (tmp_path / "q.db-wal").exists()
    db.flush_log()  # fsyncs the log (what a FULL commit does); nothing to see but no error
    assert db.query("SELECT value FROM installation WHERE key = 'a'") == [{"value": "b"}]
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed with the database
        relaxed.execute("SELECT 1")


def test_a_threads_connection_closed_is_opened_again_when_used(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.db")
    first = db.conn
    assert db.query("SELECT 1 AS one") == [{"one": 1}]
    db.close_thread_connection()
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        first.execute("SELECT 1")
    assert db.conn is not first
    assert db.query("SELECT 1 AS one") == [{"one": 1}]  # (sqlite-utils' view is new too)
    db.close_thread_connection()
    db.close_thread_connection()  # nothing open: nothing to do
    db.close()


def _sqlite_memory_used() -> ctypes._CFuncPtr:
    """SQLite's own count of the memory it holds, from the library Python's module uses."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        pytest.skip("no shared SQLite library: Python's module has its own")
    used = ctypes.CDLL(name).sqlite3_memory_used
    used.restype = ctypes.c_int64
    return used


def test_a_connection_keeps_at_most_its_bounded_cache_of_pages(tmp_path: Path) -> None:
    """A connection that reads the whole of a large database keeps at most
    ``CACHE_KIB`` of its pages (SQLite's default, 2 MiB a connection, grew each of the
    service's connections as the queue grew)."""
    used = _sqlite_memory_used()
    db = Database(tmp_path / "q.db")
    with db.transaction() as conn:
        conn.execute("CREATE TABLE filler (n INTEGER PRIMARY KEY, payload BLOB)")
        conn.executemany(
            "INSERT INTO filler (payload) VALUES (?)", ((bytes(900),) for _ in range(8000))
        )
    db.close()
    before_open = used()
    conn = sqlite3.connect(tmp_path / "q.db")
    opened = used()
    if opened == before_open:
        conn.close()
        pytest.skip("Python's SQLite is not the shared library's: its memory is not seen")
    conn.close()
    db = Database(tmp_path / "q.db")
    reader = db.connection()
    before = used()
    total = reader.execute("SELECT sum(length(payload)) FROM filler").fetchone()[0]
    grown = used() - before
    db.close()
    assert total == 8000 * 900  # about 7.5 MB of pages read
    assert grown < (CACHE_KIB + 256) * 1024, f"the connection kept {grown / 1e6:.1f} MB"
