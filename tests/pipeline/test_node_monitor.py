"""The node monitor: C-ECHO of each DICOM remote node, one check each, audit on change."""

from __future__ import annotations

from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from aifi_app.config.settings import DeliverySettings, RemoteNode, Settings, StorageSettings
from aifi_app.pipeline.node_monitor import NodeMonitor, check_node
from aifi_app.store import node_checks
from aifi_app.store.database import Database
from tests.helpers.ports import free_port


@pytest.fixture
def scp_port():  # type: ignore[no-untyped-def]
    ae = AE(ae_title="ECHOSCP")
    ae.add_supported_context(Verification)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    yield port
    server.shutdown()


def _events(db: Database) -> list[tuple[str, str]]:
    return [
        (r["event"], r["detail"].split(":")[0])
        for r in db.query("SELECT event, detail FROM audit_events WHERE category = 'node'")
    ]


def test_checks_each_dicom_node_and_audits_only_changes(tmp_path: Path, scp_port: int) -> None:
    db = Database(tmp_path / "q.db")
    dead = free_port()
    settings = Settings(
        remote_nodes=(
            RemoteNode("pacs", "ECHOSCP", "127.0.0.1", scp_port),
            RemoteNode("gone", "GONE", "127.0.0.1", dead),
            RemoteNode("web", protocol="dicomweb", url="https://vendor.invalid/dicom-web"),
        ),
        delivery=DeliverySettings(node_check_seconds=60),
        storage=StorageSettings(data_dir=str(tmp_path)),
    )
    monitor = NodeMonitor(db, lambda: settings)
    assert not monitor.run_once()  # the first round waits one interval
    assert node_checks.between(db, 0, 1e12) == []
    monitor._next_at = 0.0
    monitor.run_once()
    monitor._next_at = 0.0
    monitor.run_once()
    checks = node_checks.between(db, 0, 1e12)
    assert [(c.node, c.kind, c.ok) for c in checks] == [
        ("pacs", "echo", True),
        ("gone", "echo", False),
        ("pacs", "echo", True),
        ("gone", "echo", False),
    ]
    assert checks[0].detail == "C-ECHO status 0x0000"
    assert "Connection refused" in checks[1].detail
    # two rounds, but one audit event per node: its first state
    assert _events(db) == [("node_reachable", "pacs"), ("node_unreachable", "gone")]
    assert 0 < monitor.idle_wait() <= 60
    # the node comes up: one more event
    ae = AE(ae_title="GONE")
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", dead), block=False)
    try:
        assert check_node(db, settings.remote_nodes[1], "AIFI", 5.0)
    finally:
        server.shutdown()
    assert _events(db)[-1] == ("node_reachable", "gone")
    db.close()


def test_off_when_the_interval_is_zero(tmp_path: Path) -> None:
    db = Database(tmp_path / "q.db")
    settings = Settings(
        remote_nodes=(RemoteNode("gone", "GONE", "127.0.0.1", free_port()),),
        delivery=DeliverySettings(node_check_seconds=0),
    )
    monitor = NodeMonitor(db, lambda: settings)
    monitor._next_at = 0.0
    assert not monitor.run_once()
    assert node_checks.between(db, 0, 1e12) == []
    assert monitor.idle_wait() == 60.0
    db.close()
