"""The queue screen: filters, the live table and the detail pane of the selected row.

Widgets hold no SQL: the timeline and the actions (retry, cancel, process now) are core
functions run on background threads; their results come back through queued signals.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PySide6.QtCore import QEvent, QItemSelection, QModelIndex, Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from aifi_app.gui.background import Background
from aifi_app.gui.feedback_panel import FeedbackPanel
from aifi_app.gui.queue_model import (
    REASON,
    RECEIVED,
    ROW_ROLE,
    QueueFilterProxy,
    QueueTableModel,
)
from aifi_app.gui.states import event_name, state_icon, state_name
from aifi_app.store import jobs
from aifi_app.store.database import Database
from aifi_app.store.queue_view import QueueRow, TimelineEvent, timeline

FILTER_STATES = (
    "receiving",
    "queued",
    "pseudonymised",
    "submitted",
    "result_received",
    "delivered",
    "failed",
    "rejected",
    "no_match",
    "cancelled",
)


def actor() -> str:
    """Who clicked, for the audit log."""
    try:
        return f"gui:{getpass.getuser()}"
    except (KeyError, OSError):  # pragma: no cover - no user name in this environment
        return "gui"


class QueueScreen(QWidget):
    def __init__(
        self,
        db: Database,
        model: QueueTableModel,
        reader: Background,
        actions: Background,
        on_changed: Callable[[], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._db = db
        self._reader = reader
        self._actions = actions
        self._on_changed = on_changed
        self._current: QueueRow | None = None
        self._timeline_request = 0

        self.model = model
        self.proxy = QueueFilterProxy(self)
        self.proxy.setSourceModel(model)

        self.state_filter = QComboBox()
        self.algorithm_filter = QComboBox()
        self.sender_filter = QComboBox()
        self.period_filter = QComboBox()
        for combo in (
            self.state_filter,
            self.algorithm_filter,
            self.sender_filter,
            self.period_filter,
        ):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.search = QLineEdit()
        self.search.setClearButtonEnabled(True)
        self.state_label = QLabel()
        self.algorithm_label = QLabel()
        bar = QHBoxLayout()
        for w in (self.state_label, self.state_filter, self.algorithm_label):
            bar.addWidget(w)
        bar.addWidget(self.algorithm_filter)
        bar.addWidget(self.sender_filter)
        bar.addWidget(self.period_filter)
        bar.addWidget(self.search, 1)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(RECEIVED, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        # sized to the contents once, from the first rows only: ResizeToContents would
        # measure thousands of rows on every update and stall the GUI thread
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setResizeContentsPrecision(50)
        header.setStretchLastSection(True)
        self._sized = False
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)

        self.detail = QGroupBox()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.timeline = QTreeWidget()
        self.timeline.setRootIsDecorated(False)
        self.timeline.setColumnCount(3)
        self.retry_button = QPushButton()
        self.cancel_button = QPushButton()
        self.process_now_button = QPushButton()
        self.retry_button.clicked.connect(self.retry)
        self.cancel_button.clicked.connect(self.cancel)
        self.process_now_button.clicked.connect(self.process_now)
        self.message = QLabel()
        self.message.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.retry_button, self.cancel_button, self.process_now_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        detail_layout = QVBoxLayout(self.detail)
        detail_layout.addWidget(self.summary)
        detail_layout.addWidget(self.timeline, 1)
        detail_layout.addLayout(buttons)
        self.feedback = FeedbackPanel(db, reader, actions)
        detail_layout.addWidget(self.feedback)
        detail_layout.addWidget(self.message)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(splitter, 1)

        self.state_filter.currentIndexChanged.connect(
            lambda _: self.proxy.set_state(str(self.state_filter.currentData() or ""))
        )
        self.algorithm_filter.currentIndexChanged.connect(
            lambda _: self.proxy.set_algorithm(str(self.algorithm_filter.currentData() or ""))
        )
        self.sender_filter.currentIndexChanged.connect(
            lambda _: self.proxy.set_sender(str(self.sender_filter.currentData() or ""))
        )
        self.period_filter.currentIndexChanged.connect(lambda _: self._apply_period())
        self.search.textChanged.connect(self.proxy.set_text)
        model.rowsInserted.connect(self._model_changed)
        model.dataChanged.connect(self._row_data_changed)

        self._tick = QTimer(self)
        self._tick.setInterval(5000)
        self._tick.timeout.connect(model.tick)
        self._tick.timeout.connect(self.table.viewport().update)
        self._tick.start()
        self.retranslate()
        self._show_detail()

    # --- language ---
    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def retranslate(self) -> None:
        self.state_label.setText(self.tr("State:"))
        self.algorithm_label.setText(self.tr("Algorithm:"))
        self.search.setPlaceholderText(
            self.tr("Search description, modality, algorithm, reason, job number…")
        )
        selected_state = self.state_filter.currentData()
        self.state_filter.blockSignals(True)
        self.state_filter.clear()
        self.state_filter.addItem(self.tr("All"), "")
        self.state_filter.addItem(self.tr("Needs attention"), QueueFilterProxy.ATTENTION_FILTER)
        for state in FILTER_STATES:
            self.state_filter.addItem(state_icon(state), state_name(state), state)
        index = self.state_filter.findData(selected_state)
        self.state_filter.setCurrentIndex(max(0, index))
        self.state_filter.blockSignals(False)
        self._fill_algorithms()
        period = max(0, self.period_filter.currentIndex())
        self.period_filter.blockSignals(True)
        self.period_filter.clear()
        self.period_filter.addItem(self.tr("Any time"), None)
        self.period_filter.addItem(self.tr("Today"), "today")
        self.period_filter.addItem(self.tr("Last 7 days"), 7 * 86400.0)
        self.period_filter.setCurrentIndex(period)
        self.period_filter.blockSignals(False)
        self.detail.setTitle(self.tr("Details"))
        self.timeline.setHeaderLabels([self.tr("Time"), self.tr("Event"), self.tr("Detail")])
        self.retry_button.setText(self.tr("Retry"))
        self.cancel_button.setText(self.tr("Cancel job"))
        self.process_now_button.setText(self.tr("Process now"))
        self.model.headerDataChanged.emit(Qt.Orientation.Horizontal, RECEIVED, REASON)
        if self._sized:
            self._fit_columns()  # the headers' new words
        self._show_detail()
        self._load_timeline()

    def _fit_columns(self) -> None:
        self.table.resizeColumnsToContents()
        header = self.table.horizontalHeader()
        # a long reason wraps in its tooltip; the last column takes the remaining width
        header.resizeSection(REASON, min(header.sectionSize(REASON), 360))

    def _fill_algorithms(self) -> None:
        for combo, everything, names in (
            (self.algorithm_filter, self.tr("All"), self.model.algorithms()),
            (self.sender_filter, self.tr("All senders"), self.model.senders()),
        ):
            selected = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(everything, "")
            for name in names:
                combo.addItem(name, name)
            combo.setCurrentIndex(max(0, combo.findData(selected)))
            combo.blockSignals(False)

    def _apply_period(self) -> None:
        span = self.period_filter.currentData()
        if span == "today":
            midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
            self.proxy.set_received_since(midnight.timestamp())
        elif span:
            self.proxy.set_received_since(time.time() - float(span))
        else:
            self.proxy.set_received_since(None)

    # --- selection and detail ---
    def _model_changed(self, *_: Any) -> None:
        # fit the columns while the queue is short; later, leave the widths to the user
        if not self._sized or self.model.rowCount() < 100:
            self._sized = True
            self._fit_columns()
        if len(self.model.algorithms()) != self.algorithm_filter.count() - 1 or len(
            self.model.senders()
        ) != (self.sender_filter.count() - 1):
            self._fill_algorithms()

    def _row_data_changed(self, top_left: QModelIndex, *_: Any) -> None:
        if self._current is None or top_left.column() != 0:
            return
        row = self.model.row_at(top_left.row())
        if row.key == self._current.key and row != self._current:
            self._current = row
            self._show_detail()
            self._load_timeline()

    def _selection_changed(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        rows = self.table.selectionModel().selectedRows()
        self._current = rows[0].data(ROW_ROLE) if rows else None
        self.message.clear()
        self._show_detail()
        self._load_timeline()

    def select_key(self, key: tuple[str, int]) -> bool:
        """Select the row of a job or study (as a person clicking it would)."""
        source = self.model.row_of(key)
        if source is None:
            return False
        index = self.proxy.mapFromSource(self.model.index(source, 0))
        if not index.isValid():
            return False
        self.table.selectRow(index.row())
        self.table.scrollTo(index)
        return True

    def _show_detail(self) -> None:
        r = self._current
        if r is None:
            self.summary.setText(self.tr("Select a study or job to see its timeline."))
            self.timeline.clear()
        else:
            parts = [
                self.tr("Study %1").replace("%1", str(r.study_id)),
                self.tr("job %1").replace("%1", str(r.job_id)) if r.job_id is not None else "",
                f"{r.modality} {r.study_description}".strip(),
                self.tr("%1 instance(s) from %2")
                .replace("%1", str(r.instance_count))
                .replace("%2", r.calling_ae),
                r.algorithm,
                state_name(r.state),
            ]
            text = " · ".join(p for p in parts if p)
            if r.reason:
                text += "\n" + self.tr("Reason: %1").replace("%1", r.reason)
            self.summary.setText(text)
        state = r.state if r else ""
        is_job = r is not None and r.job_id is not None
        self.retry_button.setEnabled(is_job and state in ("failed", "rejected", "cancelled"))
        self.cancel_button.setEnabled(
            is_job and state in {s.value for s in jobs.CANCELLABLE_JOB_STATES}
        )
        self.process_now_button.setEnabled(r is not None and state == "receiving")
        self.feedback.show_job(r.job_id if r is not None else None, state)

    def _load_timeline(self) -> None:
        r = self._current
        self._timeline_request += 1
        if r is None:
            return
        request = self._timeline_request
        self._reader.submit(
            lambda: timeline(self._db, study_id=r.study_id, job_id=r.job_id),
            on_done=lambda events: self._show_timeline(request, events),
        )

    def _show_timeline(self, request: int, events: list[TimelineEvent]) -> None:
        if request != self._timeline_request:
            return  # the selection moved on
        self.timeline.clear()
        for ev in events:
            what = event_name(ev.event)
            if ev.to_state:
                what = f"→ {state_name(ev.to_state)}"
            item = QTreeWidgetItem(
                [datetime.fromtimestamp(ev.at).strftime("%Y-%m-%d %H:%M:%S"), what, ev.detail]
            )
            if ev.to_state:
                item.setIcon(1, state_icon(ev.to_state))
            if ev.actor != "system":
                item.setToolTip(1, ev.actor)
            self.timeline.addTopLevelItem(item)
        for column in range(3):
            self.timeline.resizeColumnToContents(column)

    # --- actions ---
    def retry(self) -> None:
        r = self._current
        if r is None or r.job_id is None:
            return
        job_id = r.job_id
        self._run(
            lambda: jobs.retry_job(self._db, job_id, actor=actor()),
            lambda state: (
                self.tr("Job %1 is %2 again.")
                .replace("%1", str(job_id))
                .replace("%2", state_name(str(state)))
            ),
        )

    def cancel(self) -> None:
        r = self._current
        if r is None or r.job_id is None:
            return
        job_id = r.job_id
        self._run(
            lambda: jobs.cancel_job(self._db, job_id, actor=actor()),
            lambda _: self.tr("Job %1 is cancelled.").replace("%1", str(job_id)),
        )

    def process_now(self) -> None:
        r = self._current
        if r is None:
            return
        study_id = r.study_id

        def run() -> bool:
            return jobs.process_now(self._db, study_id, actor=actor())

        self._run(
            run,
            lambda ok: (
                self.tr("Study %1 will be processed now.").replace("%1", str(study_id))
                if ok
                else self.tr("Study %1 is no longer receiving.").replace("%1", str(study_id))
            ),
        )

    def _run(self, work: Callable[[], Any], said: Callable[[Any], str]) -> None:
        self.message.setText(self.tr("Working…"))

        def done(result: Any) -> None:
            self.message.setText(said(result))
            self._on_changed()

        def failed(exc: BaseException) -> None:
            reason = str(exc).strip("'\"")
            self.message.setText(self.tr("Not done: %1").replace("%1", reason))
            self._on_changed()

        self._actions.submit(work, on_done=done, on_error=failed)
