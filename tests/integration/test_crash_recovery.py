"""SIGKILL during receive, processing and delivery; after a restart every study is
delivered exactly once and the database is intact.

The kill points are named failpoints (``AIFI_FAILPOINTS``): the process kills itself with
SIGKILL exactly there, as a power cut would, so every phase is hit on every run.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from tests.helpers.appliance import ApplianceProcess, all_jobs
from tests.helpers.ports import free_port
from tests.helpers.tools import storescu

pytestmark = [pytest.mark.orthanc, pytest.mark.dcmtk, pytest.mark.slow]

FAILPOINTS = [
    "receive.after_move",
    "receive.after_record",
    "processing.after_pseudonymised_files",
    "processing.after_results_written",
    "delivery.after_send",
    "delivery.before_delivered",
]


@pytest.mark.parametrize("failpoint", FAILPOINTS)
def test_kill_and_restart_delivers_exactly_once(
    tmp_path: Path, orthanc_factory, failpoint: str
) -> None:
    port = free_port()
    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", port)})
    app = ApplianceProcess(tmp_path / "app", pacs=(orthanc.aet, orthanc.dicom_port), port=port)
    studies = []
    for n in range(2):
        ds = chest_radiograph(demo_patient(n + 1), phantom_chest(seed=n))
        studies.append((write(ds, tmp_path / f"study{n}"), ds))

    app.start(failpoints=failpoint)
    first = storescu([p for p, _ in studies], app.port, check=False)
    assert app.wait_exit(90) == -9, "the failpoint did not kill the service"
    if failpoint.startswith("receive."):
        # the modality saw the association break, so it did not get success for everything
        assert first.returncode != 0 or "Failed" in first.stdout + first.stderr

    app.start()
    if failpoint.startswith("receive."):
        storescu([p for p, _ in studies], app.port)  # the modality sends again
    snap = app.wait_for(all_jobs("delivered", 2), what="both jobs delivered after restart")
    assert len(snap["jobs"]) == 2
    primary = [s for s in snap["studies"] if s["kind"] == "primary"]
    assert len(primary) == 2
    assert all(s["instance_count"] == 1 for s in primary)

    for _, ds in studies:
        found = orthanc.wait_for_instances(str(ds.StudyInstanceUID), 2, timeout=10)
        assert len(found) == 2, f"study has {len(found)} result objects, expected exactly 2"
        assert {i["PatientID"] for i in found} == {str(ds.PatientID)}
    assert app.stop() == 0

    db = sqlite3.connect(app.data_dir / "aifi.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        dup = db.execute(
            "SELECT COUNT(*) FROM (SELECT study_id, algorithm_id FROM jobs"
            " GROUP BY 1, 2 HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        assert dup == 0
    finally:
        db.close()
