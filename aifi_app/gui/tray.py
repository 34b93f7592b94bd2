"""The tray icon: overall status at a glance, and desktop notifications when a job fails
or a result with an urgent finding arrives (a positive finding the algorithm's manifest
lists in ``urgent_findings``)."""

from __future__ import annotations

from collections.abc import Iterable, Set
from enum import StrEnum

from PySide6.QtCore import QObject
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from aifi_app.gui.states import state_icon
from aifi_app.store.queue_view import QueueDelta, QueueRow


class Health(StrEnum):
    WELL = "well"
    WARNINGS = "warnings"
    FAILURES = "failures"


def health_of(rows: Iterable[QueueRow]) -> Health:
    """Failures: a job failed. Warnings: a study was rejected or no algorithm took it."""
    return health_of_states({r.state for r in rows})


def health_of_states(states: Set[str]) -> Health:
    """:func:`health_of` from the states shown."""
    if "failed" in states:
        return Health.FAILURES
    if states & {"rejected", "no_match"}:
        return Health.WARNINGS
    return Health.WELL


def newly_failed(previous: dict[tuple[str, int], str], rows: Iterable[QueueRow]) -> list[QueueRow]:
    """Jobs that are failed now and were not failed in the previous snapshot, including
    jobs that appeared and failed between two snapshots (the first snapshot after start-up
    is the baseline and notifies nothing: see :meth:`StatusTray.update`)."""
    return [r for r in rows if r.state == "failed" and previous.get(r.key) != "failed"]


_HEALTH_ICON = {Health.WELL: "delivered", Health.WARNINGS: "rejected", Health.FAILURES: "failed"}


class StatusTray(QObject):
    """Wraps QSystemTrayIcon; works (without showing anything) where there is no tray."""

    def __init__(self, menu: QMenu, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.icon = QSystemTrayIcon(self)
        self.icon.setContextMenu(menu)
        self.health = Health.WELL
        self.disk_warning: str | None = None
        """Why the data volume is below its free-space floor, or None (see set_disk_warning)."""
        self._queue_health = Health.WELL
        self._seen: dict[tuple[str, int], str] = {}
        self._primed = False
        self.notifications: list[tuple[str, str]] = []
        self.set_health(Health.WELL)

    @staticmethod
    def available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def show(self) -> None:
        if self.available():
            self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def window_icon(self) -> QIcon:
        return state_icon(_HEALTH_ICON[self.health])

    def set_health(self, health: Health) -> None:
        """The queue's health; a disk below its floor makes "all well" a warning."""
        self._queue_health = health
        if health == Health.WELL and self.disk_warning is not None:
            health = Health.WARNINGS
        self.health = health
        self.icon.setIcon(state_icon(_HEALTH_ICON[health]))
        tip = {
            Health.WELL: self.tr("AIFI Appliance: all well"),
            Health.WARNINGS: self.tr("AIFI Appliance: studies need attention"),
            Health.FAILURES: self.tr("AIFI Appliance: jobs failed"),
        }[health]
        if self.disk_warning is not None:
            tip += "\n" + self.tr("Disk space low: %1").replace("%1", self.disk_warning)
        self.icon.setToolTip(tip)

    def set_disk_warning(self, warning: str | None) -> None:
        """The data volume fell below (text) or rose above (None) the free-space floor; a
        notification when it falls below."""
        newly_low = warning is not None and self.disk_warning is None
        self.disk_warning = warning
        self.set_health(self._queue_health)
        if newly_low and warning is not None:
            title = self.tr("Disk space low: new studies are refused")
            self.notifications.append((title, warning))
            if self.icon.isVisible():
                self.icon.showMessage(title, warning, QSystemTrayIcon.MessageIcon.Critical, 0)

    def update_delta(self, delta: QueueDelta) -> None:
        """What changed in the queue: new status; a notification per newly failed job."""
        self.set_health(health_of_states(delta.summary.states))
        self._primed = True
        for r in delta.newly_failed:
            self._notify_failed(r)
        for r, labels in delta.urgent:
            self._notify_urgent(r, labels)

    def update(self, rows: list[QueueRow]) -> None:
        """A new queue snapshot: new status; a notification per newly failed job."""
        self.set_health(health_of(rows))
        failed = newly_failed(self._seen, rows) if self._primed else []
        self._seen = {r.key: r.state for r in rows}
        self._primed = True
        for r in failed:
            self._notify_failed(r)

    def _notify_failed(self, r: QueueRow) -> None:
        title = self.tr("Job %1 failed").replace("%1", str(r.job_id))
        text = f"{r.algorithm} · {r.modality} {r.study_description}".strip()
        if r.reason:
            text += f"\n{r.reason}"
        self.notifications.append((title, text))
        if self.icon.isVisible():
            self.icon.showMessage(title, text, QSystemTrayIcon.MessageIcon.Warning, 10_000)

    def _notify_urgent(self, r: QueueRow, labels: tuple[str, ...]) -> None:
        title = self.tr("Urgent finding in job %1").replace("%1", str(r.job_id))
        text = f"{r.algorithm} · {r.modality} {r.study_description}".strip()
        text += "\n" + "; ".join(labels)
        self.notifications.append((title, text))
        if self.icon.isVisible():
            self.icon.showMessage(title, text, QSystemTrayIcon.MessageIcon.Critical, 0)
