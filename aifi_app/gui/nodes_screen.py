"""The nodes screen: the appliance's own DICOM node and the remote nodes.

Everybody can test a connection (C-ECHO, DICOMweb, HTTP or MLLP: :mod:`aifi_app.node_check`,
off the GUI thread). Adding, editing and deleting remote nodes needs the application
manager's unlock; the change is written to the settings file by the core
(:mod:`aifi_app.config.editing`: validated, audited) and the running appliance takes the
new nodes at once (its dispatcher reads ``appliance.settings`` on every use).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from aifi_app.admin_access import AdminSession
from aifi_app.config import editing
from aifi_app.config.loading import NODE_PROTOCOLS, NODE_ROLES
from aifi_app.config.settings import RemoteNode, Settings
from aifi_app.gui.background import Background
from aifi_app.node_check import CheckResult, check_node
from aifi_app.service import Appliance
from aifi_app.store.database import Database

NAME, PROTOCOL, AE_TITLE, HOST, PORT, URL, ROLE, LAST_TEST = range(8)


class NodeDialog(QDialog):
    """Add or edit one remote node; the fields a protocol does not use are disabled."""

    def __init__(self, node: RemoteNode | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Remote node"))
        self.name = QLineEdit(node.name if node else "")
        self.protocol = QComboBox()
        for protocol in NODE_PROTOCOLS:
            self.protocol.addItem(protocol, protocol)
        self.role = QComboBox()
        for role, words in zip(
            NODE_ROLES, (self.tr("PACS"), self.tr("AI vendor"), self.tr("RIS")), strict=True
        ):
            self.role.addItem(words, role)
        self.ae_title = QLineEdit(node.ae_title if node else "")
        self.ae_title.setMaxLength(16)
        self.host = QLineEdit(node.host if node else "")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(node.port if node and node.port else 104)
        self.url = QLineEdit(node.url if node else "")
        self.url.setPlaceholderText("https://…")
        if node is not None:
            self.protocol.setCurrentIndex(max(0, self.protocol.findData(node.protocol)))
            self.role.setCurrentIndex(max(0, self.role.findData(node.role)))
        form = QFormLayout(self)
        form.addRow(self.tr("Name"), self.name)
        form.addRow(self.tr("Role"), self.role)
        form.addRow(self.tr("Protocol"), self.protocol)
        form.addRow(self.tr("AE title"), self.ae_title)
        form.addRow(self.tr("Host"), self.host)
        form.addRow(self.tr("Port"), self.port)
        form.addRow(self.tr("URL"), self.url)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.protocol.currentIndexChanged.connect(lambda _: self._fields_for_protocol())
        self._fields_for_protocol()

    def _fields_for_protocol(self) -> None:
        protocol = str(self.protocol.currentData())
        self.ae_title.setEnabled(protocol == "dicom")
        self.host.setEnabled(protocol in ("dicom", "mllp"))
        self.port.setEnabled(protocol in ("dicom", "mllp"))
        self.url.setEnabled(protocol in ("dicomweb", "http"))

    def node(self) -> RemoteNode:
        protocol = str(self.protocol.currentData())
        by_host = protocol in ("dicom", "mllp")
        return RemoteNode(
            name=self.name.text().strip(),
            ae_title=self.ae_title.text().strip() if protocol == "dicom" else "",
            host=self.host.text().strip() if by_host else "",
            port=self.port.value() if by_host else 0,
            role=str(self.role.currentData()),
            protocol=protocol,
            url=self.url.text().strip() if not by_host else "",
        )


class NodesScreen(QWidget):
    def __init__(
        self,
        appliance: Appliance,
        settings_path: Path | None,
        admin: AdminSession,
        network: Background,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._appliance = appliance
        self._path = settings_path
        self._admin = admin
        self._network = network
        self._unlocked = False
        self._results: dict[str, str] = {}
        self.ask_node: Callable[[RemoteNode | None], RemoteNode | None] = self._node_from_dialog
        """Asks for a node (a dialog; tests put their own here)."""
        self.confirm_delete: Callable[[str], bool] = self._confirm_delete

        self.local_box = QGroupBox()
        self.local_form = QFormLayout(self.local_box)
        self.remote_box = QGroupBox()
        self.table = QTableWidget(0, LAST_TEST + 1)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.test_button = QPushButton()
        self.test_button.clicked.connect(self.test_selected)
        self.add_button = QPushButton()
        self.add_button.clicked.connect(self.add_node)
        self.edit_button = QPushButton()
        self.edit_button.clicked.connect(self.edit_selected)
        self.delete_button = QPushButton()
        self.delete_button.clicked.connect(self.delete_selected)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel()
        self.note.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.test_button, self.add_button, self.edit_button, self.delete_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        remote_layout = QVBoxLayout(self.remote_box)
        remote_layout.addWidget(self.table, 1)
        remote_layout.addLayout(buttons)
        remote_layout.addWidget(self.result)
        layout = QVBoxLayout(self)
        layout.addWidget(self.local_box)
        layout.addWidget(self.remote_box, 1)
        layout.addWidget(self.note)
        self._fill_table()
        self.table.itemSelectionChanged.connect(self._enable)
        self.retranslate()

    @property
    def _settings(self) -> Settings:
        return self._appliance.settings

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def set_unlocked(self, unlocked: bool) -> None:
        """The application manager unlocked (or locked) configuration."""
        self._unlocked = unlocked
        self._enable()
        self._show_note()

    def _enable(self) -> None:
        editable = self._unlocked and self._path is not None
        selected = bool(self.table.selectionModel().selectedRows())
        self.test_button.setEnabled(selected)
        self.add_button.setEnabled(editable)
        self.edit_button.setEnabled(editable and selected)
        self.delete_button.setEnabled(editable and selected)

    def _fill_table(self) -> None:
        nodes = self._settings.remote_nodes
        selected = self._selected_node()
        self.table.setRowCount(len(nodes))
        for row, node in enumerate(nodes):
            values = (
                node.name,
                node.protocol,
                node.ae_title,
                node.host,
                str(node.port) if node.port else "",
                node.url,
                node.role,
                self._results.get(node.name, ""),
            )
            for col, value in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(value))
        names = [n.name for n in nodes]
        if nodes:
            self.table.selectRow(names.index(selected.name) if selected in nodes else 0)
        self._enable()

    def _selected_node(self) -> RemoteNode | None:
        rows = self.table.selectionModel().selectedRows()
        nodes = self._settings.remote_nodes
        if not rows or rows[0].row() >= len(nodes):
            return None
        return nodes[rows[0].row()]

    def retranslate(self) -> None:
        node = self._settings.node
        self.local_box.setTitle(self.tr("This appliance"))
        while self.local_form.rowCount():
            self.local_form.removeRow(0)
        allowed = ", ".join(node.allowed_calling_ae_titles) or self.tr("(none besides the nodes)")
        pacs = self._settings.delivery.pacs or self.tr("(none: results wait)")
        for label, value in (
            (self.tr("AE title"), node.ae_title),
            (self.tr("Listening on"), f"{node.bind_address}:{self._appliance.node.port}"),
            (self.tr("Allowed senders"), allowed),
            (self.tr("Results go to"), pacs),
        ):
            self.local_form.addRow(label, QLabel(value))
        self.remote_box.setTitle(self.tr("Remote nodes"))
        self.table.setHorizontalHeaderLabels(
            [
                self.tr("Name"),
                self.tr("Protocol"),
                self.tr("AE title"),
                self.tr("Host"),
                self.tr("Port"),
                self.tr("URL"),
                self.tr("Role"),
                self.tr("Last test"),
            ]
        )
        self.test_button.setText(self.tr("Test connection"))
        self.add_button.setText(self.tr("Add…"))
        self.edit_button.setText(self.tr("Edit…"))
        self.delete_button.setText(self.tr("Delete"))
        self._show_note()
        if not self._settings.remote_nodes:
            self.result.setText(self.tr("No remote nodes in the settings file."))

    def _show_note(self) -> None:
        if self._path is None:
            text = self.tr(
                "Started without a settings file (--config): nodes cannot be changed here."
            )
        elif not self._unlocked:
            text = self.tr(
                "Adding, changing and deleting nodes needs the application manager:"
                " Administration > Unlock configuration."
            )
        else:
            text = self.tr("Changes are written to %1 and used at once.").replace(
                "%1", str(self._path)
            )
        self.note.setText(text)

    # --- testing ---
    def test_selected(self) -> None:
        node = self._selected_node()
        if node is None:
            return
        self.test_button.setEnabled(False)
        where = (
            node.url
            if node.protocol in ("dicomweb", "http")
            else (f"{node.ae_title}@" if node.protocol == "dicom" else "")
            + f"{node.host}:{node.port}"
        )
        self.result.setText(
            self.tr("Testing %1 (%2, %3)…")
            .replace("%1", node.name)
            .replace("%2", node.protocol)
            .replace("%3", where)
        )
        calling = self._settings.delivery.calling_ae_title or self._settings.node.ae_title
        self._network.submit(
            check_node,
            node,
            calling,
            10.0,
            self._settings.node,
            on_done=lambda r: self._tested(node, r),
        )

    def _tested(self, node: RemoteNode, r: CheckResult) -> None:
        ms = str(round(r.seconds * 1000))
        if r.ok:
            text = self.tr("Connection OK: %1 (%2 ms).").replace("%1", r.words).replace("%2", ms)
            short = self.tr("OK")
        else:
            text = self.tr("No connection with %1: %2").replace("%1", node.name)
            text = text.replace("%2", r.words)
            short = self.tr("no connection")
        self._results[node.name] = f"{short} ({time.strftime('%H:%M:%S')})"
        self.result.setText(text)
        self._fill_table()

    # --- editing (application manager) ---
    def _node_from_dialog(self, node: RemoteNode | None) -> RemoteNode | None:
        dialog = NodeDialog(node, self)
        return dialog.node() if dialog.exec() == QDialog.DialogCode.Accepted else None

    def _confirm_delete(self, name: str) -> bool:
        answer = QMessageBox.question(
            self,
            self.tr("Delete node"),
            self.tr("Delete the remote node %1 from the settings?").replace("%1", name),
        )
        return answer == QMessageBox.StandardButton.Yes

    def add_node(self) -> None:
        node = self.ask_node(None)
        if node is not None:
            self._change(lambda path, actor: editing.add_node(path, node, db=self._db, actor=actor))

    def edit_selected(self) -> None:
        old = self._selected_node()
        node = self.ask_node(old) if old is not None else None
        if old is not None and node is not None:
            name = old.name
            self._change(
                lambda path, actor: editing.edit_node(path, name, node, db=self._db, actor=actor)
            )

    def delete_selected(self) -> None:
        old = self._selected_node()
        if old is not None and self.confirm_delete(old.name):
            name = old.name
            self._change(
                lambda path, actor: editing.delete_node(path, name, db=self._db, actor=actor)
            )

    @property
    def _db(self) -> Database:
        return self._appliance.db

    def _change(self, write: Callable[[Path, str], Settings]) -> None:
        path = self._path
        if path is None:
            return
        self.result.setText(self.tr("Saving…"))

        def work() -> Settings:
            return write(path, self._admin.require())  # locked meanwhile: PermissionError

        def done(written: Settings) -> None:
            # the running appliance takes the file's nodes; the rest stays as started
            self._appliance.settings = dataclasses.replace(
                self._appliance.settings, remote_nodes=written.remote_nodes
            )
            self._fill_table()
            self.result.setText(self.tr("Saved; the appliance uses the new nodes now."))

        def failed(exc: BaseException) -> None:
            self.result.setText(self.tr("Not saved: %1").replace("%1", str(exc)))

        self._network.submit(work, on_done=done, on_error=failed)
