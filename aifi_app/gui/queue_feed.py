"""Feeds the queue model: polls the core for changes off the GUI thread.

A timer on the GUI thread asks the reader thread "anything committed since last time?"
(:class:`aifi_app.store.changes.DataVersion`, one cheap PRAGMA); only then is the
snapshot read and compared with the previous one, still on the reader thread, and only
the difference (:class:`~aifi_app.store.queue_view.QueueDelta`) reaches the GUI thread,
through a queued signal.
"""

from __future__ import annotations

import dataclasses
import logging

from PySide6.QtCore import QObject, QTimer, Signal

from aifi_app.fault_logging import log_fault
from aifi_app.gui.background import Background
from aifi_app.store.changes import DataVersion
from aifi_app.store.database import Database
from aifi_app.store.queue_view import QueueDelta, QueueDiffer, queue_rows, urgent_findings

log = logging.getLogger(__name__)


class QueueFeed(QObject):
    delta_ready = Signal(object)
    """What changed (a :class:`QueueDelta`), on the GUI thread."""

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
        self._differ = QueueDiffer()
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

    def _read(self, force: bool) -> QueueDelta | None:
        """Reader thread: the difference with the previous snapshot, or None."""
        changed = self._version.changed()
        if not (changed or force):
            return None
        delta = self._differ.update(queue_rows(self._db))
        if delta.newly_resulted:
            ids = [r.job_id for r in delta.newly_resulted if r.job_id is not None]
            labels = urgent_findings(self._db, ids)
            urgent = tuple(
                (r, labels[r.job_id])
                for r in delta.newly_resulted
                if r.job_id is not None and r.job_id in labels
            )
            delta = dataclasses.replace(delta, urgent=urgent)
        return delta if delta or delta.first or force else None

    def _done(self, delta: QueueDelta | None) -> None:
        self._in_flight = False
        if delta is not None:
            self.delta_ready.emit(delta)

    def _failed(self, exc: BaseException) -> None:
        self._in_flight = False
        log_fault(log, "reading the queue failed", exc)
