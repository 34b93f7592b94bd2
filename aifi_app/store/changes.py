"""A cheap answer to "did anything in the queue change?", for views that poll.

The core has no event bus: every change is a committed SQLite transaction, so a reader
asks SQLite. ``PRAGMA data_version`` changes when *another* connection commits; this
connection's own changes count in ``total_changes``. Together they cover every commit.
"""

from __future__ import annotations

from aifi_app.store.database import Database


class DataVersion:
    """Tells whether anything was committed since the previous call.

    Connections are per thread, so call :meth:`changed` always from the same thread
    (one watcher per polling thread). The first call answers True.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._seen: tuple[int, int] | None = None

    def current(self) -> tuple[int, int]:
        conn = self._db.conn
        version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        return version, conn.total_changes

    def changed(self) -> bool:
        now = self.current()
        if now == self._seen:
            return False
        self._seen = now
        return True
