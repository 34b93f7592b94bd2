"""The whole chain with real parts: DCMTK storescu -> appliance (own process) -> Orthanc."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from aifi_app.sample_studies import SamplePatient, chest_radiograph, phantom_chest, write
from tests.conftest import PNEUMONIAMNIST
from tests.helpers.appliance import ApplianceProcess, all_jobs
from tests.helpers.ports import free_port
from tests.helpers.tools import dciodvfy_errors, dsrdump, storescu

pytestmark = [pytest.mark.orthanc, pytest.mark.dcmtk, pytest.mark.dicom3tools, pytest.mark.slow]

PATIENT = SamplePatient(
    name="Jansen-de Vries^Maria^Johanna",
    patient_id="PID7731902",
    birth_date="20150312",
    sex="F",
    accession="ACC88112233",
)


def _chest_pixels() -> np.ndarray:
    if PNEUMONIAMNIST.exists():
        data = np.load(PNEUMONIAMNIST)
        index = int(np.flatnonzero(data["test_labels"].ravel() == 1)[0])
        return data["test_images"][index]
    return phantom_chest()


def _planted_study(folder: Path) -> tuple[Path, object]:
    ds = chest_radiograph(PATIENT, _chest_pixels())
    ds.InstitutionName = "Ziekenhuis Rijnstate Arnhem"
    ds.OperatorsName = "Bakker^Pieter"
    ds.ImageComments = "Patient Jansen-de Vries, kamer 12"
    ds.add_new(0x00091010, "LO", "PRIVATE Jansen-de Vries")
    return write(ds, folder), ds


def test_chest_xray_results_land_in_orthanc_under_original_study(
    tmp_path: Path, orthanc_factory
) -> None:
    port = free_port()
    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", port)})
    app = ApplianceProcess(tmp_path / "app", pacs=(orthanc.aet, orthanc.dicom_port), port=port)
    app.start()
    try:
        path, original = _planted_study(tmp_path / "modality")
        storescu([path], app.port)
        snap = app.wait_for(all_jobs("delivered", 1), what="the job to be delivered")
        job = snap["jobs"][0]
        assert job["algorithm_id"] == "pneumonia-cxr"
        assert {o["kind"] for o in job["outputs"]} == {"sc", "sr"}
        assert "turnaround_seconds" in job
        print(f"\nturnaround {job['turnaround_seconds']} s; stages {job['stage_seconds']}")

        found = orthanc.wait_for_instances(str(original.StudyInstanceUID), 2)
        by_kind = {
            "sr" if i["SOPClassUID"].startswith("1.2.840.10008.5.1.4.1.1.88.") else "sc": i
            for i in found
        }
        assert len(found) == 2
        assert set(by_kind) == {"sc", "sr"}
        assert by_kind["sc"]["SOPClassUID"].startswith("1.2.840.10008.5.1.4.1.1.7")
        for inst in found:
            assert inst["PatientID"] == PATIENT.patient_id
            assert inst["PatientName"] == PATIENT.name
            assert inst["AccessionNumber"] == PATIENT.accession
            assert inst["StudyInstanceUID"] == str(original.StudyInstanceUID)
            data = orthanc.file(inst["ID"])
            out = tmp_path / f"{inst['ID']}.dcm"
            out.write_bytes(data)
            assert dciodvfy_errors(out) == [], f"dciodvfy errors in {inst['SOPClassUID']}"
            ds = dcmread(io.BytesIO(data))
            refs = ds.get("SourceImageSequence") or ds.get(
                "CurrentRequestedProcedureEvidenceSequence"
            )
            assert str(original.SOPInstanceUID) in str(refs)
        sr_file = tmp_path / f"{by_kind['sr']['ID']}.dcm"
        report = dsrdump(sr_file)
        assert "Pneumonia" in report
        assert "1.0.0" in report

        # What reached the algorithm held none of the original identifiers
        work = list((app.data_dir / "work").rglob("*.dcm"))
        assert work, "the pseudonymised input is kept in the work folder"
        secrets = [
            PATIENT.name,
            "Jansen",
            PATIENT.patient_id,
            PATIENT.accession,
            PATIENT.birth_date,
            "Rijnstate",
            "Bakker",
            str(original.StudyInstanceUID),
            str(original.SeriesInstanceUID),
            str(original.SOPInstanceUID),
        ]
        for f in work:
            raw = f.read_bytes()
            for secret in secrets:
                assert secret.encode() not in raw, "an original identifier reached the algorithm"
            ds = dcmread(f)
            assert ds.PatientIdentityRemoved == "YES"
            assert ds.PixelData == original.PixelData
    finally:
        assert app.stop() == 0
