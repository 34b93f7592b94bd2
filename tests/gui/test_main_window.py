"""The main window on a real appliance in this process: studies arrive through the DICOM
node, the queue fills, a failed job is retried, the language switches."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from PySide6.QtCore import Qt

from aifi_app.demo import DemoPacs
from aifi_app.dicom_node.storage_scu import Peer, send_files
from aifi_app.gui.queue_model import PRIORITY, REASON, STATE
from aifi_app.sample_studies import (
    chest_radiograph,
    ct_series,
    demo_patient,
    phantom_chest,
    write,
)
from tests.gui.conftest import MODALITY, gui_settings
from tests.helpers.ports import free_port


def _send(port: int, folder: Path, number: int = 1) -> threading.Thread:
    """Send a chest X-ray to the appliance from another thread, as a modality would."""
    path = write(chest_radiograph(demo_patient(number), phantom_chest()), folder)
    done = threading.Thread(
        target=send_files,
        args=(Peer("AIFI", "127.0.0.1", port), [path]),
        kwargs={"calling_ae_title": MODALITY},
    )
    done.start()
    return done


def _state_of_first_job(window) -> str | None:  # type: ignore[no-untyped-def]
    model = window.queue_model
    rows = [model.row_at(i) for i in range(model.rowCount())]
    states = [r.state for r in rows if r.job_id is not None]
    return states[0] if states else None


def test_queue_fills_while_a_study_is_sent(qtbot, make_appliance, make_window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pacs = DemoPacs(tmp_path / "pacs")
    try:
        appliance = make_appliance(gui_settings(tmp_path, pacs.port))
        window = make_window(appliance)
        window.show()
        assert window.queue_model.rowCount() == 0
        sender = _send(appliance.node.port, tmp_path / "in")
        qtbot.waitUntil(lambda: window.queue_model.rowCount() >= 1, timeout=20_000)
        qtbot.waitUntil(lambda: _state_of_first_job(window) == "delivered", timeout=60_000)
        sender.join(10)
        row = window.queue_model.row_at(0)
        assert (row.modality, row.algorithm) == ("DX", "pneumonia-cxr")
        assert "PatientName" not in repr(row) and "DEMO" not in repr(row)
        assert "delivered" in window.counts.text() and "1 delivered" in window.counts.text()

        # the detail pane shows the job's timeline
        assert window.queue.select_key(row.key)
        qtbot.waitUntil(lambda: window.queue.timeline.topLevelItemCount() >= 5, timeout=10_000)
        events = [
            window.queue.timeline.topLevelItem(i).text(1)
            for i in range(window.queue.timeline.topLevelItemCount())
        ]
        assert any("delivered" in e for e in events)
        assert not window.queue.retry_button.isEnabled()
        assert not window.queue.cancel_button.isEnabled()
    finally:
        pacs.stop()


def test_failed_job_is_retried_from_the_gui(qtbot, make_appliance, make_window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # the PACS is down
    settings = gui_settings(tmp_path, port)
    settings = dataclasses.replace(
        settings, delivery=dataclasses.replace(settings.delivery, give_up_after_hours=0.0)
    )
    appliance = make_appliance(settings)
    window = make_window(appliance)
    window.show()
    _send(appliance.node.port, tmp_path / "in").join(30)
    qtbot.waitUntil(lambda: _state_of_first_job(window) == "failed", timeout=60_000)
    row = window.queue_model.row_at(0)
    index = window.queue_model.index(0, REASON)
    assert "PACS not reachable" in index.data()
    assert window.queue_model.index(0, STATE).data() == "failed"
    # the tray learns of it from the same change feed, possibly a tick later
    qtbot.waitUntil(lambda: window.tray.health == "failures", timeout=10_000)
    qtbot.waitUntil(lambda: bool(window.tray.notifications), timeout=10_000)
    assert "failed" in window.tray.notifications[0][0]

    # the PACS comes back; a radiographer selects the job and clicks Retry
    received: list[str] = []
    ae = AE(ae_title="DEMO_PACS")
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[
            (evt.EVT_C_STORE, lambda e: received.append(str(e.request.AffectedSOPInstanceUID)) or 0)
        ],
    )
    try:
        window.queue.search.setText("pneumonia")
        assert window.queue.select_key(row.key)
        assert window.queue.retry_button.isEnabled()
        window.queue.retry_button.click()
        qtbot.waitUntil(lambda: _state_of_first_job(window) == "delivered", timeout=60_000)
        assert len(received) == 2
        assert "again" in window.queue.message.text()
        actors = [
            r["actor"]
            for r in appliance.db.query(
                "SELECT actor FROM audit_events WHERE job_id = ? AND detail = 'retry'",
                (row.job_id,),
            )
        ]
        assert len(actors) == 1 and actors[0].startswith("gui")
        qtbot.waitUntil(lambda: window.tray.health == "well", timeout=10_000)
    finally:
        server.shutdown()


def test_cancel_and_process_now(qtbot, make_appliance, make_window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = gui_settings(tmp_path, free_port())
    settings = dataclasses.replace(
        settings, completion=dataclasses.replace(settings.completion, idle_seconds=3600.0)
    )
    appliance = make_appliance(settings)
    window = make_window(appliance)
    _send(appliance.node.port, tmp_path / "in").join(30)
    qtbot.waitUntil(lambda: window.queue_model.rowCount() == 1, timeout=20_000)
    study = window.queue_model.row_at(0)
    assert study.state == "receiving" and study.job_id is None
    assert window.queue.select_key(study.key)
    assert window.queue.process_now_button.isEnabled()
    assert not window.queue.retry_button.isEnabled()
    window.queue.process_now_button.click()
    qtbot.waitUntil(lambda: "processed now" in window.queue.message.text(), timeout=10_000)
    # the PACS is down: the job waits for it, and a person cancels it
    qtbot.waitUntil(lambda: _state_of_first_job(window) == "result_received", timeout=60_000)
    job = next(
        r
        for r in map(window.queue_model.row_at, range(window.queue_model.rowCount()))
        if r.job_id is not None
    )
    assert window.queue.select_key(job.key)
    assert window.queue.cancel_button.isEnabled()
    window.queue.cancel_button.click()
    qtbot.waitUntil(lambda: _state_of_first_job(window) == "cancelled", timeout=10_000)
    assert window.queue.retry_button.isEnabled()
    assert not window.queue.cancel_button.isEnabled()


def test_language_switch_and_screenshots(qtbot, make_appliance, make_window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pacs = DemoPacs(tmp_path / "pacs")
    try:
        settings = gui_settings(tmp_path, pacs.port)
        # an idle time long enough for the CT's slices to make one study
        settings = dataclasses.replace(
            settings, completion=dataclasses.replace(settings.completion, idle_seconds=1.0)
        )
        appliance = make_appliance(settings)
        # the nodes screen as an application manager sees it: three protocols, unlocked
        from aifi_app.admin_access import AdminSession, hash_passphrase
        from aifi_app.config.settings import RemoteNode

        appliance.settings = dataclasses.replace(
            appliance.settings,
            remote_nodes=(
                *appliance.settings.remote_nodes,
                RemoteNode(
                    "vendor-ai",
                    protocol="dicomweb",
                    url="https://ai.vendor.example/dicom-web",
                    role="vendor",
                ),
                RemoteNode(
                    "ris", host="ris.hospital.example", port=2575, protocol="mllp", role="ris"
                ),
            ),
        )
        stored = hash_passphrase("application manager")
        (tmp_path / "aifi.toml").write_text("")
        window = make_window(
            appliance,
            admin=AdminSession(appliance.db, read=lambda: stored),
            settings_path=tmp_path / "aifi.toml",
        )
        window.show()
        window.unlock("application manager")
        qtbot.waitUntil(lambda: window.unlocked, timeout=10_000)
        for n in (1, 2):
            _send(appliance.node.port, tmp_path / "in", n).join(30)
        ct = [write(ds, tmp_path / "ct") for ds in ct_series(demo_patient(99), 3)]
        send_files(Peer("AIFI", "127.0.0.1", appliance.node.port), ct, calling_ae_title=MODALITY)

        model = window.queue_model
        qtbot.waitUntil(
            lambda: (
                {model.row_at(i).state for i in range(model.rowCount())}
                == {"delivered", "no_match"}
                and sum(model.row_at(i).job_id is not None for i in range(model.rowCount())) == 2
            ),
            timeout=60_000,
        )
        window.queue.select_key(
            next(r.key for r in map(model.row_at, range(model.rowCount())) if r.job_id)
        )
        qtbot.waitUntil(lambda: window.queue.timeline.topLevelItemCount() >= 5, timeout=10_000)
        window.queue.detail_tabs.setCurrentIndex(2)  # the result, with its preview
        qtbot.waitUntil(lambda: window.queue.preview_image is not None, timeout=10_000)
        assert window.tabs.tabText(0) == "Queue"
        out = Path(os.environ.get("AIFI_SCREENSHOTS", tmp_path))
        out.mkdir(parents=True, exist_ok=True)
        shots = {}
        for language, queue_word in (("en", "Queue"), ("nl", "Wachtrij")):
            window.set_language(language)
            qtbot.waitUntil(lambda w=queue_word: window.tabs.tabText(0) == w, timeout=5_000)
            for tab, name in ((0, "queue"), (1, "audit"), (2, "nodes"), (3, "algorithms")):
                window.tabs.setCurrentIndex(tab)
                if tab == 1:
                    qtbot.waitUntil(lambda: window.audit.model.rowCount() > 0, timeout=10_000)
                if tab == 3:
                    qtbot.waitUntil(lambda: window.algorithms.table.rowCount() > 0, timeout=10_000)
                    window.algorithms.test_rules(window.algorithms.study.value())
                    qtbot.waitUntil(lambda: window.algorithms.verdicts.topLevelItemCount() > 0)
                qtbot.wait(50)
                path = out / f"{name}-{language}.png"
                assert window.grab().save(str(path))
                shots[path.name] = path.stat().st_size
            window.tabs.setCurrentIndex(0)
        assert window.queue_model.headerData(STATE, Qt.Orientation.Horizontal) == "Status"
        assert window.queue_model.headerData(PRIORITY, Qt.Orientation.Horizontal) == "Prioriteit"
        shown = {window.queue_model.index(i, STATE).data() for i in range(model.rowCount())}
        assert shown == {"afgeleverd", "geen passend algoritme"}
        assert all(size > 10_000 for size in shots.values()), shots
    finally:
        pacs.stop()


def test_roles_unlock_checks_the_passphrase_and_locks_when_idle(  # type: ignore[no-untyped-def]
    qtbot, make_appliance, make_window, tmp_path
) -> None:
    from aifi_app.admin_access import AdminSession, hash_passphrase

    class Clock:
        now = 100.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    stored = hash_passphrase("application manager")
    appliance = make_appliance()
    admin = AdminSession(appliance.db, idle_seconds=300, read=lambda: stored, clock=clock)
    path = tmp_path / "aifi.toml"
    path.write_text("")
    window = make_window(appliance, admin=admin, settings_path=path)
    assert "MBB" in window.role.text() and not window.nodes.add_button.isEnabled()
    assert window.queue.retry_button is not None  # the queue needs no unlock
    window.unlock("not the passphrase")
    qtbot.waitUntil(lambda: "Wrong passphrase" in window.statusBar().currentMessage())
    assert not window.unlocked
    with qtbot.waitSignal(window.access_changed, timeout=10_000) as unlocked:
        window.unlock("application manager")
    assert unlocked.args == [True]
    assert window.nodes.add_button.isEnabled() and "Application manager" in window.role.text()
    clock.now += 301
    with qtbot.waitSignal(window.access_changed, timeout=10_000) as locked:
        window._check_idle()  # the window's 5 s timer does this
    assert locked.args == [False]
    assert not window.nodes.add_button.isEnabled()
    events = [
        r[0]
        for r in appliance.db.conn.execute(
            "SELECT event FROM audit_events WHERE category = 'access' ORDER BY id"
        )
    ]
    assert events == ["admin_unlock_refused", "admin_unlocked", "admin_locked"]


def test_disk_below_its_floor_warns_in_the_window_and_the_tray(  # type: ignore[no-untyped-def]
    qtbot, make_appliance, make_window
) -> None:
    from aifi_app.store.disk_space import DiskFloor, DiskGuard, DiskReading

    appliance = make_appliance()
    free = {"bytes": 10 * 1024**3}
    appliance.disk_guard = DiskGuard(
        appliance.data_dir,
        DiskFloor(min_free_mb=500),
        reader=lambda _path: DiskReading(free["bytes"], 100 * 1024**3),
    )
    window = make_window(appliance)
    window.show()
    window.check_disk()
    qtbot.waitUntil(lambda: window.tray.health == "well", timeout=10_000)
    assert window.disk_label.isHidden()

    free["bytes"] = 100 * 1024**2  # 100 MB free, the floor is 500 MB
    window.check_disk()
    qtbot.waitUntil(lambda: window.disk_label.isVisible(), timeout=10_000)
    assert "below the floor of 500 MB" in window.disk_label.text()
    assert window.tray.health == "warnings"
    assert window.tray.notifications[-1][0].startswith("Disk space low")
    assert "Disk space low" in window.tray.icon.toolTip()

    free["bytes"] = 10 * 1024**3
    window.check_disk()
    qtbot.waitUntil(lambda: window.disk_label.isHidden(), timeout=10_000)
    assert window.tray.health == "well"
    assert len([n for n in window.tray.notifications if "Disk" in n[0]]) == 1
