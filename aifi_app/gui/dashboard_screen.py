"""The dashboard: turnaround, jobs per day, availability and agreement for a period.

The figures are computed by the core (:func:`aifi_app.report.figures.compute`) on a
worker thread and drawn here with the report's own plot functions on matplotlib Qt
canvases, so the dashboard and ``aifi-app report`` always show the same figures.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QDate, QEvent, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from aifi_app.evaluation.period import Period
from aifi_app.evaluation.stats import median
from aifi_app.gui.accuracy_model import AccuracyTableModel
from aifi_app.gui.background import Background
from aifi_app.report import plots
from aifi_app.report.figures import Figures, compute
from aifi_app.report.html_page import write_report
from aifi_app.store.database import Database

PRESET_DAYS = (7, 30, 90, 365)


def _qdate(d: date) -> QDate:
    return QDate(d.year, d.month, d.day)


def _date(q: QDate) -> date:
    return date(q.year(), q.month(), q.day())


class DashboardScreen(QWidget):
    loaded = Signal()
    """The figures of the chosen period are shown (for tests and screenshots)."""

    def __init__(self, db: Database, work: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._db = db
        self._work = work
        self._request = 0
        self.figures: Figures | None = None

        self.preset = QComboBox()
        self.first = QDateEdit()
        self.last = QDateEdit()
        for edit in (self.first, self.last):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
        today = date.today()
        self.last.setDate(_qdate(today))
        self.first.setDate(_qdate(today - timedelta(days=29)))
        self.from_label = QLabel()
        self.to_label = QLabel()
        self.refresh_button = QPushButton()
        self.export_button = QPushButton()
        self.status = QLabel()
        self.preset.activated.connect(self._preset_chosen)
        self.first.dateChanged.connect(lambda _d: self.reload())
        self.last.dateChanged.connect(lambda _d: self.reload())
        self.refresh_button.clicked.connect(self.reload)
        self.export_button.clicked.connect(self.ask_export)
        bar = QHBoxLayout()
        for w in (self.preset, self.from_label, self.first, self.to_label, self.last):
            bar.addWidget(w)
        bar.addWidget(self.refresh_button)
        bar.addStretch(1)
        bar.addWidget(self.export_button)

        self.key = QLabel()
        self.key.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.canvases: dict[str, FigureCanvasQTAgg] = {}
        grid = QGridLayout()
        for n, name in enumerate(plots.PLOTS):
            canvas = FigureCanvasQTAgg(Figure(figsize=(5, 3), layout="constrained"))  # type: ignore[no-untyped-call]
            canvas.setMinimumSize(320, 200)
            self.canvases[name] = canvas
            grid.addWidget(canvas, n // 2, n % 2)
        self.accuracy_model = AccuracyTableModel(self)
        self.accuracy = QTableView()
        self.accuracy.setModel(self.accuracy_model)
        self.accuracy.verticalHeader().hide()
        self.accuracy.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.accuracy.setMaximumHeight(130)
        self.note = QLabel()
        self.note.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.key)
        layout.addLayout(grid, 1)
        layout.addWidget(self.accuracy)
        layout.addWidget(self.note)
        layout.addWidget(self.status)
        self.retranslate()

    # --- language ---
    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def retranslate(self) -> None:
        current = max(0, self.preset.currentIndex())
        self.preset.blockSignals(True)
        self.preset.clear()
        self.preset.addItem(self.tr("Chosen period"), None)
        for days in PRESET_DAYS:
            self.preset.addItem(self.tr("Last %1 days").replace("%1", str(days)), days)
        self.preset.setCurrentIndex(current)
        self.preset.blockSignals(False)
        self.from_label.setText(self.tr("From"))
        self.to_label.setText(self.tr("to"))
        self.refresh_button.setText(self.tr("Refresh"))
        self.export_button.setText(self.tr("Write report…"))
        self.accuracy_model.retranslate()
        self.note.setText(
            self.tr(
                "Days are UTC days. Turnaround: last image received to results in PACS. "
                "Agreement, PPV and sensitivity rest on the verdicts given in the queue, "
                "with 95 % intervals (Wilson) and the number of jobs. *Sensitivity counts "
                "only reported misses, so it is an upper bound."
            )
        )
        if self.figures is not None:
            self._show(self.figures)

    # --- loading ---
    def period(self) -> Period:
        first, last = _date(self.first.date()), _date(self.last.date())
        return Period.days(min(first, last), max(first, last))

    def set_period(self, first: date, last: date) -> None:
        """Show the days ``first`` to ``last`` (one reload)."""
        for edit, day in ((self.first, first), (self.last, last)):
            edit.blockSignals(True)
            edit.setDate(_qdate(day))
            edit.blockSignals(False)
        self.preset.setCurrentIndex(0)
        self.reload()

    def _preset_chosen(self, index: int) -> None:
        days = self.preset.itemData(index)
        if days:
            today = date.today()
            self.set_period(today - timedelta(days=int(days) - 1), today)
            self.preset.setCurrentIndex(index)

    def reload(self) -> None:
        """Compute the figures of the chosen period on a worker thread, then show them."""
        self._request += 1
        request = self._request
        period = self.period()
        self.status.setText(self.tr("Computing…"))
        self._work.submit(
            lambda: compute(self._db, period, now=time.time(), running_now=True),
            on_done=lambda figures: self._loaded(request, figures),
            on_error=self._failed,
        )

    def _loaded(self, request: int, figures: Figures) -> None:
        if request != self._request:
            return  # a newer period was chosen meanwhile
        self.figures = figures
        self._show(figures)
        self.status.clear()
        self.loaded.emit()

    def _failed(self, exc: BaseException) -> None:
        self.status.setText(self.tr("Could not compute the figures: %1").replace("%1", str(exc)))

    # --- showing ---
    def _titles(self) -> dict[str, tuple[str, str, str]]:
        """Per plot: title, x label, y label (translated)."""
        return {
            "turnaround": (
                self.tr("Turnaround per algorithm"),
                self.tr("seconds from the last image to the results in PACS"),
                "",
            ),
            "volume": (self.tr("Jobs per day"), "", self.tr("jobs")),
            "availability": (self.tr("Availability"), self.tr("percent of the observed time"), ""),
            "agreement": (self.tr("Agreement with people's verdicts"), "", self.tr("percent")),
        }

    def _translate_labels(self, name: str, ax: Axes) -> None:
        """The words the core's plots put in legends and on axes, in the chosen language."""
        words = {
            "agreement": self.tr("agreement"),
            "PPV": self.tr("PPV"),
            "sensitivity*": self.tr("sensitivity*"),
            "service": self.tr("service"),
        }
        legend = ax.get_legend()
        if name == "agreement" and legend is not None:
            for text in legend.get_texts():
                text.set_text(words.get(text.get_text(), text.get_text()))
        if name == "availability":
            for label in ax.get_yticklabels():
                label.set_text(words.get(label.get_text(), label.get_text()))
            ax.set_yticks(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()])

    def _show(self, f: Figures) -> None:
        titles = self._titles()
        for name, draw in plots.PLOTS.items():
            canvas = self.canvases[name]
            canvas.figure.clear()
            ax: Axes = canvas.figure.add_subplot()
            draw(ax, f)
            title, xlabel, ylabel = titles[name]
            ax.set_title(title)
            if ax.get_xlabel():
                ax.set_xlabel(xlabel)
            if ax.get_ylabel():
                ax.set_ylabel(ylabel)
            self._translate_labels(name, ax)
            canvas.draw_idle()  # type: ignore[no-untyped-call]
        self.accuracy_model.set_rows(f.accuracy)
        delivered = sum(1 for j in f.jobs if j.delivered_at is not None)
        turnaround = median([v for values in f.turnarounds.values() for v in values])
        service = f.service.fraction
        text = self.tr(
            "%1 jobs · %2 delivered · %3 rejected · %4 failed · median turnaround %5 · "
            "service availability %6 · %7 judged"
        )
        self.key.setText(
            text.replace("%1", str(len(f.jobs)))
            .replace("%2", str(delivered))
            .replace("%3", str(sum(1 for j in f.jobs if j.state == "rejected")))
            .replace("%4", str(sum(1 for j in f.jobs if j.state == "failed")))
            .replace("%5", "-" if turnaround is None else f"{turnaround:.1f} s")
            .replace("%6", "-" if service is None else f"{100 * service:.2f} %")
            .replace("%7", str(sum(1 for j in f.jobs if j.verdict is not None)))
        )

    # --- the report ---
    def ask_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Write the report into"))
        if folder:
            self.export_to(Path(folder))

    def export_to(self, folder: Path) -> None:
        """Write the report of the figures shown (HTML, plots, CSV) on a worker thread."""
        figures = self.figures
        if figures is None:
            return
        self.status.setText(self.tr("Writing the report…"))
        self._work.submit(
            write_report,
            figures,
            folder,
            on_done=lambda path: self.status.setText(
                self.tr("Report written: %1").replace("%1", str(path))
            ),
            on_error=self._failed,
        )
