"""The nodes screen: the application manager adds nodes (written to the settings file, used
at once) and tests them against a real Orthanc by C-ECHO and DICOMweb; MBB'ers cannot edit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aifi_app.admin_access import AdminSession, hash_passphrase
from aifi_app.config.loading import load_settings
from aifi_app.config.settings import RemoteNode
from aifi_app.gui.nodes_screen import NAME
from tests.gui.conftest import gui_settings
from tests.helpers.orthanc import DICOMWEB_PLUGIN
from tests.helpers.ports import free_port

PASSPHRASE = "application manager"
SETTINGS = """
[[remote_nodes]]
name = "pacs"
ae_title = "DEMO_PACS"
host = "127.0.0.1"
port = 4242
"""


def _names(screen) -> list[str]:  # type: ignore[no-untyped-def]
    return [screen.table.item(r, NAME).text() for r in range(screen.table.rowCount())]


@pytest.mark.orthanc
def test_add_nodes_and_test_them_against_orthanc(  # type: ignore[no-untyped-def]
    qtbot, make_appliance, make_window, orthanc_factory, tmp_path: Path
) -> None:
    appliance = make_appliance(gui_settings(tmp_path, free_port()))
    calling = appliance.settings.delivery.calling_ae_title or appliance.settings.node.ae_title
    orthanc = orthanc_factory({"aifi": (calling, "127.0.0.1", free_port())}, [DICOMWEB_PLUGIN])
    path = tmp_path / "aifi.toml"
    path.write_text(SETTINGS)
    stored = hash_passphrase(PASSPHRASE)
    admin = AdminSession(appliance.db, read=lambda: stored)
    window = make_window(appliance, admin=admin, settings_path=path)
    nodes = window.nodes
    assert not nodes.add_button.isEnabled()  # an MBB'er cannot change nodes
    window.unlock(PASSPHRASE)
    qtbot.waitUntil(lambda: nodes.add_button.isEnabled(), timeout=10_000)

    asked = [
        RemoteNode("orthanc", orthanc.aet, "127.0.0.1", orthanc.dicom_port),
        RemoteNode(
            "orthanc-web",
            protocol="dicomweb",
            url=f"http://127.0.0.1:{orthanc.http_port}/dicom-web",
            role="vendor",
        ),
    ]
    nodes.ask_node = lambda _old: asked.pop(0)
    for expected in (["orthanc"], ["orthanc", "orthanc-web"]):
        nodes.add_button.click()
        qtbot.waitUntil(lambda n=expected: _names(nodes)[-len(n) :] == n, timeout=10_000)
    assert [n.name for n in load_settings(path).remote_nodes] == [
        "pacs",
        "orthanc",
        "orthanc-web",
    ]
    assert [n.name for n in appliance.settings.remote_nodes][-2:] == ["orthanc", "orthanc-web"]

    nodes.table.selectRow(_names(nodes).index("orthanc"))
    nodes.test_button.click()
    qtbot.waitUntil(lambda: "Connection OK" in nodes.result.text(), timeout=15_000)
    assert "C-ECHO answered" in nodes.result.text()
    nodes.table.selectRow(_names(nodes).index("orthanc-web"))
    nodes.test_button.click()
    qtbot.waitUntil(lambda: "QIDO-RS" in nodes.result.text(), timeout=15_000)
    assert "Connection OK" in nodes.result.text()

    # an invalid node is refused in words and nothing is written
    before = path.read_text()
    nodes.ask_node = lambda _old: RemoteNode("bad", protocol="http", url="ftp://x")
    nodes.add_button.click()
    qtbot.waitUntil(lambda: "Not saved" in nodes.result.text(), timeout=10_000)
    assert "url" in nodes.result.text() and path.read_text() == before

    # delete, audited with who
    nodes.confirm_delete = lambda _name: True
    nodes.table.selectRow(_names(nodes).index("orthanc-web"))
    nodes.delete_button.click()
    qtbot.waitUntil(lambda: "orthanc-web" not in _names(nodes), timeout=10_000)
    actors = {
        r[0]
        for r in appliance.db.conn.execute(
            # the service's own start-up entry (settings changed since the last start) aside
            "SELECT actor FROM audit_events WHERE category = 'config'"
            " AND event != 'settings_changed'"
        )
    }
    assert len(actors) == 1 and actors.pop().startswith("gui:")


def test_a_failing_connection_in_words(qtbot, make_appliance, make_window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    closed = free_port()
    settings = gui_settings(tmp_path, closed)
    web = RemoteNode("web", protocol="dicomweb", url=f"http://127.0.0.1:{closed}/dicom-web")
    appliance = make_appliance(settings)
    appliance.settings = dataclasses.replace(settings, remote_nodes=(web,))
    window = make_window(appliance)
    window.nodes.test_button.click()
    qtbot.waitUntil(lambda: "No connection" in window.nodes.result.text(), timeout=15_000)
    assert (
        f"no answer from http://127.0.0.1:{closed}/dicom-web/studies" in window.nodes.result.text()
    )
    assert not window.nodes.add_button.isEnabled()  # no settings file, and locked
