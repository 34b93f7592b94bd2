"""The SQLite database behind the queue: connections, durability settings and migrations.

WAL with ``synchronous=FULL``: a transaction that returned is on disk, even after a power
cut. One exception, by request: :meth:`Database.connection` with ``synchronous="NORMAL"``
(the DICOM node's recording of received instances, whose durability comes from the
instance files themselves, :mod:`aifi_app.dicom_node.spool_recovery`): its commits reach
the disk with the next flush of the log (anyone's ``FULL`` commit, a checkpoint, or
:meth:`Database.flush_log`); a power cut before that loses them, never the database's
consistency. Every thread gets its own connection (SQLite connections must not be shared between
threads); writers take the lock up front (``BEGIN IMMEDIATE``) so that a transaction never
fails half-way on a lock upgrade.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aifi_app.store import audit_chain
from aifi_app.store.schema import MIGRATIONS

if TYPE_CHECKING:  # imported on first use (:attr:`Database.utils`)
    import sqlite_utils

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 512
"""Each connection's page cache, at most (SQLite's default is 2 MiB). A connection keeps
the pages it read until its cache is full, and the queue database grows with every study,
so each of the service's connections (eight in a running appliance) grew by its cache's
size over weeks: measured, the service's SQLite memory rose from 1.6 to 4.6 MB over 29
CTs of 500 slices, about 0.1 MB a CT, towards 16 MiB. The database's pages stay in the
system's file cache; a page read again from there costs a system call, not the disk."""


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer version of the appliance."""


SYNCHRONOUS_MODES = ("FULL", "NORMAL")


def _connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the schema version now in use."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise SchemaTooNewError(
            f"database schema version {version} is newer than this appliance knows "
            f"({len(MIGRATIONS)}); install the newer version or restore a backup"
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        log.info("applying database migration %d", number)
        # executescript commits first; the migration and its version bump form one script
        conn.executescript(
            "BEGIN IMMEDIATE;\n"
            + MIGRATIONS[number - 1]
            + f"\nPRAGMA user_version = {number};\nCOMMIT;"
        )
    return len(MIGRATIONS)


class Database:
    """The queue database. Safe to use from any thread; each thread has its own connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        migrate(self.conn)
        audit_chain.chain_legacy_rows(self.conn)
        try:
            path.chmod(0o600)
        except OSError:  # pragma: no cover - e.g. a file system without permissions
            log.warning("could not restrict permissions of the database file")

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close_thread_connection(self) -> None:
        """Close this thread's connection (:attr:`conn` opens another if it is used again):
        for a thread done with the database, in a process that keeps its memory small."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        self._local.utils = None
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        conn.close()

    def connection(self, synchronous: str = "FULL") -> sqlite3.Connection:
        """A connection of its own (closed by :meth:`close`), for one user at a time.

        ``synchronous="NORMAL"``: its commits are not flushed to disk (see the module's
        description); only for data that can be recovered from elsewhere after a power cut.
        """
        conn = _connect(self.path, synchronous)
        with self._lock:
            self._all.append(conn)
        return conn

    def flush_log(self) -> None:
        """Flush the write-ahead log to disk: every commit so far survives a power cut.

        What a ``synchronous=FULL`` commit does at its end; for the commits made on a
        ``synchronous="NORMAL"`` connection (:meth:`connection`).
        """
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            fd = os.open(wal, os.O_RDWR)  # (Windows flushes only files open for writing)
        except FileNotFoundError:
            return  # no log: every commit is in the database file, checkpointed and flushed
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def utils(self) -> sqlite_utils.Database:
        """sqlite-utils' view of this thread's connection (queries returning dicts)."""
        db: sqlite_utils.Database | None = getattr(self._local, "utils", None)
        if db is None:
            # imported here: the receiver processes (forked from the fork server, which
            # imports the node's modules for them) never query through it (sqlite-utils
            # with pluggy, click and dateutil: 59 modules, 4.1 MB)
            import sqlite_utils

            db = sqlite_utils.Database(self.conn)
            self._local.utils = db
        return db

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all."""
        return transaction(self.conn)

    def query(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> list[dict[str, Any]]:
        """Rows of a read-only query, as dictionaries."""
        return [dict(r) for r in self.utils.query(sql, params)]

    def schema_version(self) -> int:
        version: int = self.conn.execute("PRAGMA user_version").fetchone()[0]
        return version

    def integrity_check(self) -> str:
        result: str = self.conn.execute("PRAGMA integrity_check").fetchone()[0]
        return result

    def close(self) -> None:
        """Close every thread's connection (call once, at shutdown)."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on ``conn`` (see :meth:`Database.transaction`)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def now() -> float:
    """The time stamps stored in the database: seconds since the epoch, UTC."""
    return time.time()
