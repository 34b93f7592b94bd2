"""The main window: queue, audit log, nodes and algorithms, menus, roles, close-to-tray."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QTabWidget,
)

from aifi_app.admin_access import AdminSession, NoPassphraseError
from aifi_app.gui.algorithms_screen import AlgorithmsScreen
from aifi_app.gui.audit_screen import AuditScreen
from aifi_app.gui.background import Background
from aifi_app.gui.dashboard_screen import DashboardScreen
from aifi_app.gui.garbage import freeze_start_up_objects
from aifi_app.gui.nodes_screen import NodesScreen
from aifi_app.gui.queue_feed import QueueFeed
from aifi_app.gui.queue_model import QueueTableModel
from aifi_app.gui.queue_screen import QueueScreen
from aifi_app.gui.translations import LANGUAGES, Translations
from aifi_app.gui.tray import Health, StatusTray
from aifi_app.service import Appliance
from aifi_app.store.queue_view import QueueDelta, QueueSummary, summarise


class _ActivityWatch(QObject):
    """Any key press or mouse click in the application counts as use (for auto-lock)."""

    def __init__(self, admin: AdminSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._admin = admin

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.KeyPress, QEvent.Type.MouseButtonPress):
            self._admin.touch()
        return False


DISK_CHECK_MS = 30_000
"""How often the window reads the data volume's free space."""


class MainWindow(QMainWindow):
    """Runs with a started :class:`Appliance`; :meth:`shut_down` stops the threads it uses."""

    access_changed = Signal(bool)
    """True: the application manager unlocked configuration; False: locked again."""

    def __init__(
        self,
        appliance: Appliance,
        translations: Translations,
        admin: AdminSession | None = None,
        settings_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.appliance = appliance
        self.translations = translations
        self.admin = admin or AdminSession(appliance.db)
        self._unlocked = False
        self.reader = Background("aifi-gui-reader", workers=1)
        self.work = Background("aifi-gui-actions", workers=2)
        self.quitting = False
        self._summary: QueueSummary = summarise([])

        self.queue_model = QueueTableModel(self)
        self.feed = QueueFeed(appliance.db, self.reader, parent=self)
        self.queue = QueueScreen(
            appliance.db,
            self.queue_model,
            self.reader,
            self.work,
            self.feed.refresh,
            data_dir=appliance.data_dir,
            algorithms=lambda: sorted(appliance.catalog.enabled()),
        )
        self.audit = AuditScreen(appliance.db, self.reader, self.work)
        self.nodes = NodesScreen(appliance, settings_path, self.admin, self.work)
        self.access_changed.connect(self.nodes.set_unlocked)
        self.algorithms = AlgorithmsScreen(appliance, self.admin, self.work)
        self.access_changed.connect(self.algorithms.set_unlocked)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.queue, "")
        self.tabs.addTab(self.audit, "")
        self.tabs.addTab(self.nodes, "")
        self.tabs.addTab(self.algorithms, "")
        self.dashboard = DashboardScreen(appliance.db, self.work)
        self.tabs.addTab(self.dashboard, "")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setCentralWidget(self.tabs)
        self.counts = QLabel()
        self.statusBar().addPermanentWidget(self.counts)
        self.disk_label = QLabel()
        """Shown while the data volume is below its free-space floor (new studies refused)."""
        self.disk_label.setStyleSheet("color: white; background: #b00020; padding: 2px 6px;")
        self.disk_label.hide()
        self.statusBar().addWidget(self.disk_label)
        self._disk_timer = QTimer(self)
        self._disk_timer.setInterval(DISK_CHECK_MS)
        self._disk_timer.timeout.connect(self.check_disk)
        self._disk_timer.start()
        QTimer.singleShot(0, self.check_disk)

        self.file_menu = QMenu(self)
        self.export_action = QAction(self)
        self.export_action.triggered.connect(self.audit.ask_export)
        self.quit_action = QAction(self)
        self.quit_action.triggered.connect(self.quit)
        self.file_menu.addAction(self.export_action)
        self.file_menu.addSeparator()
        self.file_menu.addAction(self.quit_action)
        self.view_menu = QMenu(self)
        self.language_menu = QMenu(self)
        self.language_group = QActionGroup(self)
        self.language_actions: dict[str, QAction] = {}
        for code, name in LANGUAGES.items():
            action = QAction(name, self, checkable=True)
            action.setChecked(code == translations.language)
            action.triggered.connect(lambda _=False, c=code: self.set_language(c))
            self.language_group.addAction(action)
            self.language_menu.addAction(action)
            self.language_actions[code] = action
        self.view_menu.addMenu(self.language_menu)
        self.close_to_tray_action = QAction(self, checkable=True)
        self.close_to_tray_action.setChecked(True)
        self.view_menu.addAction(self.close_to_tray_action)
        self.admin_menu = QMenu(self)
        self.unlock_action = QAction(self)
        self.unlock_action.triggered.connect(self.ask_unlock)
        self.lock_action = QAction(self)
        self.lock_action.triggered.connect(self.lock)
        self.admin_menu.addAction(self.unlock_action)
        self.admin_menu.addAction(self.lock_action)
        self.menuBar().addMenu(self.file_menu)
        self.menuBar().addMenu(self.view_menu)
        self.menuBar().addMenu(self.admin_menu)
        self.role = QLabel()
        self.statusBar().addWidget(self.role)
        self._activity = _ActivityWatch(self.admin, self)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self._activity)
        self._idle_timer = QTimer(self)
        self._idle_timer.setInterval(5000)
        self._idle_timer.timeout.connect(self._check_idle)
        self._idle_timer.start()

        self.tray_menu = QMenu(self)
        self.show_action = QAction(self)
        self.show_action.triggered.connect(self.bring_back)
        self.tray_menu.addAction(self.show_action)
        self.tray_menu.addAction(self.quit_action)
        self.tray = StatusTray(self.tray_menu, self)
        self.tray.icon.activated.connect(lambda _reason: self.bring_back())

        self.feed.delta_ready.connect(self._delta_ready)
        self.retranslate()
        self.resize(1200, 760)
        self.tray.show()
        freeze_start_up_objects()
        self.feed.start()
        self._audit_timer = QTimer(self)
        self._audit_timer.setSingleShot(True)
        self._audit_timer.setInterval(300)
        self._audit_timer.timeout.connect(self.audit.reload)

    # --- language ---
    def set_language(self, code: str) -> None:
        self.translations.use(code)
        self.language_actions[self.translations.language].setChecked(True)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def retranslate(self) -> None:
        self.setWindowTitle(self.tr("AIFI Appliance"))
        self.tabs.setTabText(0, self.tr("Queue"))
        self.tabs.setTabText(1, self.tr("Audit log"))
        self.tabs.setTabText(2, self.tr("Nodes"))
        self.tabs.setTabText(3, self.tr("Algorithms"))
        self.tabs.setTabText(self.tabs.indexOf(self.dashboard), self.tr("Dashboard"))
        self.file_menu.setTitle(self.tr("&File"))
        self.export_action.setText(self.tr("Export audit log…"))
        self.quit_action.setText(self.tr("&Quit (stops receiving studies)"))
        self.view_menu.setTitle(self.tr("&View"))
        self.language_menu.setTitle(self.tr("Language"))
        self.close_to_tray_action.setText(self.tr("Keep running in the tray when closed"))
        self.show_action.setText(self.tr("Show the window"))
        self.admin_menu.setTitle(self.tr("&Administration"))
        self.unlock_action.setText(self.tr("Unlock configuration (application manager)…"))
        self.lock_action.setText(self.tr("Lock configuration"))
        self._show_access()
        self.tray.set_health(self.tray.health)
        self._show_counts()

    # --- roles ---
    @property
    def unlocked(self) -> bool:
        return self._unlocked

    def ask_unlock(self) -> None:
        passphrase, ok = QInputDialog.getText(
            self,
            self.tr("Unlock configuration"),
            self.tr("Administrator passphrase:"),
            QLineEdit.EchoMode.Password,
        )
        if ok and passphrase:
            self.unlock(passphrase)

    def unlock(self, passphrase: str) -> None:
        """Check the passphrase off the GUI thread (scrypt); the result shows when done."""
        from aifi_app.gui.queue_screen import actor

        who = actor()

        def done(ok: bool) -> None:
            if ok:
                self.statusBar().showMessage(self.tr("Configuration unlocked."), 5000)
            else:
                self.statusBar().showMessage(self.tr("Wrong passphrase."), 5000)
            self._set_unlocked(ok)

        def failed(exc: BaseException) -> None:
            if isinstance(exc, NoPassphraseError):
                text = self.tr(
                    "No administrator passphrase is set up: run 'aifi-app admin set-passphrase'."
                )
            else:
                text = self.tr("The passphrase could not be checked: %1").replace("%1", str(exc))
            self.statusBar().showMessage(text, 10_000)

        self.work.submit(self.admin.unlock, passphrase, who, on_done=done, on_error=failed)

    def lock(self) -> None:
        self._set_unlocked(False)
        self.work.submit(self.admin.lock)  # audited off the GUI thread

    def _check_idle(self) -> None:
        """Every 5 s: the core locks an idle session (and audits it) on a worker thread."""
        if not self._unlocked:
            return

        def done(still_unlocked: bool) -> None:
            if self._unlocked and not still_unlocked:
                self.statusBar().showMessage(
                    self.tr("Configuration locked after inactivity."), 10_000
                )
                self._set_unlocked(False)

        self.work.submit(self.admin.check_idle, on_done=done)

    def _set_unlocked(self, unlocked: bool) -> None:
        changed = unlocked != self._unlocked
        self._unlocked = unlocked
        self._show_access()
        if changed:
            self.access_changed.emit(unlocked)

    def _show_access(self) -> None:
        self.unlock_action.setEnabled(not self._unlocked)
        self.lock_action.setEnabled(self._unlocked)
        if self._unlocked:
            self.role.setText(
                self.tr("Application manager (%1)").replace("%1", self.admin.holder or "")
            )
        else:
            self.role.setText(self.tr("MBB'er (configuration locked)"))

    # --- queue updates ---
    def _delta_ready(self, delta: QueueDelta) -> None:
        self._summary = delta.summary
        self.queue_model.apply_delta(delta)
        self.tray.update_delta(delta)
        self.setWindowIcon(self.tray.window_icon())
        self._show_counts()
        if self.tabs.currentWidget() is self.audit:
            self._audit_timer.start()

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.audit:
            self.audit.reload()
        elif self.tabs.widget(index) is self.algorithms:
            current = self.queue.current_row
            self.algorithms.set_study(current.study_id if current else None)
            self.algorithms.reload()
        elif self.tabs.widget(index) is self.dashboard and self.dashboard.figures is None:
            self.dashboard.reload()

    def check_disk(self) -> None:
        """Read the data volume's free space off the GUI thread; warn below the floor."""
        self.reader.submit(self.appliance.disk_guard.shortfall, on_done=self._show_disk)

    def _show_disk(self, warning: str | None) -> None:
        if warning is None:
            self.disk_label.hide()
        else:
            self.disk_label.setText(
                self.tr("Disk space low: %1 (new studies are refused)").replace("%1", warning)
            )
            self.disk_label.show()
        if warning != self.tray.disk_warning:
            self.tray.set_disk_warning(warning)
            self.setWindowIcon(self.tray.window_icon())
            self._show_counts()

    def _show_counts(self) -> None:
        states = self._summary.job_states
        busy = sum(
            states.get(s, 0) for s in ("queued", "pseudonymised", "submitted", "result_received")
        )
        failed = states.get("failed", 0)
        delivered = states.get("delivered", 0)
        health = {
            Health.WELL: self.tr("all well"),
            Health.WARNINGS: self.tr("warnings"),
            Health.FAILURES: self.tr("failures"),
        }[self.tray.health]
        node = self.appliance.settings.node
        self.counts.setText(
            self.tr("%1 on port %2 · %3 busy · %4 delivered · %5 failed · %6")
            .replace("%1", node.ae_title)
            .replace("%2", str(self.appliance.node.port))
            .replace("%3", str(busy))
            .replace("%4", str(delivered))
            .replace("%5", str(failed))
            .replace("%6", health)
        )

    # --- closing ---
    def bring_back(self) -> None:
        self.showNormal()
        self.raise_()
        self.activateWindow()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.quitting and self.close_to_tray_action.isChecked() and self.tray.available():
            self.hide()
            event.ignore()
            return
        event.accept()

    def quit(self) -> None:
        """Close for good: the application (and with it the DICOM node) stops."""
        self.quitting = True
        self.close()
        app = QApplication.instance()
        if app is not None:
            app.quit()

    def shut_down(self) -> None:
        """Stop polling and the background threads (call before ``Appliance.stop``)."""
        self.feed.stop()
        self._audit_timer.stop()
        self._idle_timer.stop()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self._activity)
        self.reader.shutdown()
        self.work.shutdown()
        self.tray.hide()
