"""The nodes screen: the appliance's own DICOM node and the remote nodes, with a C-ECHO test.

Read-only for now: nodes are edited in the settings file (editing here is a later step).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from aifi_app.config.settings import NodeSettings, RemoteNode, Settings
from aifi_app.dicom_node.peers import dicom_peer
from aifi_app.dicom_node.storage_scu import AssociationFailed, echo
from aifi_app.gui.background import Background


@dataclass(frozen=True)
class EchoResult:
    status: int | None
    seconds: float
    error: str = ""


def run_echo(
    node: RemoteNode,
    calling_ae_title: str,
    timeout: float = 10.0,
    own: NodeSettings | None = None,
) -> EchoResult:
    """Worker thread: C-ECHO the node (over DICOM TLS when the node says so, with ``own``
    certificate); never raises for network trouble."""
    start = time.monotonic()
    try:
        status = echo(
            dicom_peer(node, own or NodeSettings()),
            calling_ae_title=calling_ae_title,
            timeout=timeout,
        )
    except (AssociationFailed, OSError) as exc:
        return EchoResult(None, time.monotonic() - start, str(exc))
    except (ValueError, RuntimeError) as exc:
        # pynetdicom: associated, but the peer accepted no Verification context
        return EchoResult(None, time.monotonic() - start, f"{type(exc).__name__}: {exc}")
    return EchoResult(status, time.monotonic() - start)


class NodesScreen(QWidget):
    def __init__(
        self,
        settings: Settings,
        listening_port: int,
        network: Background,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._settings = settings
        self._port = listening_port
        self._network = network
        self._results: dict[str, str] = {}

        self.local_box = QGroupBox()
        self.local_form = QFormLayout(self.local_box)
        self.remote_box = QGroupBox()
        self.table = QTableWidget(len(settings.remote_nodes), 6)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        for row, node in enumerate(settings.remote_nodes):
            values = (node.name, node.ae_title, node.host, str(node.port), node.role, "")
            for col, value in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(value))
        if settings.remote_nodes:
            self.table.selectRow(0)
        self.test_button = QPushButton()
        self.test_button.clicked.connect(self.test_selected)
        self.test_button.setEnabled(bool(settings.remote_nodes))
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel()
        self.note.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.test_button)
        buttons.addStretch(1)
        remote_layout = QVBoxLayout(self.remote_box)
        remote_layout.addWidget(self.table, 1)
        remote_layout.addLayout(buttons)
        remote_layout.addWidget(self.result)
        layout = QVBoxLayout(self)
        layout.addWidget(self.local_box)
        layout.addWidget(self.remote_box, 1)
        layout.addWidget(self.note)
        self.retranslate()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def retranslate(self) -> None:
        node = self._settings.node
        self.local_box.setTitle(self.tr("This appliance"))
        while self.local_form.rowCount():
            self.local_form.removeRow(0)
        allowed = ", ".join(node.allowed_calling_ae_titles) or self.tr("(none besides the nodes)")
        pacs = self._settings.delivery.pacs or self.tr("(none: results wait)")
        for label, value in (
            (self.tr("AE title"), node.ae_title),
            (self.tr("Listening on"), f"{node.bind_address}:{self._port}"),
            (self.tr("Allowed senders"), allowed),
            (self.tr("Results go to"), pacs),
        ):
            self.local_form.addRow(label, QLabel(value))
        self.remote_box.setTitle(self.tr("Remote nodes"))
        self.table.setHorizontalHeaderLabels(
            [
                self.tr("Name"),
                self.tr("AE title"),
                self.tr("Host"),
                self.tr("Port"),
                self.tr("Role"),
                self.tr("Last test"),
            ]
        )
        self.test_button.setText(self.tr("Test connection (C-ECHO)"))
        self.note.setText(
            self.tr(
                "Nodes are changed in the settings file for now; editing them here comes later."
            )
        )
        if not self._settings.remote_nodes:
            self.result.setText(self.tr("No remote nodes in the settings file."))

    def test_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        row = rows[0].row()
        node = self._settings.remote_nodes[row]
        self.test_button.setEnabled(False)
        self.result.setText(
            self.tr("Testing %1 (%2@%3:%4)…")
            .replace("%1", node.name)
            .replace("%2", node.ae_title)
            .replace("%3", node.host)
            .replace("%4", str(node.port))
        )
        calling = self._settings.delivery.calling_ae_title or self._settings.node.ae_title
        self._network.submit(
            run_echo,
            node,
            calling,
            10.0,
            self._settings.node,
            on_done=lambda r: self._show_result(row, node, r),
        )

    def _show_result(self, row: int, node: RemoteNode, r: EchoResult) -> None:
        self.test_button.setEnabled(True)
        ms = str(round(r.seconds * 1000))
        if r.status == 0:
            text = (
                self.tr("Connection OK: %1 answered the C-ECHO in %2 ms.")
                .replace("%1", node.name)
                .replace("%2", ms)
            )
            short = self.tr("OK")
        elif r.status is not None:
            text = (
                self.tr("%1 answered, but with status 0x%2 instead of success.")
                .replace("%1", node.name)
                .replace("%2", f"{r.status:04X}")
            )
            short = self.tr("answered with an error")
        else:
            text = (
                self.tr("No connection with %1: %2").replace("%1", node.name).replace("%2", r.error)
            )
            short = self.tr("no connection")
        stamp = time.strftime("%H:%M:%S")
        self.table.setItem(row, 5, QTableWidgetItem(f"{short} ({stamp})"))
        self.result.setText(text)
