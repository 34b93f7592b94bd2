"""The REST/JSON runner against an HTTPS vendor simulator on loopback (a certificate from a
test CA, a bearer token from the keyring): the answer mapped to findings, what left the
box, and each failure with its reason in words: wrong token, a certificate from another
CA, no answer in time, an answer that is not JSON or lacks the declared value."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread

from aifi_app.algorithms import lifecycle
from aifi_app.algorithms.findings import RegionFinding
from aifi_app.algorithms.http_runner import HttpRunner
from aifi_app.algorithms.onnx_runner import InferenceError
from aifi_app.algorithms.package import PackageError, load_package
from aifi_app.algorithms.signing import TrustPolicy
from aifi_app.config.settings import RemoteNode, Route, Settings
from aifi_app.demo import DemoPacs
from aifi_app.pseudonymise import Pseudonymiser
from aifi_app.sample_studies import SamplePatient, chest_radiograph, phantom_chest
from aifi_app.secrets import set_node_token
from aifi_app.service import Appliance
from tests.helpers.file_keyring import file_keyring
from tests.helpers.http_vendor import HttpVendor
from tests.helpers.packages import HTTP_MEASUREMENT, make_http_package
from tests.helpers.tls_ca import TlsFiles, make_ca

PATIENT = SamplePatient("Jansen^Lotte", "PID4242", "19800101", "F", "ACC4242")
TOKEN = "s3cr3t-vendor-token"
ANSWER: dict[str, Any] = {
    "result": {
        "probability": 0.83,
        "bone_age_years": 8.4,
        "detections": [
            {"x0": 10, "y0": 20, "x1": 110, "y1": 60, "score": 0.91},
            {"x0": 5, "y0": 5, "x1": 15, "y1": 15, "score": 0.2},
        ],
    }
}
BOXES = """score = "result.probability"
regions = "result.detections"
region_score = "score"
region_min_score = 0.5"""


@pytest.fixture(autouse=True)
def keyring_with_token(tmp_path: Path) -> Iterator[None]:
    with file_keyring(tmp_path / "keyring"):
        set_node_token("vendor-api", TOKEN)
        yield


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_ca(tmp_path / "ca")


@pytest.fixture
def original() -> Dataset:
    ds = chest_radiograph(PATIENT, phantom_chest())
    ds.BodyPartExamined = "WRIST"
    return ds


def _pseudonymised(ds: Dataset) -> Dataset:
    return Pseudonymiser(b"k" * 32, frozenset()).pseudonymise(ds)


def _settings(url: str, ca_file: Path) -> Settings:
    node = RemoteNode("vendor-api", protocol="http", url=url, role="vendor", ca_file=str(ca_file))
    return Settings(remote_nodes=(node,))


def _runner(tmp_path: Path, vendor: HttpVendor, ca_file: Path, **package: Any) -> HttpRunner:
    loaded = load_package(make_http_package(tmp_path / "package", **package))
    return HttpRunner(loaded, lambda: _settings(vendor.url, ca_file))


def _forbidden(ds: Dataset) -> tuple[str, ...]:
    return (
        PATIENT.name,
        "Jansen",
        PATIENT.patient_id,
        PATIENT.accession,
        str(ds.StudyInstanceUID),
        str(ds.SOPInstanceUID),
    )


def test_answer_is_mapped_to_a_finding_and_boxes(
    tmp_path: Path, tls: TlsFiles, original: Dataset
) -> None:
    vendor = HttpVendor(tls, token=TOKEN, answer=ANSWER, forbidden=_forbidden(original))
    try:
        image = _pseudonymised(original)
        result = _runner(tmp_path, vendor, tls.ca_file, response=BOXES).run([image])
    finally:
        vendor.stop()
    assert vendor.leaks == []
    assert vendor.requests[0][0] == "/v1/analyze"
    assert vendor.requests[0][1].startswith("multipart/form-data")
    assert [str(d.SOPInstanceUID) for d in vendor.received] == [str(image.SOPInstanceUID)]
    (finding,) = result.findings
    assert (finding.score, finding.positive, finding.label) == (0.83, True, "Fracture suspected")
    assert finding.source_sop_instance_uid == image.SOPInstanceUID
    # the box under region_min_score is left out; the other keeps its pixel coordinates
    assert result.regions == (
        RegionFinding(
            concept=finding.concept,
            label="Fracture (0.91)",
            shape="box",
            points=((10.0, 20.0), (110.0, 60.0)),
            source_sop_instance_uid=str(image.SOPInstanceUID),
            source_sop_class_uid=str(image.SOPClassUID),
            source_series_instance_uid=str(image.SeriesInstanceUID),
            score=0.91,
        ),
    )


def test_regression_value_becomes_a_measurement_with_a_single_dicom_body(
    tmp_path: Path, tls: TlsFiles, original: Dataset
) -> None:
    vendor = HttpVendor(tls, token=TOKEN, answer=ANSWER)
    try:
        runner = _runner(
            tmp_path,
            vendor,
            tls.ca_file,
            upload="dicom",
            response='value = "result.bone_age_years"',
            output=HTTP_MEASUREMENT,
        )
        result = runner.run([_pseudonymised(original)])
    finally:
        vendor.stop()
    assert vendor.requests[0][1] == "application/dicom"
    (measurement,) = result.measurements
    assert (measurement.value, measurement.unit.value) == (8.4, "a")
    assert measurement.label == "Bone age 8.4 a"


def _failure(tmp_path: Path, vendor: HttpVendor, ca_file: Path, image: Dataset, **kw: Any) -> str:
    try:
        with pytest.raises(InferenceError) as caught:
            _runner(tmp_path, vendor, ca_file, **kw).run([image])
    finally:
        vendor.stop()
    return str(caught.value)


def test_wrong_token_is_refused_in_words(tmp_path: Path, tls: TlsFiles, original: Dataset) -> None:
    vendor = HttpVendor(tls, token="another-token", answer=ANSWER)
    reason = _failure(tmp_path, vendor, tls.ca_file, _pseudonymised(original))
    assert reason == (
        f"sending the images: vendor-api ({vendor.url}) refused the credentials"
        " (HTTP 401 Unauthorized)"
    )


def test_certificate_of_another_ca_is_refused(
    tmp_path: Path, tls: TlsFiles, original: Dataset
) -> None:
    other = make_ca(tmp_path / "other-ca", "Somebody else's CA")
    vendor = HttpVendor(tls, token=TOKEN, answer=ANSWER)
    reason = _failure(tmp_path, vendor, other.ca_file, _pseudonymised(original))
    assert reason == (
        f"sending the images: vendor-api ({vendor.url}) refused:"
        " its HTTPS certificate could not be verified"
    )
    assert vendor.requests == [] and vendor.received == []  # nothing was sent


def test_plain_http_to_another_machine_is_refused(tmp_path: Path, original: Dataset) -> None:
    loaded = load_package(make_http_package(tmp_path / "package"))
    node = RemoteNode("vendor-api", protocol="http", url="http://vendor.example/ai", role="vendor")
    runner = HttpRunner(loaded, lambda: Settings(remote_nodes=(node,)))
    with pytest.raises(InferenceError) as caught:
        runner.run([_pseudonymised(original)])
    assert "plain http to another machine" in str(caught.value)
    assert "allow_plain_http" in str(caught.value)


def test_no_answer_in_time(tmp_path: Path, tls: TlsFiles, original: Dataset) -> None:
    vendor = HttpVendor(tls, token=TOKEN, answer=ANSWER, mode="slow", slow_seconds=3)
    reason = _failure(tmp_path, vendor, tls.ca_file, _pseudonymised(original), timeout=0.5)
    assert reason == (
        f"sending the images: vendor-api ({vendor.url}) did not answer within 0.5 s (timed out)"
    )


def test_answer_that_is_not_json(tmp_path: Path, tls: TlsFiles, original: Dataset) -> None:
    vendor = HttpVendor(tls, token=TOKEN, answer=ANSWER, mode="malformed")
    reason = _failure(tmp_path, vendor, tls.ca_file, _pseudonymised(original))
    assert reason == "the answer of vendor-api is not valid JSON (text/html, 26 bytes)"


def test_answer_without_the_declared_value(
    tmp_path: Path, tls: TlsFiles, original: Dataset
) -> None:
    vendor = HttpVendor(tls, token=TOKEN, answer={"result": {"label": "PID4242"}})
    reason = _failure(tmp_path, vendor, tls.ca_file, _pseudonymised(original))
    assert reason == (
        "the answer of vendor-api has nothing at 'result.probability'"
        " (runner.response in the manifest)"
    )
    assert "PID4242" not in reason


def test_manifest_needs_the_path_of_its_output(tmp_path: Path) -> None:
    folder = make_http_package(tmp_path / "p", response='regions = "result.detections"')
    with pytest.raises(
        PackageError, match=r"output kind 'classification' needs runner.response.score"
    ):
        load_package(folder)


def test_chain_delivers_the_vendors_findings_reidentified(
    tmp_path: Path, tls: TlsFiles, original: Dataset
) -> None:
    from tests.pipeline.test_chain_in_process import KEY, _receive
    from tests.pipeline.test_chain_in_process import _settings as chain_settings

    pacs = DemoPacs(tmp_path / "pacs")
    vendor = HttpVendor(tls, token=TOKEN, answer=ANSWER, forbidden=_forbidden(original))
    try:
        base = chain_settings(tmp_path, pacs.port)
        settings = dataclasses.replace(
            base,
            remote_nodes=(*base.remote_nodes, *_settings(vendor.url, tls.ca_file).remote_nodes),
            routes=(Route(name="fracture", algorithm="fracture-http", modalities=("CR", "DX")),),
        )
        app = Appliance(settings, secret_for=lambda _: KEY)
        package = make_http_package(tmp_path / "package", response=BOXES)
        lifecycle.install(package, app.data_dir, app.db, TrustPolicy())
        _receive(app, original, tmp_path)
        deadline = time.monotonic() + 60
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            app.worker.run_once()
            app.dispatcher.run_once()
            job = app.db.query("SELECT * FROM jobs")[0]
            if job["state"] in ("delivered", "failed", "rejected"):
                break
            time.sleep(0.05)
    finally:
        vendor.stop()
        pacs.stop()
    assert job["state"] == "delivered", job["reason"]
    assert vendor.leaks == []
    results = [dcmread(p) for p in pacs.folder.glob("*.dcm")]
    assert sorted(str(r.Modality) for r in results) == ["OT", "SR"]
    for r in results:
        assert r.PatientID == PATIENT.patient_id
        assert r.StudyInstanceUID == original.StudyInstanceUID
    events = [str(r["detail"]) for r in app.db.query("SELECT detail FROM audit_events")]
    assert any("remote REST/JSON runner" in e for e in events)
    app.db.close()
