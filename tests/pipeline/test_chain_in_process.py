"""Worker and dispatcher in-process: receive -> route -> pseudonymise -> infer -> results ->
deliver, and delivery retries while the PACS is down."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydicom import dcmread

from aifi_app.config.settings import (
    CompletionSettings,
    DeliverySettings,
    NodeSettings,
    RemoteNode,
    Settings,
    StorageSettings,
)
from aifi_app.demo import DemoPacs
from aifi_app.sample_studies import chest_radiograph, ct_series, demo_patient, phantom_chest, write
from aifi_app.service import Appliance
from aifi_app.store import jobs
from aifi_app.store.states import JobState
from tests.helpers.leaky_results import make_reports_leak
from tests.helpers.noting_scp import storage_scp_on
from tests.helpers.ports import free_port

KEY = b"k" * 32


def _settings(tmp_path: Path, pacs_port: int) -> Settings:
    return Settings(
        node=NodeSettings(port=0),
        remote_nodes=(RemoteNode("pacs", "DEMO_PACS", "127.0.0.1", pacs_port),),
        completion=CompletionSettings(idle_seconds=0.0),
        delivery=DeliverySettings(pacs="pacs", retry_initial_seconds=0.01, retry_max_seconds=0.02),
        storage=StorageSettings(data_dir=str(tmp_path / "data")),
    )


def _receive(app: Appliance, ds, tmp_path: Path) -> int:  # type: ignore[no-untyped-def]
    path = write(ds, tmp_path / "in")
    target = app.node.incoming / "x.dcm"
    app.node.incoming.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    return app.node.accept_file(target, "MODALITY", str(ds.SOPInstanceUID))


def _drain(app: Appliance) -> None:
    for _ in range(20):
        did = app.worker.run_once()
        did |= app.dispatcher.run_once()
        if not did:
            break


def test_chain_delivers_reidentified_results(tmp_path: Path, pacs: DemoPacs) -> None:
    app = Appliance(_settings(tmp_path, pacs.port), secret_for=lambda _: KEY)
    ds = chest_radiograph(demo_patient(1), phantom_chest())
    _receive(app, ds, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == "delivered", job["reason"]
    results = [dcmread(p) for p in pacs.folder.glob("*.dcm")]
    assert len(results) == 2
    for r in results:
        assert r.PatientID == ds.PatientID
        assert r.PatientName == ds.PatientName
        assert r.StudyInstanceUID == ds.StudyInstanceUID
        assert r.AccessionNumber == ds.AccessionNumber
        assert "PatientIdentityRemoved" not in r
    (work,) = (app.data_dir / "work").rglob("*.dcm")
    pseudo = dcmread(work)
    assert pseudo.PatientID != ds.PatientID
    assert pseudo.StudyInstanceUID != ds.StudyInstanceUID
    assert pseudo.PatientIdentityRemoved == "YES"
    app.db.close()


def test_rebuilding_results_gives_the_same_uids(tmp_path: Path, pacs: DemoPacs) -> None:
    app = Appliance(_settings(tmp_path, pacs.port), secret_for=lambda _: KEY)
    _receive(app, chest_radiograph(demo_patient(1), phantom_chest()), tmp_path)
    app.worker.run_once()
    (job,) = app.db.query("SELECT * FROM jobs")
    first = {o["sop_instance_uid"] for o in jobs.outputs(app.db, job["id"])}
    ctx = app.processor.context(job["id"])
    images = [dcmread(p) for p in sorted(app.processor.work_dir(job["id"]).glob("*.dcm"))]
    from aifi_app.algorithms.findings import AlgorithmResult

    result = AlgorithmResult.from_json(jobs.job(app.db, job["id"])["result_json"])
    again = {p.sop_instance_uid for p in app.processor.build_results(ctx, result, images)}
    assert again == first
    app.db.close()


def test_study_no_route_takes_is_visible(tmp_path: Path, pacs: DemoPacs) -> None:
    app = Appliance(_settings(tmp_path, pacs.port), secret_for=lambda _: KEY)
    for ds in ct_series(demo_patient(2), 2):
        _receive(app, ds, tmp_path)
    _drain(app)
    (study,) = app.db.query("SELECT state, reason FROM studies")
    assert study["state"] == "no_match"
    assert "modality CT, route needs CR/DX" in study["reason"]
    app.db.close()


def test_pacs_down_waits_with_bounded_backoff_then_delivers(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    settings = _settings(tmp_path, port)
    app = Appliance(settings, secret_for=lambda _: KEY)
    _receive(app, chest_radiograph(demo_patient(3), phantom_chest()), tmp_path)
    app.worker.run_once()
    for _ in range(3):
        (job,) = app.db.query("SELECT * FROM jobs")
        app.dispatcher.deliver(job["id"])
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == "result_received"
    assert job["attempts"] == 3
    assert "PACS not reachable" in job["reason"]
    events = app.db.query("SELECT detail FROM audit_events WHERE event = 'retry_scheduled'")
    assert len(events) == 3
    scp = storage_scp_on(port)  # the PACS comes back on that port
    try:
        app.dispatcher.deliver(job["id"])
    finally:
        scp.stop()
    assert jobs.job(app.db, job["id"])["state"] == "delivered"
    assert len(scp.uids) == 2
    app.db.close()


def test_delivery_gives_up_after_the_bound(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port())
    settings = dataclasses.replace(
        settings, delivery=dataclasses.replace(settings.delivery, give_up_after_hours=0.0)
    )
    app = Appliance(settings, secret_for=lambda _: KEY)
    _receive(app, chest_radiograph(demo_patient(4), phantom_chest()), tmp_path)
    app.worker.run_once()
    (job,) = app.db.query("SELECT id FROM jobs")
    app.dispatcher.deliver(job["id"])
    row = jobs.job(app.db, job["id"])
    assert row["state"] == JobState.FAILED
    assert row["reason"].startswith("not delivered after 1 attempts")
    assert jobs.retry_job(app.db, job["id"], actor="mbb") == JobState.RESULT_RECEIVED
    app.db.close()


def test_image_with_burned_in_text_is_rejected_with_the_reason(
    tmp_path: Path, pacs: DemoPacs
) -> None:
    app = Appliance(_settings(tmp_path, pacs.port), secret_for=lambda _: KEY)
    ds = chest_radiograph(demo_patient(1), phantom_chest())
    ds.BurnedInAnnotation = "YES"
    _receive(app, ds, tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == "rejected"
    assert "burned-in text" in job["reason"]
    assert "Burned In Annotation is YES" in job["reason"]
    assert not list((app.data_dir / "work").rglob("*.dcm"))
    assert not list(pacs.folder.glob("*.dcm"))
    app.db.close()


def test_result_referencing_the_unknown_is_quarantined_never_sent(
    tmp_path: Path, pacs: DemoPacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_reports_leak(monkeypatch, "1.2.840.10008.5.1.4.1.1.1")
    app = Appliance(_settings(tmp_path, pacs.port), secret_for=lambda _: KEY)
    _receive(app, chest_radiograph(demo_patient(1), phantom_chest()), tmp_path)
    _drain(app)
    (job,) = app.db.query("SELECT * FROM jobs")
    assert job["state"] == "failed"
    assert "quarantined" in job["reason"]
    assert "unknown to the mapping" in job["reason"]
    (kept,) = (app.data_dir / "quarantine" / str(job["id"])).glob("*.dcm")
    assert dcmread(kept).ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == "2.25.424242"
    assert not list(pacs.folder.glob("*.dcm"))
    assert not list((app.data_dir / "results").rglob("*.dcm"))
    app.db.close()


@pytest.mark.parametrize("mode", ["no_response", "no_read"])
def test_stalling_pacs_times_out_and_retries_on_a_new_association(
    tmp_path: Path, mode: str
) -> None:
    from tests.helpers.stalling_peer import StallingPeer

    peer = StallingPeer(mode, ae_title="DEMO_PACS")
    try:
        settings = _settings(tmp_path, peer.port)
        settings = dataclasses.replace(
            settings, delivery=dataclasses.replace(settings.delivery, timeout_seconds=1.0)
        )
        app = Appliance(settings, secret_for=lambda _: KEY)
        _receive(app, chest_radiograph(demo_patient(5), phantom_chest()), tmp_path)
        app.worker.run_once()
        (job,) = app.db.query("SELECT * FROM jobs")
        app.dispatcher.deliver(job["id"])  # returns: the stall ends in a timeout and an abort
        row = jobs.job(app.db, job["id"])
        assert row["state"] == "result_received"
        assert row["attempts"] == 1
        assert "DEMO_PACS answered no response" in row["reason"]
        outputs = jobs.outputs(app.db, job["id"])
        assert [o["state"] for o in outputs] == ["pending", "pending"]
        assert all(o["attempts"] == 1 and o["last_error"] for o in outputs)
        (event,) = app.db.query("SELECT detail FROM audit_events WHERE event = 'retry_scheduled'")
        assert "no response" in event["detail"]
        assert peer.stalled_associations == 1

        peer.healthy = True
        app.dispatcher.deliver(job["id"])
        assert jobs.job(app.db, job["id"])["state"] == "delivered"
        assert sorted(peer.stored) == sorted(o["sop_instance_uid"] for o in outputs)
        assert peer.stalled_associations == 1  # the retry was a new association
        app.db.close()
    finally:
        peer.stop()
