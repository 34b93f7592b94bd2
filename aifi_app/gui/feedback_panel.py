"""The verdict on a job's result, in the queue's detail pane: agree, disagree (false
positive or missed finding) or unsure, with an optional comment and who gave it.

Reading and recording run on worker threads (:mod:`aifi_app.store.feedback`); ``who``
is the operating-system user unless initials are typed. No patient data is asked for.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import QEvent, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from aifi_app.gui.background import Background
from aifi_app.store import feedback
from aifi_app.store.database import Database
from aifi_app.store.feedback import Feedback, Verdict

JUDGEABLE_STATES = frozenset({"result_received", "delivered"})


class FeedbackPanel(QGroupBox):
    recorded = Signal(int)
    """A verdict on this job id was stored."""
    shown = Signal()
    """The current job's verdict (or its absence) is shown."""

    def __init__(
        self, db: Database, reader: Background, actions: Background, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._db = db
        self._reader = reader
        self._actions = actions
        self._job_id: int | None = None
        self._request = 0
        self._latest: Feedback | None = None
        self.buttons: dict[Verdict, QPushButton] = {}
        row = QHBoxLayout()
        for verdict in Verdict:
            button = QPushButton()
            button.clicked.connect(lambda _=False, v=verdict: self.give(v))
            self.buttons[verdict] = button
            row.addWidget(button)
        row.addStretch(1)
        self.comment = QLineEdit()
        self.comment.setMaxLength(feedback.MAX_COMMENT)
        self.who = QLineEdit()
        self.who.setMaxLength(32)
        self.who.setMaximumWidth(120)
        self.who.setText(feedback.current_user())
        fields = QHBoxLayout()
        fields.addWidget(self.comment, 1)
        fields.addWidget(self.who)
        self.state = QLabel()
        self.state.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(fields)
        layout.addWidget(self.state)
        self.retranslate()
        self.show_job(None, "")

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def verdict_name(self, verdict: Verdict) -> str:
        return {
            Verdict.AGREE: self.tr("Agree"),
            Verdict.FALSE_POSITIVE: self.tr("Disagree: false positive"),
            Verdict.MISSED: self.tr("Disagree: missed finding"),
            Verdict.UNSURE: self.tr("Unsure"),
        }[verdict]

    def retranslate(self) -> None:
        self.setTitle(self.tr("Your verdict on the result"))
        for verdict, button in self.buttons.items():
            button.setText(self.verdict_name(verdict))
        self.comment.setPlaceholderText(self.tr("Comment (optional; no patient data)"))
        self.who.setPlaceholderText(self.tr("Initials"))
        self._show_state()

    def show_job(self, job_id: int | None, state: str) -> None:
        """Show the verdict of this job (None: no job selected); judgeable when it has a
        result."""
        judgeable = job_id is not None and state in JUDGEABLE_STATES
        for button in self.buttons.values():
            button.setEnabled(judgeable)
        self.comment.setEnabled(judgeable)
        if job_id == self._job_id:
            return
        self._job_id = job_id
        self._latest = None
        self.comment.clear()
        self._request += 1
        self._show_state()
        if job_id is None:
            return
        request = self._request
        self._reader.submit(
            feedback.latest,
            self._db,
            job_id,
            on_done=lambda found: self._loaded(request, found),
        )

    def _loaded(self, request: int, found: Feedback | None) -> None:
        if request != self._request:
            return
        self._latest = found
        self._show_state()
        self.shown.emit()

    def _show_state(self) -> None:
        if self._job_id is None:
            self.state.setText("")
            return
        if self._latest is None:
            self.state.setText(self.tr("No verdict yet."))
            return
        at = datetime.fromtimestamp(self._latest.at).strftime("%Y-%m-%d %H:%M")
        self.state.setText(
            self.tr("Last verdict: %1 (%2, %3)")
            .replace("%1", self.verdict_name(self._latest.verdict))
            .replace("%2", self._latest.who)
            .replace("%3", at)
        )

    def give(self, verdict: Verdict) -> None:
        """Record ``verdict`` on the shown job (on a worker thread)."""
        job_id = self._job_id
        if job_id is None:
            return
        who = self.who.text().strip() or feedback.current_user()
        comment = self.comment.text()
        request = self._request

        def done(found: Feedback) -> None:
            if request == self._request:
                self._latest = found
                self.comment.clear()
                self._show_state()
            self.recorded.emit(found.job_id)

        def failed(exc: BaseException) -> None:
            self.state.setText(self.tr("Not recorded: %1").replace("%1", str(exc)))

        self._actions.submit(
            feedback.record, self._db, job_id, verdict, who, comment, on_done=done, on_error=failed
        )
