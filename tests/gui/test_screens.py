"""Nodes (C-ECHO against a live SCP), audit log filters and export, tray, CLI, translations."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from aifi_app.demo import DemoPacs
from aifi_app.gui.nodes_screen import AE_TITLE, LAST_TEST
from aifi_app.gui.tray import Health, health_of, newly_failed
from aifi_app.store import jobs
from tests.gui.conftest import gui_settings
from tests.gui.test_queue_model import _row
from tests.helpers.ports import free_port

REPO = Path(__file__).resolve().parents[2]
TS = REPO / "resources" / "translations" / "aifi_nl.ts"


def test_test_connection_against_a_live_scp(qtbot, make_appliance, make_window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ae = AE(ae_title="DEMO_PACS")
    ae.add_supported_context(Verification)
    pacs = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        port = int(pacs.server_address[1])
        window = make_window(make_appliance(gui_settings(tmp_path, port)))
        nodes = window.nodes
        assert nodes.table.item(0, AE_TITLE).text() == "DEMO_PACS"
        nodes.test_button.click()
        assert not nodes.test_button.isEnabled()  # the echo runs off the GUI thread
        qtbot.waitUntil(lambda: "Connection OK" in nodes.result.text(), timeout=15_000)
        assert nodes.table.item(0, LAST_TEST).text().startswith("OK")
        assert nodes.test_button.isEnabled()
    finally:
        pacs.shutdown()


def test_test_connection_to_a_node_without_verification(
    qtbot, make_appliance, make_window, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    pacs = DemoPacs(tmp_path / "pacs")  # storage only
    try:
        window = make_window(make_appliance(gui_settings(tmp_path, pacs.port)))
        window.nodes.test_button.click()
        qtbot.waitUntil(lambda: "No connection" in window.nodes.result.text(), timeout=15_000)
        assert window.nodes.test_button.isEnabled()
    finally:
        pacs.stop()


def test_test_connection_says_why_it_failed(qtbot, make_appliance, make_window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    window = make_window(make_appliance(gui_settings(tmp_path, free_port())), language="nl")
    window.nodes.test_button.click()
    qtbot.waitUntil(lambda: "Geen verbinding" in window.nodes.result.text(), timeout=15_000)
    assert "refused" in window.nodes.result.text()  # the reason, as the OS gave it
    assert window.nodes.table.item(0, LAST_TEST).text().startswith("geen verbinding")


def test_audit_log_filters_and_exports(qtbot, make_appliance, make_window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    appliance = make_appliance()
    window = make_window(appliance)
    window.tabs.setCurrentWidget(window.audit)
    audit = window.audit
    qtbot.waitUntil(lambda: audit.model.rowCount() >= 2, timeout=10_000)
    # the newest first: the first start's settings record, then the start itself
    events = [audit.model.index(i, 2).data() for i in range(audit.model.rowCount())]
    assert events[:2] == ["settings_changed", "started"]
    with pytest.raises(KeyError):
        jobs.retry_job(appliance.db, 1, actor="x")
    audit.search.setText("no such thing")
    qtbot.waitUntil(lambda: audit.model.rowCount() == 0, timeout=10_000)
    audit.search.setText("started")
    qtbot.waitUntil(lambda: audit.model.rowCount() == 1, timeout=10_000)
    qtbot.waitUntil(lambda: audit.category.findData("service") >= 0, timeout=10_000)
    out = tmp_path / "audit.csv"
    audit.export_to(out)
    qtbot.waitUntil(lambda: "1 entries written" in audit.message.text(), timeout=10_000)
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["category"], r["event"]) for r in rows] == [("service", "started")]


def test_tray_health_and_failure_notifications() -> None:
    assert health_of([_row(1, "delivered")]) == Health.WELL
    assert health_of([_row(1, "delivered"), _row(2, "rejected")]) == Health.WARNINGS
    assert health_of([_row(1, "failed"), _row(2, "rejected")]) == Health.FAILURES
    before = {("job", 1): "submitted", ("job", 2): "failed"}
    now = [_row(1, "failed"), _row(2, "failed"), _row(3, "failed")]
    # job 2 was failed already; job 3 appeared and failed between two snapshots
    assert [r.job_id for r in newly_failed(before, now)] == [1, 3]


def test_aifi_app_without_a_command_opens_the_gui(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import aifi_app.gui.app
    from aifi_app import cli

    seen = []
    monkeypatch.setattr(aifi_app.gui.app, "run", lambda args: seen.append(args) or 0)
    assert cli.main([]) == 0
    assert cli.main(["gui", "--language", "nl"]) == 0
    assert seen[0].command == "gui" and seen[1].language == "nl"


def test_translation_file_is_current_and_complete(tmp_path: Path) -> None:
    beside = Path(sys.executable).with_name("pyside6-lupdate")
    found = str(beside) if beside.exists() else shutil.which("pyside6-lupdate")
    if found is None:
        pytest.skip("pyside6-lupdate is not installed (next to this Python or on PATH)")
    lupdate = Path(found)
    fresh = tmp_path / "fresh.ts"
    sources = sorted(str(p) for p in (REPO / "aifi_app" / "gui").glob("*.py"))
    subprocess.run([str(lupdate), *sources, "-ts", str(fresh)], check=True, capture_output=True)

    def messages(path: Path) -> set[tuple[str, str]]:
        root = ET.parse(path).getroot()
        return {
            (ctx.findtext("name") or "", msg.findtext("source") or "")
            for ctx in root.iter("context")
            for msg in ctx.iter("message")
            if (
                msg.find("translation") is None or msg.find("translation").get("type") != "vanished"
            )
        }

    assert messages(fresh) <= messages(TS), "run pyside6-lupdate and translate the new strings"
    root = ET.parse(TS).getroot()
    untranslated = [
        m.findtext("source")
        for m in root.iter("message")
        if m.find("translation").get("type") == "unfinished" or not m.findtext("translation")
    ]
    assert untranslated == []
    qm = TS.with_suffix(".qm")
    assert qm.exists() and qm.stat().st_mtime_ns >= 0


def test_dutch_by_default_on_a_dutch_system() -> None:
    from PySide6.QtCore import QLocale

    from aifi_app.gui.translations import default_language

    assert default_language(QLocale("nl_NL")) == "nl"
    assert default_language(QLocale("nl_BE")) == "nl"
    assert default_language(QLocale("en_GB")) == "en"
    assert default_language(QLocale("de_DE")) == "en"


def test_closing_keeps_running_in_the_tray(qtbot, make_window, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from aifi_app.gui.tray import StatusTray

    window = make_window()
    window.show()
    monkeypatch.setattr(StatusTray, "available", staticmethod(lambda: True))
    window.close()
    assert window.isHidden() and not window.quitting
    assert window.appliance.node.port > 0  # still receiving
    window.bring_back()
    assert window.isVisible()
    window.close_to_tray_action.setChecked(False)
    window.close()
    assert window.isHidden()
