"""The remote DICOMweb runner against a real Orthanc with its DICOMweb plugin playing the
vendor: STOW-RS of the pseudonymised study, the vendor's results found by QIDO-RS and
retrieved by WADO-RS, re-identified and delivered; what left the box; the unreachable and
the silent vendor."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from aifi_app.algorithms import lifecycle
from aifi_app.algorithms.signing import TrustPolicy
from aifi_app.config.settings import CompletionSettings, RemoteNode, Route
from aifi_app.demo import DemoPacs
from aifi_app.sample_studies import SamplePatient, chest_radiograph, phantom_chest
from aifi_app.service import Appliance
from tests.helpers.dicomweb_vendor import DicomwebVendor
from tests.helpers.file_keyring import file_keyring
from tests.helpers.packages import make_dicomweb_package
from tests.helpers.ports import free_port
from tests.pipeline.test_chain_in_process import KEY, _receive, _settings

pytestmark = [pytest.mark.orthanc, pytest.mark.dicomweb]

PATIENT = SamplePatient("van Dijk^Noor", "PID7781", "20150912", "F", "ACC9912")
ROUTE = Route(name="bone age web", algorithm="bonexpert-web", modalities=("CR", "DX"))


@pytest.fixture(autouse=True)
def keyring_in_tmp(tmp_path: Path) -> Iterator[None]:
    with file_keyring(tmp_path / "keyring"):
        yield


def _app(tmp_path: Path, pacs: DemoPacs, url: str, timeout: float) -> Appliance:
    base = _settings(tmp_path, pacs.port)
    settings = dataclasses.replace(
        base,
        remote_nodes=(
            *base.remote_nodes,
            RemoteNode("vendor-web", protocol="dicomweb", url=url, role="vendor"),
        ),
        completion=CompletionSettings(idle_seconds=0.3),
        routes=(ROUTE,),
    )
    app = Appliance(settings, secret_for=lambda _: KEY)
    package = make_dicomweb_package(tmp_path / "package", timeout=timeout)
    lifecycle.install(package, app.data_dir, app.db, TrustPolicy())
    return app


def _run_until_finished(app: Appliance, seconds: float = 60) -> dict[str, object]:
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
    ds.PatientAge = "010Y"
    return ds


def _audit(app: Appliance) -> list[str]:
    return [str(r["detail"]) for r in app.db.query("SELECT detail FROM audit_events")]


def test_round_trip_by_stow_qido_wado(tmp_path: Path, pacs: DemoPacs) -> None:
    ds = _study()
    secrets = (
        PATIENT.name,
        "van Dijk",
        PATIENT.patient_id,
        PATIENT.accession,
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
    )
    vendor = DicomwebVendor(tmp_path / "vendor", forbidden=secrets, delay=0.3)
    try:
        app = _app(tmp_path, pacs, vendor.url, timeout=60)
        _receive(app, ds, tmp_path)
        job = _run_until_finished(app)
    finally:
        vendor.stop()
    assert job["state"] == "delivered", job["reason"]
    # what left the box: one pseudonymised image, no original identifier anywhere in it
    assert vendor.leaks == []
    (sent,) = vendor.received
    assert sent.PatientIdentityRemoved == "YES"
    assert sent.StudyInstanceUID != ds.StudyInstanceUID
    assert len(vendor.stored_results) == 2
    # the vendor's two objects reached the PACS, re-identified into the original study
    results = [dcmread(p) for p in pacs.folder.glob("*.dcm")]
    assert sorted(str(r.Modality) for r in results) == ["OT", "SR"]
    for r in results:
        assert r.PatientID == PATIENT.patient_id
        assert r.PatientName == PATIENT.name
        assert r.StudyInstanceUID == ds.StudyInstanceUID
        assert r.AccessionNumber == PATIENT.accession
    # the vendor's own UIDs are kept; its study UID became the original one
    assert sorted(str(r.SOPInstanceUID) for r in results) == sorted(vendor.stored_results)
    events = _audit(app)
    assert any("1 image(s) stored at vendor-web by STOW-RS" in e for e in events)
    assert any("2 result object(s) from the vendor, re-identified" in e for e in events)
    app.db.close()


def test_unreachable_vendor_fails_with_reason(tmp_path: Path, pacs: DemoPacs) -> None:
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    app = _app(tmp_path, pacs, url, timeout=30)
    _receive(app, _study(), tmp_path)
    job = _run_until_finished(app)
    assert job["state"] == "failed"
    assert job["reason"] == (
        f"storing the study (STOW-RS): vendor-web ({url}) not reachable (connection refused)"
    )
    assert job["reason"] in _audit(app)
    app.db.close()


def test_silent_vendor_times_out_visibly(tmp_path: Path, pacs: DemoPacs) -> None:
    vendor = DicomwebVendor(tmp_path / "vendor", mode="silent")
    try:
        app = _app(tmp_path, pacs, vendor.url, timeout=2.5)
        _receive(app, _study(), tmp_path)
        job = _run_until_finished(app)
    finally:
        vendor.stop()
    assert job["state"] == "failed"
    assert job["reason"] == "no result from vendor-web within 2.5 s (timed out)"
    assert job["reason"] in _audit(app)
    assert len(vendor.received) == 1  # it did get the study
    app.db.close()


def test_a_dicom_node_is_not_taken_for_a_dicomweb_service(tmp_path: Path, pacs: DemoPacs) -> None:
    app = _app(tmp_path, pacs, "http://127.0.0.1:1/dicom-web", timeout=30)
    app.settings = dataclasses.replace(
        app.settings,
        remote_nodes=(
            app.settings.remote_nodes[0],
            RemoteNode("vendor-web", "VENDOR", "127.0.0.1", 104, role="vendor"),
        ),
    )
    _receive(app, _study(), tmp_path)
    job = _run_until_finished(app)
    assert job["state"] == "failed"
    assert job["reason"] == (
        "remote node 'vendor-web' has protocol dicom; this package needs a dicomweb node"
    )
    app.db.close()
