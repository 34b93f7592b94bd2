"""Settings changes are audited at start-up: who (the service's OS user), what (each key,
old and new value) and when."""

from __future__ import annotations

import dataclasses
import getpass
from pathlib import Path

from aifi_app.config.changes import describe_changes, flatten
from aifi_app.config.settings import (
    CompletionSettings,
    NodeSettings,
    RemoteNode,
    Settings,
    StorageSettings,
)
from aifi_app.service import Appliance


def test_flatten_and_describe() -> None:
    a = Settings(remote_nodes=(RemoteNode("PACS", "PACS", "10.0.0.1", 104),))
    b = dataclasses.replace(
        a,
        node=dataclasses.replace(a.node, tls_port=2762),
        remote_nodes=(RemoteNode("PACS", "PACS", "10.0.0.2", 104),),
    )
    flat = flatten(a)
    assert flat["node.port"] == "11112" and flat["remote_nodes[PACS].host"] == '"10.0.0.1"'
    text = describe_changes(flat, flatten(b))
    assert text == 'node.tls_port: 0 -> 2762; remote_nodes[PACS].host: "10.0.0.1" -> "10.0.0.2"'
    assert describe_changes(flat, flat) == ""


def test_each_start_audits_what_changed(tmp_path: Path) -> None:
    settings = Settings(
        node=NodeSettings(port=0),
        completion=CompletionSettings(idle_seconds=5.0),
        storage=StorageSettings(data_dir=str(tmp_path / "data")),
    )
    changed = dataclasses.replace(settings, completion=CompletionSettings(idle_seconds=9.0))
    for s in (settings, settings, changed):
        app = Appliance(s, secret_for=lambda _: b"k" * 32)
        app.start()
        app.stop()
    db = Appliance(changed, secret_for=lambda _: b"k" * 32).db
    rows = db.query("SELECT detail, actor FROM audit_events WHERE event = 'settings_changed'")
    db.close()
    assert [r["detail"] for r in rows] == [
        "first start",
        "completion.idle_seconds: 5.0 -> 9.0",
    ]
    assert {r["actor"] for r in rows} == {f"service:{getpass.getuser()}"}
