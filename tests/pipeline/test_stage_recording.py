"""The chain records what the evaluation needs: stage times, input header values and
node checks (in-process worker and dispatcher, a real pynetdicom stand-in PACS)."""

from __future__ import annotations

from pathlib import Path

from aifi_app.config.settings import (
    CompletionSettings,
    DeliverySettings,
    NodeSettings,
    RemoteNode,
    Settings,
    StorageSettings,
)
from aifi_app.demo import DemoPacs
from aifi_app.evaluation import records, timing
from aifi_app.evaluation.period import Period, utc_day
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from aifi_app.service import Appliance
from aifi_app.store import job_inputs, node_checks, stage_times
from aifi_app.store.database import now
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


def _receive(app: Appliance, tmp_path: Path, n: int, **header: object) -> None:
    ds = chest_radiograph(demo_patient(n), phantom_chest())
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    _receive_ds(app, tmp_path, ds)


def _drain(app: Appliance) -> None:
    for _ in range(20):
        did = app.worker.run_once()
        did |= app.dispatcher.run_once()
        if not did:
            break


def test_delivered_job_has_every_stage_and_its_input(tmp_path: Path, pacs: DemoPacs) -> None:
    app = Appliance(_settings(tmp_path, pacs.port), secret_for=lambda _: KEY)
    _receive(app, tmp_path, 1, ProtocolName="Thorax PA Jansen^Piet", ManufacturerModelName="DR-1")
    _drain(app)
    (job,) = app.db.query("SELECT id, state FROM jobs")
    assert job["state"] == "delivered"
    found = stage_times.of_job(app.db, job["id"])
    assert set(found) == {"pseudonymise", "model", "build_results", "reidentify", "deliver"}
    for started, finished in found.values():
        assert started <= finished
    # re-identification happens inside building the results
    assert found["build_results"][0] <= found["reidentify"][0]
    assert found["reidentify"][1] <= found["build_results"][1]
    inputs = job_inputs.of_job(app.db, job["id"])
    assert inputs is not None
    assert (inputs.manufacturer, inputs.model) == ("AIFI demo", "DR-1")
    assert inputs.protocol == "Thorax PA"  # the name is cleaned away
    (check,) = node_checks.between(app.db, 0, now() + 1)
    assert (check.node, check.kind, check.ok) == ("pacs", "delivery", True)
    day = utc_day(now())
    (record,) = records.load(app.db, Period.days(day, day))
    stages = timing.job_stages(record)
    assert stages["turnaround"] is not None and stages["turnaround"] > 0
    assert all(v is None or v >= 0 for v in stages.values()), str(sorted(stages.items()))
    assert stages["submit"] is None  # a local model is not submitted anywhere
    app.db.close()


def test_unreachable_pacs_is_a_failed_check_and_a_rejection_keeps_its_input(
    tmp_path: Path,
) -> None:
    app = Appliance(_settings(tmp_path, free_port()), secret_for=lambda _: KEY)
    _receive(app, tmp_path, 2)
    _receive(app, tmp_path, 3, Modality="DX", BurnedInAnnotation="YES")
    app.worker.run_once()
    rows = app.db.query("SELECT id, state FROM jobs ORDER BY id")
    assert [r["state"] for r in rows] == ["result_received", "rejected"]
    app.dispatcher.deliver(rows[0]["id"])
    (check,) = node_checks.between(app.db, 0, now() + 1)
    assert (check.node, check.ok) == ("pacs", False)
    assert "cannot connect" in check.detail
    assert "deliver" not in stage_times.of_job(app.db, rows[0]["id"])
    rejected = job_inputs.of_job(app.db, rows[1]["id"])
    assert rejected is not None and rejected.manufacturer == "AIFI demo"
    app.db.close()


def test_remote_vendor_stages_and_checks(tmp_path: Path, pacs: DemoPacs) -> None:
    from aifi_app.dicom_node.storage_scu import Peer
    from tests.helpers.vendor_simulator import VendorSimulator
    from tests.pipeline.test_remote_dicom import _app, _run_until_finished, _study

    vendor = VendorSimulator(tmp_path / "vendor", delay=0.5)
    app = _app(tmp_path, pacs, vendor.port, timeout=30)
    app.node.start()
    vendor.reply_to = Peer("AIFI", "127.0.0.1", app.node.port)
    try:
        _receive_ds(app, tmp_path, _study())
        job = _run_until_finished(app)
    finally:
        app.node.stop()
        vendor.stop()
    assert job["state"] == "delivered", job["reason"]
    found = stage_times.of_job(app.db, 1)
    assert set(found) == {"pseudonymise", "submit", "vendor", "reidentify", "deliver"}
    # the simulated vendor waits 0.5 s before it answers
    assert found["vendor"][1] - found["vendor"][0] >= 0.5
    # the vendor's time starts when the job was submitted: within the submit stage, whose
    # own record is written once the sending returned (an order, not a duration)
    assert found["submit"][0] <= found["vendor"][0] <= found["submit"][1]
    checks = [(c.node, c.kind, c.ok) for c in node_checks.between(app.db, 0, now() + 1)]
    assert checks == [("vendor", "submission", True), ("pacs", "delivery", True)]
    day = utc_day(now())
    (record,) = records.load(app.db, Period.days(day, day))
    stages = timing.job_stages(record)
    assert stages["model"] == found["vendor"][1] - found["vendor"][0]
    assert stages["build_results"] is None and stages["submit"] is not None
    app.db.close()


def test_unreachable_vendor_is_a_failed_submission_check(tmp_path: Path, pacs: DemoPacs) -> None:
    from tests.pipeline.test_remote_dicom import _app, _run_until_finished, _study

    app = _app(tmp_path, pacs, free_port(), timeout=30)
    _receive_ds(app, tmp_path, _study())
    assert _run_until_finished(app)["state"] == "failed"
    (check,) = node_checks.between(app.db, 0, now() + 1)
    assert (check.node, check.kind, check.ok) == ("vendor", "submission", False)
    assert check.detail.startswith("vendor node not reachable")
    app.db.close()


def _receive_ds(app: Appliance, tmp_path: Path, ds) -> None:  # type: ignore[no-untyped-def]
    path = write(ds, tmp_path / "in")
    target = app.node.incoming / "x.dcm"
    app.node.incoming.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    app.node.accept_file(target, "MODALITY", str(ds.SOPInstanceUID))
