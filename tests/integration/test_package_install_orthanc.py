"""A vendor package installed from a file while the appliance runs (its own process) takes
the next study; results land in Orthanc. Unsigned and tampered packages are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aifi_app.algorithms.signing import public_key_text
from aifi_app.sample_studies import SamplePatient, chest_radiograph, phantom_chest, write
from tests.helpers.appliance import ApplianceProcess
from tests.helpers.packages import make_package, zip_package
from tests.helpers.ports import free_port
from tests.helpers.tools import dsrdump, storescu

pytestmark = [pytest.mark.orthanc, pytest.mark.dcmtk, pytest.mark.slow]

VENDOR_KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
PATIENT = SamplePatient("Visser^Anna", "PID4455", "19700101", "F", "ACC991")


def _cli(app: ApplianceProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aifi_app", "algorithms", *args, "--config", str(app.config)],
        capture_output=True,
        text=True,
        env=app.env,
        timeout=60,
        check=False,
    )


def test_install_while_serving_routes_next_study_to_it(tmp_path: Path, orthanc_factory) -> None:
    port = free_port()
    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", port)})
    extra = (
        "[algorithms]\n"
        "signed_packages_only = true\n"
        f'trusted_vendor_keys = ["{public_key_text(VENDOR_KEY.public_key())}"]\n'
        "[[routes]]\n"
        'name = "vendor chest"\n'
        'algorithm = "vendor-cxr"\n'
        'modalities = ["CR", "DX"]\n'
    )
    app = ApplianceProcess(
        tmp_path / "app", pacs=(orthanc.aet, orthanc.dicom_port), port=port, extra_toml=extra
    )
    app.start()
    try:
        unsigned = zip_package(make_package(tmp_path / "u"), tmp_path / "unsigned.zip")
        refused = _cli(app, "install", str(unsigned))
        assert refused.returncode == 1
        assert "accepts signed packages only" in refused.stderr

        tampered = make_package(tmp_path / "t", key=VENDOR_KEY)
        (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes()[:-1])
        refused = _cli(app, "install", str(zip_package(tampered, tmp_path / "tampered.zip")))
        assert refused.returncode == 1
        assert "model.onnx does not match its SHA-256" in refused.stderr

        signed = make_package(tmp_path / "s", key=VENDOR_KEY)
        installed = _cli(
            app, "install", str(zip_package(signed, tmp_path / "signed.zip", top_folder=True))
        )
        assert installed.returncode == 0, installed.stderr
        assert "vendor-cxr installed 2.0.0" in installed.stdout
        assert "signed by" in installed.stdout

        ds = chest_radiograph(PATIENT, phantom_chest())
        storescu([write(ds, tmp_path / "modality")], app.port)
        snap = app.wait_for(
            lambda s: (
                bool(s["jobs"]) and s["jobs"][0]["state"] in ("delivered", "rejected", "failed")
            ),
            what="the job to finish",
        )
        job = snap["jobs"][0]
        assert (job["algorithm_id"], job["state"]) == ("vendor-cxr", "delivered"), job["reason"]
        found = orthanc.wait_for_instances(str(ds.StudyInstanceUID), 2)
        assert {i["PatientID"] for i in found} == {PATIENT.patient_id}
        sr = next(i for i in found if i["SOPClassUID"].startswith("1.2.840.10008.5.1.4.1.1.88."))
        (tmp_path / "sr.dcm").write_bytes(orthanc.file(sr["ID"]))
        report = dsrdump(tmp_path / "sr.dcm")
        assert "2.0.0" in report and "Example Vendor" in report

        listing = _cli(app, "list")
        assert "vendor-cxr" in listing.stdout and "enabled" in listing.stdout
    finally:
        assert app.stop() == 0
