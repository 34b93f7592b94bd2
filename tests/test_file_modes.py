"""Everything under the data directory is readable by the service's account only (POSIX):
after a study flows through (received, pseudonymised, processed, delivered), a crash
report, a heartbeat, and files an older installation left readable."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from aifi_app.config.settings import (
    CompletionSettings,
    DeliverySettings,
    NodeSettings,
    RemoteNode,
    Settings,
    StorageSettings,
)
from aifi_app.demo import DemoPacs
from aifi_app.file_modes import tighten_tree
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from aifi_app.service import Appliance

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX modes (Windows: MSI ACLs)")


def _open_entries(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        if mode & 0o077:
            found.append(f"{path.relative_to(root)} {stat.filemode(mode)}")
    return found


def test_everything_under_data_dir_is_private_after_a_study(tmp_path: Path) -> None:
    os.umask(0o022)  # the account's usual umask: the appliance must not rely on it
    pacs = DemoPacs(tmp_path / "pacs")
    settings = Settings(
        node=NodeSettings(port=0),
        remote_nodes=(RemoteNode("pacs", "DEMO_PACS", "127.0.0.1", pacs.port),),
        completion=CompletionSettings(idle_seconds=0.0),
        delivery=DeliverySettings(pacs="pacs", retry_initial_seconds=0.01, retry_max_seconds=0.02),
        storage=StorageSettings(data_dir=str(tmp_path / "data")),
    )
    # an older installation's leftovers, readable by all
    legacy = tmp_path / "data" / "spool" / "old"
    legacy.mkdir(parents=True, mode=0o755)
    (legacy / "x.dcm").write_bytes(b"old")
    (legacy / "x.dcm").chmod(0o644)
    app = Appliance(settings, secret_for=lambda _: b"k" * 32)
    try:
        app.start()
        ds = chest_radiograph(demo_patient(1), phantom_chest())
        path = write(ds, tmp_path / "in")
        target = app.node.incoming / "x.dcm"
        target.write_bytes(path.read_bytes())
        app.node.accept_file(target, "MODALITY", str(ds.SOPInstanceUID))
        app.worker.wake()  # the running worker and dispatcher take it from here
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = [j["state"] for j in app.db.query("SELECT state FROM jobs")]
            if states == ["delivered"]:
                break
            time.sleep(0.1)
        assert states == ["delivered"]
        crash = threading.Thread(target=lambda: 1 / 0, name="crasher")
        crash.start()
        crash.join()
    finally:
        app.stop()
        pacs.stop()
    root = tmp_path / "data"
    names = {p.name for p in root.iterdir()}
    assert {"spool", "aifi.sqlite3", "crash", "health.json"} <= names
    assert any((root / "work").rglob("*.dcm")) or any((root / "results").rglob("*"))
    assert _open_entries(root) == []


def test_tighten_tree_leaves_links_alone(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    outside.chmod(0o644)
    root = tmp_path / "data"
    root.mkdir()
    root.chmod(0o755)
    (root / "f").write_text("y")
    (root / "f").chmod(0o664)
    (root / "link").symlink_to(outside)
    assert tighten_tree(root) == 2
    assert _open_entries(root) == []
    assert outside.stat().st_mode & 0o777 == 0o644
