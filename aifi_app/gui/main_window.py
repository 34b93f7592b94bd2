"""The main window: queue, audit log and nodes, a language menu, and close-to-tray."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QMenu, QTabWidget

from aifi_app.gui.audit_screen import AuditScreen
from aifi_app.gui.background import Background
from aifi_app.gui.dashboard_screen import DashboardScreen
from aifi_app.gui.nodes_screen import NodesScreen
from aifi_app.gui.queue_feed import QueueFeed
from aifi_app.gui.queue_model import QueueTableModel
from aifi_app.gui.queue_screen import QueueScreen
from aifi_app.gui.translations import LANGUAGES, Translations
from aifi_app.gui.tray import Health, StatusTray
from aifi_app.service import Appliance
from aifi_app.store.queue_view import QueueRow


class MainWindow(QMainWindow):
    """Runs with a started :class:`Appliance`; :meth:`shut_down` stops the threads it uses."""

    def __init__(self, appliance: Appliance, translations: Translations) -> None:
        super().__init__()
        self.appliance = appliance
        self.translations = translations
        self.reader = Background("aifi-gui-reader", workers=1)
        self.work = Background("aifi-gui-actions", workers=2)
        self.quitting = False
        self._rows: list[QueueRow] = []

        self.queue_model = QueueTableModel(self)
        self.feed = QueueFeed(appliance.db, self.reader, parent=self)
        self.queue = QueueScreen(
            appliance.db, self.queue_model, self.reader, self.work, self.feed.refresh
        )
        self.audit = AuditScreen(appliance.db, self.reader, self.work)
        self.nodes = NodesScreen(appliance.settings, appliance.node.port, self.work)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.queue, "")
        self.tabs.addTab(self.audit, "")
        self.tabs.addTab(self.nodes, "")
        self.dashboard = DashboardScreen(appliance.db, self.work)
        self.tabs.addTab(self.dashboard, "")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setCentralWidget(self.tabs)
        self.counts = QLabel()
        self.statusBar().addPermanentWidget(self.counts)

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
        self.menuBar().addMenu(self.file_menu)
        self.menuBar().addMenu(self.view_menu)

        self.tray_menu = QMenu(self)
        self.show_action = QAction(self)
        self.show_action.triggered.connect(self.bring_back)
        self.tray_menu.addAction(self.show_action)
        self.tray_menu.addAction(self.quit_action)
        self.tray = StatusTray(self.tray_menu, self)
        self.tray.icon.activated.connect(lambda _reason: self.bring_back())

        self.feed.rows_ready.connect(self._rows_ready)
        self.retranslate()
        self.resize(1200, 760)
        self.tray.show()
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
        self.tabs.setTabText(self.tabs.indexOf(self.dashboard), self.tr("Dashboard"))
        self.file_menu.setTitle(self.tr("&File"))
        self.export_action.setText(self.tr("Export audit log…"))
        self.quit_action.setText(self.tr("&Quit (stops receiving studies)"))
        self.view_menu.setTitle(self.tr("&View"))
        self.language_menu.setTitle(self.tr("Language"))
        self.close_to_tray_action.setText(self.tr("Keep running in the tray when closed"))
        self.show_action.setText(self.tr("Show the window"))
        self.tray.set_health(self.tray.health)
        self._show_counts()

    # --- queue updates ---
    def _rows_ready(self, rows: list[QueueRow]) -> None:
        self._rows = rows
        self.queue_model.apply(rows)
        self.tray.update(rows)
        self.setWindowIcon(self.tray.window_icon())
        self._show_counts()
        if self.tabs.currentWidget() is self.audit:
            self._audit_timer.start()

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.audit:
            self.audit.reload()
        if self.tabs.widget(index) is self.dashboard and self.dashboard.figures is None:
            self.dashboard.reload()

    def _show_counts(self) -> None:
        jobs = [r for r in self._rows if r.job_id is not None]
        busy = sum(
            r.state in ("queued", "pseudonymised", "submitted", "result_received") for r in jobs
        )
        failed = sum(r.state == "failed" for r in jobs)
        delivered = sum(r.state == "delivered" for r in jobs)
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
        self.reader.shutdown()
        self.work.shutdown()
        self.tray.hide()
