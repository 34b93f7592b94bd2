"""The queue's detail pane on a real run: a chest X-ray is sent and delivered to the PACS;
the pane shows its instances and a preview of the returned result; the result is resent
to the PACS; the study is sent to another algorithm; an urgent finding is notified."""

from __future__ import annotations

import json
import time

from aifi_app.demo import DemoPacs
from aifi_app.store import jobs
from aifi_app.store.states import JobState
from tests.gui.conftest import gui_settings
from tests.gui.test_main_window import _send, _state_of_first_job


def _deliveries(appliance, job_id: int) -> int:  # type: ignore[no-untyped-def]
    return int(
        appliance.db.conn.execute(
            "SELECT COUNT(*) FROM audit_events WHERE job_id = ? AND event = 'output_delivered'",
            (job_id,),
        ).fetchone()[0]
    )


def test_instances_preview_resend_and_route(qtbot, make_appliance, make_window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pacs = DemoPacs(tmp_path / "pacs")
    try:
        appliance = make_appliance(gui_settings(tmp_path, pacs.port))
        window = make_window(appliance)
        window.show()
        _send(appliance.node.port, tmp_path / "in").join(30)
        qtbot.waitUntil(lambda: _state_of_first_job(window) == "delivered", timeout=60_000)
        row = window.queue_model.row_at(0)
        queue = window.queue
        assert queue.select_key(row.key)
        qtbot.waitUntil(lambda: queue.instances.topLevelItemCount() == 1, timeout=10_000)
        assert queue.instances.topLevelItem(0).text(1).startswith("Digital X-Ray")
        qtbot.waitUntil(lambda: queue.outputs.topLevelItemCount() >= 2, timeout=10_000)
        qtbot.waitUntil(lambda: queue.preview_image is not None, timeout=10_000)
        assert not queue.preview_image.isNull() and queue.preview_image.width() > 32  # type: ignore[union-attr]

        # resend to PACS: every result object goes out again
        sent = _deliveries(appliance, row.job_id)
        assert sent >= 2 and queue.resend_button.isEnabled()
        queue.resend_button.click()
        qtbot.waitUntil(lambda: "sent to the PACS again" in queue.message.text(), timeout=10_000)
        qtbot.waitUntil(lambda: _deliveries(appliance, row.job_id) == 2 * sent, timeout=30_000)
        qtbot.waitUntil(lambda: _state_of_first_job(window) == "delivered", timeout=30_000)

        # route to another algorithm: a new job for the same study
        assert queue.route_choice.findData("ct-lung-volume") >= 0
        queue.route_choice.setCurrentIndex(queue.route_choice.findData("ct-lung-volume"))
        queue.route_button.click()
        qtbot.waitUntil(lambda: "goes to ct-lung-volume" in queue.message.text(), timeout=10_000)
        model = window.queue_model
        qtbot.waitUntil(
            lambda: (
                "ct-lung-volume" in {model.row_at(i).algorithm for i in range(model.rowCount())}
            ),
            timeout=10_000,
        )
    finally:
        pacs.stop()


def test_urgent_finding_notifies(qtbot, make_appliance, make_window) -> None:  # type: ignore[no-untyped-def]
    appliance = make_appliance()
    window = make_window(appliance)
    qtbot.waitUntil(lambda: window.tray._primed, timeout=10_000)  # the baseline is in
    db = appliance.db
    t = time.time()
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO studies (id, study_uid, episode, kind, state, calling_ae, modality,"
            " study_description, first_received_at, last_received_at, idle_seconds,"
            " complete_due_at) VALUES (1, '1.2', 1, 'study', 'routed', 'MOD', 'DX',"
            " 'X thorax', ?, ?, 1, ?)",
            (t, t, t),
        )
        conn.execute(
            "INSERT INTO jobs (id, study_id, algorithm_id, route, state, created_at,"
            " updated_at) VALUES (7, 1, 'pneumonia-cxr', 'chest', 'submitted', ?, ?)",
            (t, t),
        )
        conn.execute(
            "INSERT INTO jobs (id, study_id, algorithm_id, route, state, created_at,"
            " updated_at) VALUES (8, 1, 'cina-ipe', 'ct-pe', 'submitted', ?, ?)",
            (t, t),
        )
    # job 7: a positive finding the manifest does not call urgent (no notification);
    # job 8: one it does (the job's urgent flag is set with its result)
    finding = {"findings": [{"label": "Pneumonia suspected", "positive": True}]}
    jobs.transition(
        db, 7, JobState.SUBMITTED, JobState.RESULT_RECEIVED, result_json=json.dumps(finding)
    )
    pe = {"findings": [{"label": "Pulmonary embolism suspected", "positive": True}]}
    with db.transaction() as conn:
        conn.execute("UPDATE jobs SET urgent = 1 WHERE id = 8")
    jobs.transition(db, 8, JobState.SUBMITTED, JobState.RESULT_RECEIVED, result_json=json.dumps(pe))
    qtbot.waitUntil(
        lambda: any(title == "Urgent finding in job 8" for title, _ in window.tray.notifications),
        timeout=10_000,
    )
    text = next(t for title, t in window.tray.notifications if title.startswith("Urgent"))
    assert "Pulmonary embolism suspected" in text
    assert not any("job 7" in title for title, _ in window.tray.notifications)
