"""SIGKILL at random points of receive -> process -> deliver, many times over.

Each run sends a few new studies with DCMTK ``storescu`` (the modality) to the appliance
(``aifi-app serve`` in its own process) and kills it with SIGKILL either after a random
delay or at a randomly chosen named failpoint. With the service dead it checks that every
instance storescu got a success status for is in the spool and in the queue and that
``PRAGMA integrity_check`` is ok; then it restarts the service, resends what was not
acknowledged (as a modality does), and checks that every study's results reach the real
Orthanc exactly once (instances and series counted through its REST API).

The default run is short. The full campaign, reproducible from the printed seed::

    AIFI_RANDOM_KILL_RUNS=50 .venv/bin/python -m pytest -s tests/integration/test_random_kill.py
    AIFI_RANDOM_KILL_SEED=<seed> AIFI_RANDOM_KILL_RUNS=50 ...   # replay one campaign
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from tests.helpers.appliance import ApplianceProcess
from tests.helpers.orthanc import Orthanc
from tests.helpers.ports import free_port
from tests.helpers.tools import acknowledged_files, start_storescu_verbose, storescu

pytestmark = [pytest.mark.orthanc, pytest.mark.dcmtk, pytest.mark.slow]

RUNS = int(os.environ.get("AIFI_RANDOM_KILL_RUNS", "6"))
SEED = int(os.environ.get("AIFI_RANDOM_KILL_SEED") or random.SystemRandom().randrange(2**32))

FAILPOINTS = [
    "receive.after_move",
    "receive.after_record",
    "processing.after_pseudonymised_files",
    "processing.after_results_written",
    "delivery.after_send",
    "delivery.before_delivered",
]
RESULTS_PER_STUDY = 2  # the pneumonia-cxr route's Secondary Capture and SR, one series each


@dataclass
class Sent:
    path: Path
    ds: Dataset


def _queue(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{data_dir / 'aifi.sqlite3'}?mode=ro", uri=True, timeout=30)


def check_dead_service(app: ApplianceProcess, acked: set[Path], sent: list[Sent]) -> None:
    """With the service killed: every acknowledged instance is in the spool and the queue."""
    by_path = {s.path: s for s in sent}
    db = sqlite3.connect(app.data_dir / "aifi.sqlite3", timeout=30)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for path in acked:
            uid = str(by_path[path].ds.SOPInstanceUID)
            row = db.execute(
                "SELECT i.path, s.study_uid FROM instances i JOIN studies s ON s.id = i.study_id"
                " WHERE i.sop_instance_uid = ?",
                (uid,),
            ).fetchone()
            assert row is not None, f"acknowledged instance {uid} is not in the queue"
            assert row[1] == str(by_path[path].ds.StudyInstanceUID)
            spooled = app.data_dir / row[0]
            assert spooled.is_file(), f"acknowledged instance {uid} is not in the spool"
            assert dcmread(spooled).PixelData == by_path[path].ds.PixelData
    finally:
        db.close()


def wait_all_delivered(app: ApplianceProcess, jobs: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    states: list[tuple[str, str | None]] = []
    while time.monotonic() < deadline:
        db = _queue(app.data_dir)
        try:
            states = db.execute("SELECT state, reason FROM jobs").fetchall()
        finally:
            db.close()
        if len(states) >= jobs and all(s == "delivered" for s, _ in states):
            return
        assert app.proc is not None and app.proc.poll() is None, "the service died"
        time.sleep(0.3)
    pending = [s for s in states if s[0] != "delivered"]
    raise AssertionError(f"{len(states)} jobs, not delivered: {pending[:5]}")


def check_pacs_exactly_once(orthanc: Orthanc, sent: list[Sent]) -> None:
    for s in sent:
        study_uid = str(s.ds.StudyInstanceUID)
        found = orthanc.wait_for_instances(study_uid, RESULTS_PER_STUDY, timeout=10)
        assert len(found) == RESULTS_PER_STUDY, f"study has {len(found)} result objects"
        assert {i["PatientID"] for i in found} == {str(s.ds.PatientID)}
        studies = orthanc.post(
            "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}
        )
        assert len(studies) == 1
        series = orthanc.get(f"/studies/{studies[0]}/series")
        assert len(series) == RESULTS_PER_STUDY


def test_random_sigkill_loses_nothing(tmp_path: Path, orthanc_factory) -> None:
    rng = random.Random(SEED)
    print(f"\nrandom-kill campaign: seed {SEED}, {RUNS} runs")
    port = free_port()
    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", port)})
    app = ApplianceProcess(
        tmp_path / "app", pacs=(orthanc.aet, orthanc.dicom_port), port=port, idle_seconds=0.5
    )
    total_studies = 0
    survived = 0
    modes: dict[str, int] = {}
    for run in range(RUNS):
        where = f"seed {SEED} run {run}"
        sent = []
        for _ in range(rng.randint(1, 3)):
            ds = chest_radiograph(
                demo_patient(rng.randint(1, 9)), phantom_chest(seed=rng.randint(0, 999))
            )
            sent.append(Sent(write(ds, tmp_path / f"run{run}"), ds))
        point = rng.choice(FAILPOINTS) if rng.random() < 0.5 else ""
        delay = rng.uniform(0.0, 5.0)
        modes[point or "timed"] = modes.get(point or "timed", 0) + 1

        app.start(failpoints=point)
        modality = start_storescu_verbose([s.path for s in sent], app.port)
        if point:
            try:
                app.wait_exit(90)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{where}: failpoint {point} was never reached")
        else:
            time.sleep(delay)
            app.kill()
        out, _ = modality.communicate(timeout=120)
        assert app.proc is not None and app.proc.returncode == -9, f"{where}: not killed"
        acked = acknowledged_files(out)
        try:
            check_dead_service(app, acked, sent)
        except AssertionError as exc:
            raise AssertionError(f"{where} ({point or f'{delay:.2f} s'}): {exc}") from exc

        app.start()
        missing = [s.path for s in sent if s.path not in acked]
        if missing:
            storescu(missing, app.port)  # the modality sends again what it did not get success for
        total_studies += len(sent)
        try:
            wait_all_delivered(app, total_studies)
            check_pacs_exactly_once(orthanc, sent)
        except AssertionError as exc:
            raise AssertionError(f"{where} ({point or f'{delay:.2f} s'}): {exc}") from exc
        assert app.stop() == 0
        db = _queue(app.data_dir)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            jobs = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        finally:
            db.close()
        assert jobs == total_studies, f"{where}: {jobs} jobs for {total_studies} studies"
        survived += 1
        print(f"run {run}: {len(sent)} studies, kill {point or f'after {delay:.2f} s'}: ok")
    total_in_pacs = len(orthanc.get("/instances"))
    assert total_in_pacs == RESULTS_PER_STUDY * total_studies
    print(
        f"random-kill campaign: seed {SEED}: {survived}/{RUNS} runs survived, {total_studies}"
        f" studies, {total_in_pacs} results in Orthanc, nothing lost; kills {modes}"
    )
