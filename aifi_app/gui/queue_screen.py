"""The queue screen: filters, the live table and the detail pane of the selected row.

Widgets hold no SQL: the timeline and the actions (retry, cancel, process now) are core
functions run on background threads; their results come back through queued signals.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom.uid import UID
from PySide6.QtCore import QEvent, QItemSelection, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
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
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from aifi_app.gui.background import Background
from aifi_app.gui.feedback_panel import FeedbackPanel
from aifi_app.gui.queue_model import (
    ATTENTION_FILTER,
    REASON,
    RECEIVED,
    ROW_ROLE,
    STATE,
    QueueTableModel,
)
from aifi_app.gui.states import event_name, state_icon, state_name
from aifi_app.results.preview import PreviewPixels, preview_pixels
from aifi_app.store import jobs
from aifi_app.store.database import Database
from aifi_app.store.queue_view import (
    InstanceLine,
    OutputLine,
    QueueRow,
    TimelineEvent,
    instances,
    outputs,
    timeline,
)

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


def sop_class_words(uid: str) -> str:
    """A SOP class by its name ("CT Image Storage"), or the UID when pydicom does not know it."""
    name = UID(uid).name
    return name.removesuffix(" Storage") if name and name != uid else uid


class QueueScreen(QWidget):
    current_changed = Signal(object)
    """The selected row changed (a :class:`QueueRow`, or None)."""

    def __init__(
        self,
        db: Database,
        model: QueueTableModel,
        reader: Background,
        actions: Background,
        on_changed: Callable[[], None],
        parent: QWidget | None = None,
        *,
        data_dir: Path | None = None,
        algorithms: Callable[[], list[str]] = list,
    ) -> None:
        super().__init__(parent)
        self._db = db
        self._data_dir = data_dir
        self._algorithms = algorithms
        self._reader = reader
        self._actions = actions
        self._on_changed = on_changed
        self._current: QueueRow | None = None
        self._timeline_request = 0

        self.model = model

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
        self.table.setModel(model)
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
        self.instances = QTreeWidget()
        self.instances.setRootIsDecorated(False)
        self.instances.setColumnCount(5)
        self.outputs = QTreeWidget()
        self.outputs.setRootIsDecorated(False)
        self.outputs.setColumnCount(3)
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(160, 160)
        self.preview_image: QImage | None = None
        self._preview_of: Path | None = None
        """The result image shown (its full preview size)."""
        result_page = QSplitter(Qt.Orientation.Horizontal)
        result_page.addWidget(self.outputs)
        result_page.addWidget(self.preview)
        self.detail_tabs = QTabWidget()
        """Timeline, instances and result; other views of the selected job may add a tab."""
        self.detail_tabs.addTab(self.timeline, "")
        self.detail_tabs.addTab(self.instances, "")
        self.detail_tabs.addTab(result_page, "")
        self.retry_button = QPushButton()
        self.cancel_button = QPushButton()
        self.process_now_button = QPushButton()
        self.resend_button = QPushButton()
        self.route_button = QPushButton()
        self.route_choice = QComboBox()
        self.route_choice.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.retry_button.clicked.connect(self.retry)
        self.cancel_button.clicked.connect(self.cancel)
        self.process_now_button.clicked.connect(self.process_now)
        self.resend_button.clicked.connect(self.resend)
        self.route_button.clicked.connect(
            lambda: self.route_to(str(self.route_choice.currentData() or ""))
        )
        self.message = QLabel()
        self.message.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (
            self.retry_button,
            self.cancel_button,
            self.process_now_button,
            self.resend_button,
        ):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.route_choice)
        buttons.addWidget(self.route_button)
        self.detail_extras = QVBoxLayout()
        """Room for more widgets about the selected row (see :meth:`add_detail_widget`)."""
        detail_layout = QVBoxLayout(self.detail)
        detail_layout.addWidget(self.summary)
        detail_layout.addWidget(self.detail_tabs, 1)
        detail_layout.addLayout(buttons)
        detail_layout.addLayout(self.detail_extras)
        self.feedback = FeedbackPanel(db, reader, actions)
        self.detail_extras.addWidget(self.feedback)
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
            lambda _: model.set_state(str(self.state_filter.currentData() or ""))
        )
        self.algorithm_filter.currentIndexChanged.connect(
            lambda _: model.set_algorithm(str(self.algorithm_filter.currentData() or ""))
        )
        self.sender_filter.currentIndexChanged.connect(
            lambda _: model.set_sender(str(self.sender_filter.currentData() or ""))
        )
        self.period_filter.currentIndexChanged.connect(lambda _: self._apply_period())
        self.search.textChanged.connect(model.set_text)
        model.rowsInserted.connect(self._model_changed)
        model.modelReset.connect(self._model_reset)
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
        self.state_filter.addItem(self.tr("Needs attention"), ATTENTION_FILTER)
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
        self.resend_button.setText(self.tr("Resend to PACS"))
        self.route_button.setText(self.tr("Send to this algorithm"))
        self.detail_tabs.setTabText(0, self.tr("Timeline"))
        self.detail_tabs.setTabText(1, self.tr("Instances"))
        self.detail_tabs.setTabText(2, self.tr("Result"))
        self.instances.setHeaderLabels(
            [
                self.tr("Series"),
                self.tr("Kind"),
                self.tr("Size"),
                self.tr("Received"),
                self.tr("From"),
            ]
        )
        self.outputs.setHeaderLabels([self.tr("Object"), self.tr("State"), self.tr("Sent")])
        self.model.headerDataChanged.emit(Qt.Orientation.Horizontal, RECEIVED, REASON)
        if self._sized:
            self._fit_columns()  # the headers' new words
        self._show_detail()
        self._load_timeline()

    def _fit_columns(self) -> None:
        """Widths from the header words and the first rows' text, measured here in Python:
        ``resizeColumnsToContents`` asks the model for every role of every cell it
        measures and stalled the GUI thread for 25-90 ms."""
        header = self.table.horizontalHeader()
        cells = self.table.fontMetrics()
        titles = header.fontMetrics()
        icon = self.table.iconSize().width() if self.table.iconSize().isValid() else 16
        rows = min(self.model.rowCount(), 50)
        for column in range(REASON + 1):
            title = str(self.model.headerData(column, Qt.Orientation.Horizontal))
            width = titles.horizontalAdvance(title) + 28  # room for the sort arrow
            for number in range(rows):
                text = self.model.display_text(number, column)
                extra = icon + 6 if column == STATE else 0
                width = max(width, cells.horizontalAdvance(text) + 14 + extra)
            # a long reason wraps in its tooltip; the last column takes the remaining width
            header.resizeSection(column, min(width, 360) if column == REASON else width)

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
            self.model.set_received_since(midnight.timestamp())
        elif span:
            self.model.set_received_since(time.time() - float(span))
        else:
            self.model.set_received_since(None)

    # --- selection and detail ---
    def _model_changed(self, *_: Any) -> None:
        # fit the columns while the queue is short; later, leave the widths to the user
        if not self._sized or self.model.total() < 100:
            self._sized = True
            self._fit_columns()
        self._refill_if_new_names()

    def _refill_if_new_names(self) -> None:
        if len(self.model.algorithms()) != self.algorithm_filter.count() - 1 or len(
            self.model.senders()
        ) != (self.sender_filter.count() - 1):
            self._fill_algorithms()

    def _model_reset(self) -> None:
        """A filter changed (or many rows at once): keep the selected row selected."""
        if not self._sized and self.model.rowCount():
            self._model_changed()
        self._refill_if_new_names()
        current = self._current
        if current is not None and not self.select_key(current.key):
            self._current = None  # filtered out
            self._show_detail()

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
        row = rows[0].data(ROW_ROLE) if rows else None
        if row is not None and row == self._current:
            return  # selected again after a filter change: nothing new to show
        self._current = row
        self.message.clear()
        self._show_detail()
        self._load_timeline()

    @property
    def current_row(self) -> QueueRow | None:
        """The study or job selected (shown in the detail pane)."""
        return self._current

    def select_key(self, key: tuple[str, int]) -> bool:
        """Select the row of a job or study (as a person clicking it would)."""
        number = self.model.row_of(key)
        if number is None:
            return False
        self.table.selectRow(number)
        self.table.scrollTo(self.model.index(number, 0))
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
        self.resend_button.setEnabled(is_job and state == "delivered")
        choices = [a for a in self._algorithms() if r is None or a != r.algorithm]
        if [self.route_choice.itemData(i) for i in range(self.route_choice.count())] != choices:
            self.route_choice.clear()
            for name in choices:
                self.route_choice.addItem(name, name)
        can_route = r is not None and (is_job or state == "no_match") and bool(choices)
        self.route_choice.setEnabled(can_route)
        self.route_button.setEnabled(can_route)
        self.feedback.show_job(r.job_id if r is not None else None, state)
        self.current_changed.emit(r)

    def _load_timeline(self) -> None:
        r = self._current
        self._timeline_request += 1
        if r is None:
            self.instances.clear()
            self.outputs.clear()
            self._show_preview(self._timeline_request, None)
            return
        request = self._timeline_request
        self._reader.submit(
            lambda: timeline(self._db, study_id=r.study_id, job_id=r.job_id),
            on_done=lambda events: self._show_timeline(request, events),
        )
        self._reader.submit(
            lambda: (
                instances(self._db, r.study_id),
                outputs(self._db, r.job_id) if r.job_id is not None else [],
            ),
            on_done=lambda found: self._show_objects(request, *found),
        )

    def add_detail_widget(self, widget: QWidget) -> None:
        """Add a widget below the detail pane's buttons (it follows :attr:`current_changed`)."""
        self.detail_extras.addWidget(widget)

    def _show_objects(
        self, request: int, received: list[InstanceLine], results: list[OutputLine]
    ) -> None:
        if request != self._timeline_request:
            return
        self.instances.clear()
        for line in received:
            self.instances.addTopLevelItem(
                QTreeWidgetItem(
                    [
                        str(line.series),
                        sop_class_words(line.sop_class_uid),
                        f"{line.size / 1024:.0f} kB",
                        datetime.fromtimestamp(line.received_at).strftime("%H:%M:%S"),
                        line.calling_ae,
                    ]
                )
            )
        self.outputs.clear()
        for out in results:
            sent = (
                datetime.fromtimestamp(out.delivered_at).strftime("%Y-%m-%d %H:%M:%S")
                if out.delivered_at
                else out.last_error
            )
            item = QTreeWidgetItem([f"{out.kind}: {sop_class_words(out.sop_class_uid)}"])
            item.setText(1, self.tr("sent") if out.state == "delivered" else self.tr("to send"))
            item.setText(2, sent)
            self.outputs.addTopLevelItem(item)
        for tree in (self.instances, self.outputs):
            for column in range(tree.columnCount() - 1):
                tree.resizeColumnToContents(column)
        images = [o for o in results if o.kind not in ("sr",) and self._data_dir is not None]
        images.sort(key=lambda o: o.kind != "sc")  # the secondary capture first
        if not images or self._data_dir is None:
            self._show_preview(request, None)
            return
        path = self._data_dir / images[0].path
        if self._preview_of != path:  # the same image again (a refresh): keep it shown
            self.preview_image = None
            self.preview.setText(self.tr("Loading the preview…"))
        self._preview_of = path
        self._actions.submit(
            preview_pixels,
            path,
            on_done=lambda pixels: self._show_preview(request, pixels),
            on_error=lambda exc: self._show_preview(request, None, str(exc)),
        )

    def _show_preview(self, request: int, pixels: PreviewPixels | None, error: str = "") -> None:
        if request != self._timeline_request:
            return
        if pixels is None:
            self._preview_of = None
            self.preview.setPixmap(QPixmap())
            self.preview.setText(
                self.tr("No preview: %1").replace("%1", error)
                if error
                else self.tr("No result image.")
            )
            self.preview_image = None
            return
        fmt = (
            QImage.Format.Format_Grayscale8 if pixels.channels == 1 else QImage.Format.Format_RGB888
        )
        image = QImage(
            pixels.data, pixels.width, pixels.height, pixels.width * pixels.channels, fmt
        ).copy()  # owns its bytes
        self.preview_image = image
        self.preview.setPixmap(
            QPixmap.fromImage(image).scaled(
                self.preview.size(),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
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

    def resend(self) -> None:
        r = self._current
        if r is None or r.job_id is None or self._data_dir is None:
            return
        job_id, data_dir = r.job_id, self._data_dir
        self._run(
            lambda: jobs.resend_results(self._db, data_dir, job_id, actor=actor()),
            lambda count: (
                self.tr("%1 result object(s) of job %2 will be sent to the PACS again.")
                .replace("%1", str(count))
                .replace("%2", str(job_id))
            ),
        )

    def route_to(self, algorithm: str) -> None:
        r = self._current
        if r is None or not algorithm:
            return
        study_id = r.study_id
        self._run(
            lambda: jobs.route_to_algorithm(self._db, study_id, algorithm, actor=actor()),
            lambda job_id: (
                self.tr("Study %1 goes to %2 as job %3.")
                .replace("%1", str(study_id))
                .replace("%2", algorithm)
                .replace("%3", str(job_id))
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
