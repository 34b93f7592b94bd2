"""Feeds the queue model: polls the core for changes off the GUI thread.

A timer on the GUI thread asks the reader thread "anything committed since last time?"
(:class:`aifi_app.store.changes.DataVersion`, one cheap PRAGMA); only then is the
snapshot read, and it reaches the GUI thread through a queued signal.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal

from aifi_app.gui.background import Background
from aifi_app.store.changes import DataVersion
from aifi_app.store.database import Database
from aifi_app.store.queue_view import QueueRow, queue_rows

log = logging.getLogger(__name__)


class QueueFeed(QObject):
    rows_ready = Signal(list)
    """A new snapshot (``list[QueueRow]``), on the GUI thread."""

    def __init__(
        self,
        db: Database,
        reader: Background,
        interval_ms: int = 500,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._db = db
        self._reader = reader
        self._version = DataVersion(db)
        self._in_flight = False
        self._force = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)

    def start(self) -> None:
        self._timer.start()
        self.poll()

    def stop(self) -> None:
        self._timer.stop()

    def refresh(self) -> None:
        """Read a snapshot now, changed or not."""
        self._force = True
        self.poll()

    def poll(self) -> None:
        if self._in_flight:
            return
        self._in_flight = True
        force, self._force = self._force, False
        self._reader.submit(self._read, force, on_done=self._done, on_error=self._failed)

    def _read(self, force: bool) -> list[QueueRow] | None:
        """Reader thread: the snapshot, or None when nothing changed."""
        changed = self._version.changed()
        return queue_rows(self._db) if changed or force else None

    def _done(self, rows: list[QueueRow] | None) -> None:
        self._in_flight = False
        if rows is not None:
            self.rows_ready.emit(rows)

    def _failed(self, exc: BaseException) -> None:
        self._in_flight = False
        log.error("reading the queue failed", exc_info=exc)
