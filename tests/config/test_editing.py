"""Remote nodes written to the settings file: validated by the loader, audited, atomic."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from aifi_app.config import editing
from aifi_app.config.loading import ConfigError, load_settings
from aifi_app.config.settings import RemoteNode
from aifi_app.store.database import Database

START = """
[node]
ae_title = "AIFI"
port = 11112

[[remote_nodes]]
name = "pacs"
ae_title = "PACS"
host = "127.0.0.1"
port = 4242

[delivery]
pacs = "pacs"
"""


def test_add_edit_delete_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "aifi.toml"
    path.write_text(START)
    db = Database(tmp_path / "q.db")
    settings = load_settings(path)
    web = RemoteNode(
        "vendor", protocol="dicomweb", url="https://ai.example/dicom-web", role="vendor"
    )
    settings = editing.add_node(path, web, db=db, actor="gui:anna")
    assert load_settings(path) == settings
    assert [n.name for n in settings.remote_nodes] == ["pacs", "vendor"]
    raw = tomllib.loads(path.read_text())
    assert raw["node"]["port"] == 11112 and raw["delivery"]["pacs"] == "pacs"  # kept
    assert raw["remote_nodes"][1] == {
        "name": "vendor",
        "role": "vendor",
        "protocol": "dicomweb",
        "url": "https://ai.example/dicom-web",
    }
    ris = RemoteNode("vendor", host="10.0.0.5", port=2575, protocol="mllp", role="ris")
    settings = editing.edit_node(path, "vendor", ris, db=db, actor="gui:anna")
    assert load_settings(path).remote_nodes[1] == ris
    settings = editing.delete_node(path, "vendor", db=db, actor="gui:anna")
    assert [n.name for n in load_settings(path).remote_nodes] == ["pacs"]
    audit = db.conn.execute(
        "SELECT event, actor, detail FROM audit_events WHERE category = 'config' ORDER BY id"
    ).fetchall()
    assert [(a[0], a[1]) for a in audit] == [("remote_nodes_changed", "gui:anna")] * 3
    assert audit[0][2].startswith("added dicomweb node vendor")
    assert audit[2][2] == "deleted node vendor"
    db.close()


def test_invalid_change_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "aifi.toml"
    path.write_text(START)
    db = Database(tmp_path / "q.db")
    with pytest.raises(ConfigError, match="url"):
        editing.add_node(path, RemoteNode("web", protocol="http", url="ftp://x"), db=db, actor="t")
    with pytest.raises(ConfigError, match="exists already"):
        editing.add_node(path, RemoteNode("pacs", "P", "h", 1), db=db, actor="t")
    bad_port = RemoteNode("pacs", "PACS", "127.0.0.1", 70000)
    with pytest.raises(ConfigError, match="port"):
        editing.edit_node(path, "pacs", bad_port, db=db, actor="t")
    assert path.read_text() == START
    assert list(tmp_path.glob(".settings-*")) == []
    assert db.conn.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0] == 0
    db.close()
