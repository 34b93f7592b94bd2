"""The algorithms screen: installed packages, the routing rules, and a rule test on a study.

Everybody sees the packages (vendor, version, model card, enabled) and the routing rules,
and can test the rules on a study in the queue (:mod:`aifi_app.pipeline.rule_check`).
Installing from a file, enabling, disabling and removing need the application manager's
unlock; they are the core's :mod:`aifi_app.algorithms.lifecycle` and
:mod:`aifi_app.store.algorithm_state` functions (audited), run off the GUI thread. The
running appliance takes the change on its worker's next pass (the catalog's generation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from aifi_app.admin_access import AdminSession
from aifi_app.algorithms import lifecycle
from aifi_app.config.settings import Route
from aifi_app.gui.background import Background
from aifi_app.pipeline.rule_check import RouteCheck, check_rules
from aifi_app.service import Appliance, trust_policy
from aifi_app.store import algorithm_state

ID, NAME, VENDOR, VERSION, STATE, SIGNED, SOURCE = range(7)


@dataclass(frozen=True)
class PackageLine:
    """One package as the screen shows it (read off the GUI thread)."""

    algorithm_id: str
    name: str
    vendor: str
    version: str
    enabled: bool
    error: str
    signed_by: str
    source: str
    model_card: str


def read_packages(appliance: Appliance) -> list[PackageLine]:
    """Worker thread: every package folder, with its model card's text."""
    lines = []
    for entry in appliance.catalog.scan():
        p = entry.package
        card = ""
        if p is not None:
            try:
                card = p.model_card.read_text(encoding="utf-8")
            except OSError as exc:
                card = f"(model card unreadable: {exc.strerror})"
        lines.append(
            PackageLine(
                algorithm_id=p.identity.algorithm_id if p else entry.root.name,
                name=p.identity.name if p else "",
                vendor=p.identity.vendor if p else "",
                version=p.identity.version if p else "",
                enabled=entry.enabled,
                error=entry.error,
                signed_by=(p.signed_by or "") if p else "",
                source=entry.source,
                model_card=card,
            )
        )
    return lines


def route_criteria(route: Route) -> str:
    """A route's criteria in short words (not translated: they are DICOM terms)."""
    parts = []
    if route.modalities:
        parts.append("modality " + "/".join(route.modalities))
    if route.body_parts:
        parts.append("body part " + "/".join(route.body_parts))
    if route.study_description:
        parts.append(f"study description ~ {route.study_description}")
    if route.series_description:
        parts.append(f"series description ~ {route.series_description}")
    if route.min_patient_age_years is not None or route.max_patient_age_years is not None:
        low = route.min_patient_age_years if route.min_patient_age_years is not None else ""
        high = route.max_patient_age_years if route.max_patient_age_years is not None else ""
        parts.append(f"age {low}-{high} y")
    if route.min_slice_thickness_mm is not None or route.max_slice_thickness_mm is not None:
        low = route.min_slice_thickness_mm if route.min_slice_thickness_mm is not None else ""
        high = route.max_slice_thickness_mm if route.max_slice_thickness_mm is not None else ""
        parts.append(f"slice thickness {low}-{high} mm")
    if route.convolution_kernels:
        parts.append("kernel " + "/".join(route.convolution_kernels))
    return "; ".join(parts) or "every study"


class AlgorithmsScreen(QWidget):
    def __init__(
        self,
        appliance: Appliance,
        admin: AdminSession,
        work: Background,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._appliance = appliance
        self._admin = admin
        self._work = work
        self._unlocked = False
        self._packages: list[PackageLine] = []
        self.ask_file: Callable[[], Path | None] = self._file_from_dialog
        """Asks for a package file (a dialog; tests put their own here)."""

        self.packages_box = QGroupBox()
        self.table = QTableWidget(0, SOURCE + 1)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.model_card = QTextBrowser()
        self.install_button = QPushButton()
        self.enable_button = QPushButton()
        self.disable_button = QPushButton()
        self.remove_button = QPushButton()
        self.install_button.clicked.connect(self.install)
        self.enable_button.clicked.connect(lambda: self.set_enabled(True))
        self.disable_button.clicked.connect(lambda: self.set_enabled(False))
        self.remove_button.clicked.connect(self.remove)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        for b in (
            self.install_button,
            self.enable_button,
            self.disable_button,
            self.remove_button,
        ):
            buttons.addWidget(b)
        buttons.addStretch(1)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.table)
        top.addWidget(self.model_card)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 1)
        top.setSizes([820, 360])
        packages_layout = QVBoxLayout(self.packages_box)
        packages_layout.addWidget(top, 1)
        packages_layout.addLayout(buttons)
        packages_layout.addWidget(self.message)

        self.routes_box = QGroupBox()
        self.routes = QTreeWidget()
        self.routes.setRootIsDecorated(False)
        self.routes.setColumnCount(3)
        self.study_label = QLabel()
        self.study = QSpinBox()
        self.study.setRange(1, 2_000_000_000)
        self.test_button = QPushButton()
        self.test_button.clicked.connect(lambda: self.test_rules(self.study.value()))
        self.verdicts = QTreeWidget()
        self.verdicts.setRootIsDecorated(False)
        self.verdicts.setColumnCount(3)
        self.verdict_message = QLabel()
        self.verdict_message.setWordWrap(True)
        test_bar = QHBoxLayout()
        test_bar.addWidget(self.study_label)
        test_bar.addWidget(self.study)
        test_bar.addWidget(self.test_button)
        test_bar.addStretch(1)
        routes_layout = QVBoxLayout(self.routes_box)
        routes_layout.addWidget(self.routes, 1)
        routes_layout.addLayout(test_bar)
        routes_layout.addWidget(self.verdicts, 1)
        routes_layout.addWidget(self.verdict_message)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.packages_box)
        splitter.addWidget(self.routes_box)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.retranslate()
        self._fill_routes()
        self._enable()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def retranslate(self) -> None:
        self.packages_box.setTitle(self.tr("Algorithm packages"))
        self.table.setHorizontalHeaderLabels(
            [
                self.tr("Id"),
                self.tr("Name"),
                self.tr("Vendor"),
                self.tr("Version"),
                self.tr("State"),
                self.tr("Signed by"),
                self.tr("Source"),
            ]
        )
        self.install_button.setText(self.tr("Install from file…"))
        self.enable_button.setText(self.tr("Enable"))
        self.disable_button.setText(self.tr("Disable"))
        self.remove_button.setText(self.tr("Remove"))
        self.routes_box.setTitle(self.tr("Routing rules"))
        self.routes.setHeaderLabels([self.tr("Route"), self.tr("Algorithm"), self.tr("Criteria")])
        self.study_label.setText(self.tr("Study number in the queue:"))
        self.test_button.setText(self.tr("Test the rules on this study"))
        self.verdicts.setHeaderLabels([self.tr("Route"), self.tr("Would it run?"), self.tr("Why")])
        self._show_packages(self._packages)

    # --- roles ---
    def set_unlocked(self, unlocked: bool) -> None:
        self._unlocked = unlocked
        self._enable()

    def _selected(self) -> PackageLine | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self._packages):
            return None
        return self._packages[rows[0].row()]

    def _enable(self) -> None:
        p = self._selected()
        usable = p is not None and not p.error
        self.install_button.setEnabled(self._unlocked)
        self.enable_button.setEnabled(self._unlocked and usable and p is not None and not p.enabled)
        self.disable_button.setEnabled(self._unlocked and usable and p is not None and p.enabled)
        self.remove_button.setEnabled(self._unlocked and p is not None and p.source == "installed")

    # --- packages ---
    def reload(self) -> None:
        self._work.submit(read_packages, self._appliance, on_done=self._show_packages)

    def _show_packages(self, packages: list[PackageLine]) -> None:
        selected = self._selected()
        self._packages = packages
        self.table.setRowCount(len(packages))
        for row, p in enumerate(packages):
            if p.error:
                state = self.tr("unusable")
            else:
                state = self.tr("enabled") if p.enabled else self.tr("disabled")
            signed = p.signed_by or self.tr("unsigned")
            for col, value in enumerate(
                (p.algorithm_id, p.name, p.vendor, p.version, state, signed, p.source)
            ):
                item = QTableWidgetItem(value)
                if p.error:
                    item.setToolTip(p.error)
                self.table.setItem(row, col, item)
        ids = [p.algorithm_id for p in packages]
        if selected is not None and selected.algorithm_id in ids:
            self.table.selectRow(ids.index(selected.algorithm_id))
        elif packages:
            self.table.selectRow(0)
        self._selection_changed()

    def _selection_changed(self) -> None:
        p = self._selected()
        if p is None:
            self.model_card.clear()
        elif p.error:
            self.model_card.setPlainText(p.error)
        else:
            self.model_card.setMarkdown(p.model_card)
        self._enable()

    def _file_from_dialog(self) -> Path | None:
        name, _ = QFileDialog.getOpenFileName(
            self, self.tr("Install an algorithm package"), "", self.tr("Packages (*.zip)")
        )
        return Path(name) if name else None

    def install(self) -> None:
        source = self.ask_file()
        if source is None:
            return
        app = self._appliance

        def work() -> str:
            package, previous = lifecycle.install(
                source, app.data_dir, app.db, trust_policy(app.settings), actor=self._actor()
            )
            ident = package.identity
            return f"{ident.algorithm_id} {ident.version}" + (f" ({previous})" if previous else "")

        self._run(work, lambda what: self.tr("Installed: %1.").replace("%1", what))

    def set_enabled(self, enabled: bool) -> None:
        p = self._selected()
        if p is None:
            return
        app = self._appliance
        ident = p.algorithm_id

        def work() -> None:
            algorithm_state.set_enabled(app.db, ident, enabled, actor=self._actor())

        if enabled:
            self._run(work, lambda _: self.tr("%1 is enabled.").replace("%1", ident))
        else:
            self._run(work, lambda _: self.tr("%1 is disabled.").replace("%1", ident))

    def remove(self) -> None:
        p = self._selected()
        if p is None:
            return
        app = self._appliance
        ident = p.algorithm_id

        def work() -> None:
            lifecycle.remove(ident, app.data_dir, app.db, actor=self._actor())

        self._run(work, lambda _: self.tr("%1 is removed.").replace("%1", ident))

    def _actor(self) -> str:
        return self._admin.require()  # locked meanwhile: PermissionError, nothing changes

    def _run(self, work: Callable[[], Any], said: Callable[[Any], str]) -> None:
        self.message.setText(self.tr("Working…"))

        def done(result: Any) -> None:
            self.message.setText(said(result))
            self.reload()

        def failed(exc: BaseException) -> None:
            self.message.setText(self.tr("Not done: %1").replace("%1", str(exc)))
            self.reload()

        self._work.submit(work, on_done=done, on_error=failed)

    # --- routing rules ---
    def _fill_routes(self) -> None:
        self.routes.clear()
        for route in self._appliance.settings.routes:
            self.routes.addTopLevelItem(
                QTreeWidgetItem([route.name, route.algorithm, route_criteria(route)])
            )
        for column in range(2):
            self.routes.resizeColumnToContents(column)

    def set_study(self, study_id: int | None) -> None:
        """Offer this study for the rule test (the one selected in the queue)."""
        if study_id is not None:
            self.study.setValue(study_id)

    def test_rules(self, study_id: int) -> None:
        app = self._appliance
        self.verdicts.clear()
        self.verdict_message.setText(self.tr("Reading study %1…").replace("%1", str(study_id)))

        def work() -> list[RouteCheck]:
            return check_rules(
                app.db,
                app.data_dir,
                study_id,
                app.settings.routes,
                app.catalog.enabled(),
                app.catalog.known_ids(),
            )

        def done(checks: list[RouteCheck]) -> None:
            for c in checks:
                verdict = (
                    self.tr("yes: %1").replace("%1", c.algorithm) if c.chosen else self.tr("no")
                )
                self.verdicts.addTopLevelItem(QTreeWidgetItem([c.route, verdict, c.words]))
            for column in range(2):
                self.verdicts.resizeColumnToContents(column)
            chosen = [c.algorithm for c in checks if c.chosen]
            if chosen:
                text = self.tr("Study %1 would go to: %2.").replace("%2", ", ".join(chosen))
            elif checks:
                text = self.tr("Study %1 would get no algorithm.")
            else:
                text = self.tr("There are no routing rules.")
            self.verdict_message.setText(text.replace("%1", str(study_id)))

        def failed(exc: BaseException) -> None:
            reason = str(exc).strip("'\"")
            self.verdict_message.setText(self.tr("Cannot test: %1").replace("%1", reason))

        self._work.submit(work, on_done=done, on_error=failed)
