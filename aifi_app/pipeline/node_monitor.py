"""The node monitor thread: tests each DICOM remote node with C-ECHO at an interval, so that
a node's availability is known even when no study is sent to it.

Every test is a check in ``node_checks`` (:mod:`aifi_app.store.node_checks`); the audit log
gets an event only when a node's state changes (first test, unreachable, reachable again),
so a quiet appliance does not fill its audit log. ``delivery.node_check_seconds`` sets the
interval (0: off); the first round runs one interval after the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aifi_app.config.settings import NodeSettings, RemoteNode, Settings
from aifi_app.dicom_node.peers import dicom_peer
from aifi_app.dicom_node.storage_scu import AssociationFailed, echo
from aifi_app.pipeline.background_loop import BackgroundLoop
from aifi_app.store import audit, node_checks
from aifi_app.store.database import Database, now

log = logging.getLogger(__name__)


def check_node(
    db: Database,
    node: RemoteNode,
    calling_ae_title: str,
    timeout: float,
    own: NodeSettings | None = None,
) -> bool:
    """C-ECHO one node (over DICOM TLS where the node says so) and record the check; True
    when it answered success."""
    try:
        peer = dicom_peer(node, own or NodeSettings())
        status = echo(peer, calling_ae_title=calling_ae_title, timeout=timeout)
    except (AssociationFailed, OSError) as exc:
        ok, detail = False, str(exc)
    else:
        ok, detail = status == 0, f"C-ECHO status 0x{status:04X}"
    before = node_checks.last_before(db, node.name, float("inf"))
    node_checks.record(db, node.name, node_checks.ECHO, ok, detail)
    if before is None or before.ok != ok:
        with db.transaction() as conn:
            audit.record(
                conn,
                "node",
                "node_reachable" if ok else "node_unreachable",
                detail=f"{node.name}: {detail}",
            )
    return ok


class NodeMonitor(BackgroundLoop):
    thread_name = "aifi-node-monitor"

    def __init__(self, db: Database, settings: Callable[[], Settings]) -> None:
        super().__init__()
        self.db = db
        self._settings = settings
        self._next_at = now() + settings().delivery.node_check_seconds

    def idle_wait(self) -> float:
        interval = self._settings().delivery.node_check_seconds
        if interval <= 0:
            return 60.0  # off: look again whether the settings changed
        return max(0.0, min(60.0, self._next_at - now()))

    def run_once(self) -> bool:
        settings = self._settings()
        interval = settings.delivery.node_check_seconds
        if interval <= 0 or now() < self._next_at:
            return False
        self._next_at = now() + interval
        calling = settings.delivery.calling_ae_title or settings.node.ae_title
        for node in settings.remote_nodes:
            if self.stopping:
                break
            if node.protocol == "dicom":
                timeout = min(10.0, settings.delivery.timeout_seconds)
                check_node(self.db, node, calling, timeout, settings.node)
        return False
