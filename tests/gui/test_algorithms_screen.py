"""The algorithms screen: the application manager installs a package from a file,
disables and removes it; MBB'ers see packages and routes but change nothing; the rules
are tested on a study in the queue."""

from __future__ import annotations

from pathlib import Path

from aifi_app.admin_access import AdminSession, hash_passphrase
from aifi_app.dicom_node.storage_scu import Peer, send_files
from aifi_app.gui.algorithms_screen import ID, STATE
from aifi_app.sample_studies import ct_series, demo_patient, write
from tests.gui.conftest import MODALITY
from tests.helpers.packages import make_package, zip_package

PASSPHRASE = "application manager"


def _ids(screen) -> list[str]:  # type: ignore[no-untyped-def]
    return [screen.table.item(r, ID).text() for r in range(screen.table.rowCount())]


def _state(screen, algorithm_id: str) -> str:  # type: ignore[no-untyped-def]
    return str(screen.table.item(_ids(screen).index(algorithm_id), STATE).text())


def test_install_disable_remove_from_the_gui(  # type: ignore[no-untyped-def]
    qtbot, make_appliance, make_window, tmp_path: Path
) -> None:
    appliance = make_appliance()
    stored = hash_passphrase(PASSPHRASE)
    window = make_window(appliance, admin=AdminSession(appliance.db, read=lambda: stored))
    screen = window.algorithms
    window.tabs.setCurrentWidget(screen)
    qtbot.waitUntil(lambda: "pneumonia-cxr" in _ids(screen), timeout=10_000)
    assert screen.routes.topLevelItemCount() >= 1
    assert screen.routes.topLevelItem(0).text(2).startswith("modality CR/DX")
    screen.table.selectRow(_ids(screen).index("pneumonia-cxr"))
    assert "pneumonia" in screen.model_card.toPlainText().lower()  # the model card shows
    assert not screen.install_button.isEnabled()  # an MBB'er cannot install

    window.unlock(PASSPHRASE)
    qtbot.waitUntil(lambda: screen.install_button.isEnabled(), timeout=10_000)
    archive = zip_package(make_package(tmp_path / "pkg"), tmp_path / "vendor-cxr.zip")
    screen.ask_file = lambda: archive
    screen.install_button.click()
    qtbot.waitUntil(lambda: "vendor-cxr" in _ids(screen), timeout=20_000)
    assert screen.message.text() == "Installed: vendor-cxr 2.0.0."
    assert _state(screen, "vendor-cxr") == "enabled"
    assert "vendor-cxr" in appliance.catalog.known_ids() or appliance.catalog.refresh()

    screen.table.selectRow(_ids(screen).index("vendor-cxr"))
    screen.disable_button.click()
    qtbot.waitUntil(lambda: _state(screen, "vendor-cxr") == "disabled", timeout=10_000)
    screen.table.selectRow(_ids(screen).index("vendor-cxr"))
    assert screen.remove_button.isEnabled()
    screen.remove_button.click()
    qtbot.waitUntil(lambda: "vendor-cxr" not in _ids(screen), timeout=10_000)
    events = [
        r[0]
        for r in appliance.db.conn.execute(
            "SELECT actor FROM audit_events WHERE detail LIKE '%vendor-cxr%' OR event LIKE"
            " 'algorithm%'"
        )
    ]
    assert events and all(actor.startswith("gui:") for actor in events)

    window.lock()
    assert not screen.install_button.isEnabled()


def test_rules_tested_on_a_study_in_the_queue(  # type: ignore[no-untyped-def]
    qtbot, make_appliance, make_window, tmp_path: Path
) -> None:
    appliance = make_appliance()
    window = make_window(appliance)
    ct = [write(ds, tmp_path / "ct") for ds in ct_series(demo_patient(5), 1)]
    send_files(Peer("AIFI", "127.0.0.1", appliance.node.port), ct, calling_ae_title=MODALITY)
    qtbot.waitUntil(lambda: window.queue_model.rowCount() == 1, timeout=20_000)
    study = window.queue_model.row_at(0)
    window.queue.select_key(study.key)
    window.tabs.setCurrentWidget(window.algorithms)
    assert window.algorithms.study.value() == study.study_id
    window.algorithms.test_button.click()
    qtbot.waitUntil(lambda: window.algorithms.verdicts.topLevelItemCount() > 0, timeout=10_000)
    item = window.algorithms.verdicts.topLevelItem(0)
    assert item.text(1) == "no" and "CT" in item.text(2)
    assert "would get no algorithm" in window.algorithms.verdict_message.text()
    window.algorithms.test_rules(987654)
    qtbot.waitUntil(lambda: "Cannot test" in window.algorithms.verdict_message.text())
