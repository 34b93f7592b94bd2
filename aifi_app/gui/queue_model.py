"""The queue table: one model that only turns new queue snapshots into row changes.

The snapshot (:func:`aifi_app.store.queue_view.queue_rows`) is read off the GUI thread;
:meth:`QueueTableModel.apply` runs on the GUI thread and turns the difference with what
is shown into ``rowsRemoved`` / ``dataChanged`` / ``rowsInserted``, so selection and
scroll position survive updates. Filtering lives in :class:`QueueFilterProxy`; sorting is
done here, with Python's sort on plain keys: letting the proxy sort thousands of rows
calls :meth:`data` from C++ for every comparison and stalled the GUI thread for 0.4 s.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from aifi_app.gui.states import ATTENTION, duration_text, state_background, state_icon, state_name
from aifi_app.store.queue_view import QueueRow

ROW_ROLE = Qt.ItemDataRole.UserRole + 1
"""The whole :class:`QueueRow` of a row."""
SORT_ROLE = Qt.ItemDataRole.UserRole + 2

AnyIndex = QModelIndex | QPersistentModelIndex

RECEIVED, MODALITY, DESCRIPTION, ALGORITHM, STATE, IN_STAGE, REASON = range(7)


class QueueTableModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[QueueRow] = []
        self._index: dict[tuple[str, int], int] = {}
        self._now = time.time()
        self._sort_column = RECEIVED
        self._sort_order = Qt.SortOrder.DescendingOrder

    # --- updates (GUI thread) ---
    def apply(self, rows: list[QueueRow]) -> None:
        """Show ``rows`` (a full snapshot), changing only what differs."""
        self._now = time.time()
        wanted = {r.key: r for r in rows}
        gone = sorted((i for k, i in self._index.items() if k not in wanted), reverse=True)
        removed = bool(gone)
        while gone:
            last = first = gone.pop(0)
            while gone and gone[0] == first - 1:
                first = gone.pop(0)
            self.beginRemoveRows(QModelIndex(), first, last)
            del self._rows[first : last + 1]
            self.endRemoveRows()
        self._index = {r.key: i for i, r in enumerate(self._rows)}
        changed = False
        for i, old in enumerate(self._rows):
            new = wanted[old.key]
            if new != old:
                changed = True
                self._rows[i] = new
                self.dataChanged.emit(self.index(i, 0), self.index(i, REASON))
        added = [r for r in rows if r.key not in self._index]
        if added:
            start = len(self._rows)
            self.beginInsertRows(QModelIndex(), start, start + len(added) - 1)
            self._rows.extend(added)
            self._index.update({r.key: start + n for n, r in enumerate(added)})
            self.endInsertRows()
        if changed or added or removed:
            self._resort()

    def tick(self) -> None:
        """Move the "time in stage" clock on (called by a timer; the view repaints).

        No ``dataChanged`` for every row: the order by time in stage does not change as
        the clock moves, and the view only needs to repaint what it shows.
        """
        self._now = time.time()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self._sort_column = column
        self._sort_order = order
        self._resort()

    def _resort(self) -> None:
        column = self._sort_column
        ordered = sorted(
            self._rows,
            key=lambda r: (self._sort_key(r, column), r.key),
            reverse=self._sort_order == Qt.SortOrder.DescendingOrder,
        )
        if all(a is b for a, b in zip(ordered, self._rows, strict=True)):
            return  # the order holds: no layout change (the proxy would re-filter every row)
        self.layoutAboutToBeChanged.emit()
        before = self.persistentIndexList()
        keys = [(self._rows[i.row()].key, i.column()) for i in before]
        self._rows = ordered
        self._index = {r.key: i for i, r in enumerate(self._rows)}
        self.changePersistentIndexList(
            before, [self.index(self._index[key], col) for key, col in keys]
        )
        self.layoutChanged.emit()

    def row_at(self, number: int) -> QueueRow:
        return self._rows[number]

    def row_of(self, key: tuple[str, int]) -> int | None:
        return self._index.get(key)

    def algorithms(self) -> list[str]:
        return sorted({r.algorithm for r in self._rows if r.algorithm})

    def senders(self) -> list[str]:
        """The calling AE titles of the studies shown (the nodes they came from)."""
        return sorted({r.calling_ae for r in self._rows if r.calling_ae})

    # --- Qt's model interface ---
    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else REASON + 1

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or role != Qt.ItemDataRole.DisplayRole:
            return None
        if not 0 <= section <= REASON:
            return None
        return (
            self.tr("Received"),
            self.tr("Modality"),
            self.tr("Study description"),
            self.tr("Algorithm"),
            self.tr("State"),
            self.tr("Time in stage"),
            self.tr("Reason"),
        )[section]

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        r = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(r, col)
        if role == SORT_ROLE:
            return self._sort_key(r, col)
        if role == ROW_ROLE:
            return r
        if role == Qt.ItemDataRole.DecorationRole and col == STATE:
            return state_icon(r.state)
        if role == Qt.ItemDataRole.BackgroundRole and r.state in ATTENTION:
            return state_background(r.state)
        if role == Qt.ItemDataRole.ToolTipRole and col in (STATE, REASON) and r.reason:
            return r.reason
        return None

    def _display(self, r: QueueRow, col: int) -> str:
        if col == RECEIVED:
            return datetime.fromtimestamp(r.received_at).strftime("%Y-%m-%d %H:%M:%S")
        if col == MODALITY:
            return r.modality
        if col == DESCRIPTION:
            return r.study_description
        if col == ALGORITHM:
            return r.algorithm or "—"
        if col == STATE:
            return state_name(r.state)
        if col == IN_STAGE:
            return duration_text(self._now - r.stage_since)
        return r.reason

    def _sort_key(self, r: QueueRow, col: int) -> Any:
        if col == RECEIVED:
            return r.received_at
        if col == IN_STAGE:
            return -r.stage_since  # longest in its stage first when descending
        return self._display(r, col).casefold()


class QueueFilterProxy(QSortFilterProxyModel):
    """Filters on state, algorithm and free text; sorts on the model's raw values."""

    ATTENTION_FILTER = "attention"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)
        self._state = ""
        self._algorithm = ""
        self._text = ""
        self._sender = ""
        self._since: float | None = None

    def set_state(self, state: str) -> None:
        """ "" for all, a state, or :attr:`ATTENTION_FILTER` for failed, rejected, no match."""
        self.beginFilterChange()
        self._state = state
        self.endFilterChange()

    def set_algorithm(self, algorithm: str) -> None:
        self.beginFilterChange()
        self._algorithm = algorithm
        self.endFilterChange()

    def set_text(self, text: str) -> None:
        self.beginFilterChange()
        self._text = text.strip().casefold()
        self.endFilterChange()

    def set_sender(self, calling_ae: str) -> None:
        """Only studies from this node (calling AE title); "" for all."""
        self.beginFilterChange()
        self._sender = calling_ae
        self.endFilterChange()

    def set_received_since(self, since: float | None) -> None:
        """Only studies received at or after ``since`` (seconds since the epoch)."""
        self.beginFilterChange()
        self._since = since
        self.endFilterChange()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sorting is the source model's (fast); the proxy keeps its order and only filters."""
        model = self.sourceModel()
        if isinstance(model, QueueTableModel):
            model.sort(column, order)

    def filterAcceptsRow(self, source_row: int, source_parent: AnyIndex) -> bool:
        model = self.sourceModel()
        assert isinstance(model, QueueTableModel)
        r = model.row_at(source_row)
        if self._state == self.ATTENTION_FILTER:
            if r.state not in ATTENTION:
                return False
        elif self._state and r.state != self._state:
            return False
        if self._algorithm and r.algorithm != self._algorithm:
            return False
        if self._sender and r.calling_ae != self._sender:
            return False
        if self._since is not None and r.received_at < self._since:
            return False
        if self._text:
            haystack = " ".join(
                (
                    r.modality,
                    r.study_description,
                    r.algorithm,
                    r.route,
                    r.state,
                    state_name(r.state),
                    r.reason,
                    r.calling_ae,
                    f"#{r.job_id}" if r.job_id is not None else "",
                )
            ).casefold()
            if self._text not in haystack:
                return False
        return True
