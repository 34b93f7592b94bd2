"""The dashboard's table of agreement, PPV and sensitivity per algorithm."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt

from aifi_app.evaluation.accuracy import Accuracy
from aifi_app.evaluation.stats import Proportion
from aifi_app.gui.queue_model import AnyIndex

COLUMNS = 6  # algorithm, judged, agreement, PPV, sensitivity, unsure


def proportion_text(p: Proportion | None) -> str:
    """``67 % (21-94 %, n=3)``; a dash when there is nothing to show."""
    if p is None or p.value is None or p.interval is None:
        return "-"
    low, high = p.interval
    return f"{100 * p.value:.0f} % ({100 * low:.0f}-{100 * high:.0f} %, n={p.n})"


class AccuracyTableModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Accuracy] = []

    def set_rows(self, rows: list[Accuracy]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else COLUMNS

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or role not in (
            Qt.ItemDataRole.DisplayRole,
            Qt.ItemDataRole.TextAlignmentRole,
        ):
            return None
        a = self._rows[index.row()]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            flag = Qt.AlignmentFlag
            side = flag.AlignLeft if index.column() == 0 else flag.AlignRight
            return int(side | flag.AlignVCenter)
        return [
            a.algorithm_id,
            str(a.judged),
            proportion_text(a.agreement),
            proportion_text(a.ppv if a.ppv.n else None),
            proportion_text(a.sensitivity),
            str(a.unsure),
        ][index.column()]

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or role != Qt.ItemDataRole.DisplayRole:
            return None
        return [
            self.tr("Algorithm"),
            self.tr("Judged"),
            self.tr("Agreement"),
            self.tr("PPV"),
            self.tr("Sensitivity*"),
            self.tr("Unsure"),
        ][section]

    def retranslate(self) -> None:
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, COLUMNS - 1)
