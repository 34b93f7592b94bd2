"""The evaluation on a real chain: DCMTK storescu -> appliance (own process) -> Orthanc, a
verdict through ``aifi-app feedback``, then ``aifi-app report``: every stage timed, the PACS
counted available, and none of the planted identifiers in what the report wrote."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aifi_app.sample_studies import SamplePatient, chest_radiograph, phantom_chest, write
from tests.helpers.appliance import ApplianceProcess, all_jobs
from tests.helpers.ports import free_port
from tests.helpers.tools import storescu

pytestmark = [pytest.mark.orthanc, pytest.mark.dcmtk, pytest.mark.slow]

PATIENT = SamplePatient(
    name="Verhoeven-Smit^Anna^Louise",
    patient_id="PID5512034",
    birth_date="19580927",
    sex="F",
    accession="ACC77100299",
)


def _rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / f"{name}.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_report_of_a_real_chain(tmp_path: Path, orthanc_factory) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", port)})
    app = ApplianceProcess(tmp_path / "app", pacs=(orthanc.aet, orthanc.dicom_port), port=port)
    app.start()
    ds = chest_radiograph(PATIENT, phantom_chest())
    ds.StudyDescription = "Thorax Verhoeven-Smit PID5512034"
    ds.ProtocolName = "X thorax PA Verhoeven"
    ds.ManufacturerModelName = "DR-7000"
    secrets = [
        "Verhoeven",
        "Smit",
        PATIENT.patient_id,
        PATIENT.accession,
        PATIENT.birth_date,
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
    ]
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=1), today + timedelta(days=1)
    days = ["--from", first.isoformat(), "--to", last.isoformat()]
    try:
        storescu([write(ds, tmp_path / "modality")], app.port)
        snap = app.wait_for(all_jobs("delivered", 1), what="the job to be delivered")
        job_id = str(snap["jobs"][0]["id"])
        app.cli("feedback", job_id, "false-positive", "--who", "MB",
                "--comment", "Verhoeven-Smit: no consolidation")  # fmt: skip
        out = tmp_path / "report"
        app.cli("report", *days, "--out", str(out))
        (job,) = _rows(out, "job_stages")
        assert job["job_id"] == job_id and job["state"] == "delivered"
        for stage in ("completion_wait", "queued", "pseudonymise", "model", "build_results",
                      "reidentify", "deliver", "turnaround"):  # fmt: skip
            assert job[stage] != "" and float(job[stage]) >= 0, stage
        assert job["submit"] == ""
        timed = ("pseudonymise", "model", "build_results", "reidentify", "deliver", "turnaround")
        print("\nreal chain stages (s):", {k: job[k] for k in timed})
        assert float(job["turnaround"]) >= float(job["deliver"])
        (pacs,) = _rows(out, "node_availability")
        assert (pacs["node"], pacs["failed_checks"], pacs["down_seconds"]) == ("PACS", "0", "0.0")
        assert int(pacs["checks"]) >= 1
        (verdict,) = _rows(out, "verdicts")
        assert (verdict["job_id"], verdict["verdict"]) == (job_id, "false_positive")
        scanner = [r for r in _rows(out, "input_variation") if r["dimension"] == "scanner"]
        assert [r["value"] for r in scanner] == ["AIFI demo DR-7000"]
        protocol = [r for r in _rows(out, "input_variation") if r["dimension"] == "protocol"]
        assert [r["value"] for r in protocol] == ["X thorax PA"]
        files = [p for p in out.iterdir() if p.is_file()]
        for path in files:
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, (path.name, secret)
    finally:
        assert app.stop() == 0
    # stopped cleanly: the run counts as ended by its stop event
    again = tmp_path / "report-after-stop"
    app.cli("report", *days, "--out", str(again))
    (service,) = _rows(again, "service_availability")
    assert (service["starts"], service["unclean_ends"]) == ("1", "0")
    assert float(service["availability"]) > 0
