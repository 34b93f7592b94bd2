"""The remote DICOM-node runner against a simulated vendor gateway, in-process with real
associations: the round trip, what left the box, the timeout and an unreachable vendor."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from aifi_app.algorithms import lifecycle
from aifi_app.algorithms.findings import AlgorithmResult
from aifi_app.algorithms.signing import TrustPolicy
from aifi_app.config.settings import CompletionSettings, RemoteNode, Route
from aifi_app.demo import DemoPacs
from aifi_app.dicom_node.storage_scu import Peer
from aifi_app.sample_studies import SamplePatient, chest_radiograph, phantom_chest
from aifi_app.service import Appliance
from aifi_app.store import jobs
from tests.helpers.packages import make_remote_package
from tests.helpers.ports import free_port
from tests.helpers.vendor_simulator import BONE_AGE, VendorSimulator
from tests.pipeline.test_chain_in_process import KEY, _receive, _settings

PATIENT = SamplePatient("de Boer^Sem", "PID5566", "20160405", "M", "ACC7788")
ROUTE = Route(name="bone age", algorithm="bonexpert-remote", modalities=("CR", "DX"))


def _app(tmp_path: Path, pacs: DemoPacs, vendor_port: int, timeout: float) -> Appliance:
    base = _settings(tmp_path, pacs.port)
    settings = dataclasses.replace(
        base,
        remote_nodes=(
            *base.remote_nodes,
            RemoteNode("vendor", "VENDOR_SIM", "127.0.0.1", vendor_port, role="vendor"),
        ),
        completion=CompletionSettings(idle_seconds=0.3),
        routes=(ROUTE,),
    )
    app = Appliance(settings, secret_for=lambda _: KEY)
    package = make_remote_package(tmp_path / "package", timeout=timeout)
    lifecycle.install(package, app.data_dir, app.db, TrustPolicy())
    return app


def _run_until_finished(app: Appliance, seconds: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    found: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        app.worker.run_once()
        app.dispatcher.run_once()
        found = app.db.query("SELECT * FROM jobs")
        if found and found[0]["state"] in ("delivered", "failed", "rejected"):
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"job did not finish: {found}")


def _study():  # type: ignore[no-untyped-def]
    ds = chest_radiograph(PATIENT, phantom_chest())
    ds.BodyPartExamined = "HAND"
    ds.PatientAge = "009Y"
    return ds


def test_round_trip_results_come_back_reidentified(tmp_path: Path, pacs: DemoPacs) -> None:
    ds = _study()
    secrets = (
        PATIENT.name,
        "de Boer",
        PATIENT.patient_id,
        PATIENT.accession,
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
    )
    vendor = VendorSimulator(tmp_path / "vendor", forbidden=secrets, delay=0.5)
    app = _app(tmp_path, pacs, vendor.port, timeout=30)
    app.node.start()
    vendor.reply_to = Peer("AIFI", "127.0.0.1", app.node.port)
    try:
        _receive(app, ds, tmp_path)
        job = _run_until_finished(app)
    finally:
        app.node.stop()
        vendor.stop()
    assert job["state"] == "delivered", job["reason"]
    assert vendor.leaks == []
    (sent,) = vendor.received
    assert sent.PatientIdentityRemoved == "YES"
    assert vendor.replies == [0, 0]
    results = [dcmread(p) for p in pacs.folder.glob("*.dcm")]
    assert len(results) == 2
    for r in results:
        assert r.PatientID == PATIENT.patient_id
        assert r.StudyInstanceUID == ds.StudyInstanceUID
        assert r.AccessionNumber == PATIENT.accession
    events = [r["detail"] for r in app.db.query("SELECT detail FROM audit_events WHERE job_id = 1")]
    assert any("1 image(s) sent to VENDOR_SIM" in e for e in events)
    assert any("2 result object(s) from the vendor" in e for e in events)
    # the vendor's TID 1500 findings are recorded in the queue (read with highdicom)
    assert any("its SR reports 1 finding(s), 1 positive" in e for e in events)
    recorded = AlgorithmResult.from_json(jobs.job(app.db, 1)["result_json"])
    (finding,) = recorded.findings
    assert finding.concept == BONE_AGE
    assert finding.positive and finding.score == pytest.approx(0.9)
    assert finding.source_sop_instance_uid == str(sent.SOPInstanceUID)  # pseudonymised space
    # the vendor's returned study is shown, never routed
    studies = app.db.query("SELECT state, reason FROM studies ORDER BY id")
    assert [s["state"] for s in studies] == ["routed", "recorded"]
    app.db.close()


def test_silent_vendor_times_out_visibly(tmp_path: Path, pacs: DemoPacs) -> None:
    vendor = VendorSimulator(tmp_path / "vendor", mode="silent")
    app = _app(tmp_path, pacs, vendor.port, timeout=1.5)
    try:
        _receive(app, _study(), tmp_path)
        job = _run_until_finished(app)
    finally:
        vendor.stop()
    assert job["state"] == "failed"
    assert job["reason"] == "no result from VENDOR_SIM within 1.5 s (timed out)"
    app.db.close()


def test_unreachable_vendor_fails_with_reason(tmp_path: Path, pacs: DemoPacs) -> None:
    app = _app(tmp_path, pacs, free_port(), timeout=30)
    _receive(app, _study(), tmp_path)
    job = _run_until_finished(app)
    assert job["state"] == "failed"
    assert str(job["reason"]).startswith("vendor node not reachable")
    app.db.close()


def test_refused_instances_are_sent_again_on_a_fresh_association(
    tmp_path: Path, pacs: DemoPacs
) -> None:
    vendor = VendorSimulator(tmp_path / "vendor", mode="flaky", delay=0.1)
    app = _app(tmp_path, pacs, vendor.port, timeout=30)
    app.node.start()
    vendor.reply_to = Peer("AIFI", "127.0.0.1", app.node.port)
    try:
        _receive(app, _study(), tmp_path)
        job = _run_until_finished(app)
    finally:
        app.node.stop()
        vendor.stop()
    assert job["state"] == "delivered", job["reason"]
    assert len(vendor.associations) == 2
    app.db.close()


def test_vendor_that_refuses_fails_the_job_with_reason(tmp_path: Path, pacs: DemoPacs) -> None:
    vendor = VendorSimulator(tmp_path / "vendor", mode="refuse")
    app = _app(tmp_path, pacs, vendor.port, timeout=30)
    try:
        _receive(app, _study(), tmp_path)
        job = _run_until_finished(app)
    finally:
        vendor.stop()
    assert job["state"] == "failed"
    assert job["reason"] == "1 of 1 image(s) refused by VENDOR_SIM after a retry"
    app.db.close()
