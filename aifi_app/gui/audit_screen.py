"""The audit log screen: filters, the table, and export to CSV."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from aifi_app.gui.background import Background
from aifi_app.gui.queue_model import AnyIndex
from aifi_app.store import audit_log
from aifi_app.store.audit_log import AuditEntry
from aifi_app.store.database import Database

_COLUMNS = 8  # time, category, event, study, job, from -> to, detail, actor


class AuditTableModel(QAbstractTableModel):
    """The entries of the current filter; a new query result replaces them all."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[AuditEntry] = []

    def set_entries(self, rows: list[AuditEntry]) -> None:
        if rows == self._rows:
            return
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()

    def entries(self) -> list[AuditEntry]:
        return list(self._rows)

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else _COLUMNS

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or role != Qt.ItemDataRole.DisplayRole:
            return None
        if not 0 <= section < _COLUMNS:
            return None
        return (
            self.tr("Time"),
            self.tr("Category"),
            self.tr("Event"),
            self.tr("Study"),
            self.tr("Job"),
            self.tr("State change"),
            self.tr("Detail"),
            self.tr("By"),
        )[section]

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        if not 0 <= index.row() < len(self._rows):
            return None
        e = self._rows[index.row()]
        col = index.column()
        if col == 0:
            return datetime.fromtimestamp(e.at).strftime("%Y-%m-%d %H:%M:%S")
        if col == 5:
            return f"{e.from_state} → {e.to_state}" if e.to_state else ""
        values = (None, e.category, e.event, e.study_id, e.job_id, None, e.detail, e.actor)
        value = values[col]
        return "" if value is None else str(value)


PERIODS = (("day", 86400.0), ("week", 7 * 86400.0), ("all", None))


class AuditScreen(QWidget):
    def __init__(
        self, db: Database, reader: Background, actions: Background, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._db = db
        self._reader = reader
        self._actions = actions
        self._in_flight = False
        self.model = AuditTableModel(self)
        self.category = QComboBox()
        self.period = QComboBox()
        self.search = QLineEdit()
        self.search.setClearButtonEnabled(True)
        for combo in (self.category, self.period):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.export_button = QPushButton()
        self.export_button.clicked.connect(self.ask_export)
        self.message = QLabel()
        bar = QHBoxLayout()
        bar.addWidget(self.category)
        bar.addWidget(self.period)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.export_button)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(6, QHeaderView.ResizeMode.Stretch)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.message)
        self.category.currentIndexChanged.connect(lambda _: self.reload())
        self.period.currentIndexChanged.connect(lambda _: self.reload())
        self.search.textChanged.connect(lambda _: self.reload())
        self.retranslate()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def retranslate(self) -> None:
        self.search.setPlaceholderText(self.tr("Search event, detail or user…"))
        self.export_button.setText(self.tr("Export CSV…"))
        names = {"day": self.tr("Last 24 hours"), "week": self.tr("Last 7 days")}
        selected = self.period.currentIndex()
        self.period.blockSignals(True)
        self.period.clear()
        for key, span in PERIODS:
            self.period.addItem(names.get(key, self.tr("Everything")), span)
        self.period.setCurrentIndex(max(0, selected))
        self.period.blockSignals(False)
        if self.category.count() == 0:
            self.category.addItem(self.tr("All categories"), "")
        else:
            self.category.setItemText(0, self.tr("All categories"))
        self.model.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, _COLUMNS - 1)

    def reload(self) -> None:
        """Query with the current filters on the reader thread."""
        if self._in_flight:
            return
        self._in_flight = True
        category = str(self.category.currentData() or "")
        text = self.search.text().strip()
        span = self.period.currentData()
        since = time.time() - float(span) if span else None

        def read() -> tuple[list[str], list[AuditEntry]]:
            return (
                audit_log.categories(self._db),
                audit_log.entries(self._db, category=category, text=text, since=since),
            )

        def done(result: tuple[list[str], list[AuditEntry]]) -> None:
            self._in_flight = False
            categories, rows = result
            known = {self.category.itemData(i) for i in range(self.category.count())}
            for name in categories:
                if name not in known:
                    self.category.addItem(name, name)
            self.model.set_entries(rows)

        def failed(exc: BaseException) -> None:
            self._in_flight = False
            self.message.setText(str(exc))

        self._reader.submit(read, on_done=done, on_error=failed)

    def ask_export(self) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self, self.tr("Export audit log"), "aifi-audit.csv", self.tr("CSV files (*.csv)")
        )
        if name:
            self.export_to(Path(name))

    def export_to(self, path: Path) -> None:
        """Write what the table shows (the current filter) to ``path``, off the GUI thread."""
        rows = self.model.entries()
        self._actions.submit(
            audit_log.write_csv,
            rows,
            path,
            on_done=lambda n: self.message.setText(
                self.tr("%1 entries written to %2").replace("%1", str(n)).replace("%2", str(path))
            ),
            on_error=lambda exc: self.message.setText(
                self.tr("Export failed: %1").replace("%1", str(exc))
            ),
        )
