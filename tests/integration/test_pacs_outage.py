"""The PACS (a real Orthanc) goes away while ``aifi-app serve`` runs: results wait, the
retries back off within the configured bound, the queue shows why, and everything is
delivered, once, when the PACS comes back."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from tests.helpers.appliance import ApplianceProcess, all_jobs
from tests.helpers.ports import free_port
from tests.helpers.tools import storescu

pytestmark = [pytest.mark.orthanc, pytest.mark.dcmtk, pytest.mark.slow]

RETRY_INITIAL = 0.5  # ApplianceProcess's [delivery] settings
RETRY_MAX = 2.0


def test_pacs_down_results_wait_then_all_delivered(tmp_path: Path, orthanc_factory) -> None:
    port = free_port()
    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", port)})
    app = ApplianceProcess(tmp_path / "app", pacs=(orthanc.aet, orthanc.dicom_port), port=port)
    app.start()
    try:
        orthanc.stop()  # the PACS goes away
        studies = [chest_radiograph(demo_patient(n), phantom_chest(seed=n)) for n in (1, 2)]
        storescu([write(ds, tmp_path / "modality") for ds in studies], app.port)

        def waiting(snap: dict) -> bool:  # type: ignore[type-arg]
            js = snap["jobs"]
            return len(js) == 2 and all(
                j["state"] == "result_received" and j["attempts"] >= 4 for j in js
            )

        snap = app.wait_for(waiting, what="results waiting for the PACS with retries")
        for job in snap["jobs"]:
            assert job["reason"].startswith("PACS not reachable: cannot connect to ORTHANC@")
            assert job["next_attempt_at"] is not None
            assert {o["state"] for o in job["outputs"]} == {"pending"}
        assert orthanc.proc is None

        orthanc.start()  # the PACS comes back on the same ports, with the same storage
        app.wait_for(all_jobs("delivered", 2), what="everything delivered after the outage")
        for ds in studies:
            found = orthanc.wait_for_instances(str(ds.StudyInstanceUID), 2, timeout=10)
            assert len(found) == 2
            assert {i["PatientID"] for i in found} == {str(ds.PatientID)}
        assert len(orthanc.get("/instances")) == 4
    finally:
        assert app.stop() == 0

    db = sqlite3.connect(app.data_dir / "aifi.sqlite3")
    try:
        waits = [
            float(re.search(r"next in ([0-9.]+) s", d).group(1))  # type: ignore[union-attr]
            for (d,) in db.execute(
                "SELECT detail FROM audit_events WHERE event = 'retry_scheduled' ORDER BY id"
            )
        ]
    finally:
        db.close()
    # per job the waits double from the initial wait and never exceed the bound
    assert len(waits) >= 8
    assert min(waits) == RETRY_INITIAL
    assert max(waits) == RETRY_MAX
    assert set(waits) <= {0.5, 1.0, 2.0}
