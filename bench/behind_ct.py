"""A radiograph study that arrives while a CT is in its model: its end-to-end time.

Issue 9: "A radiologist waits for the AI result of an emergency X-ray; a CT of 500
slices must not hold up the queue." One service (``aifi-app serve``) with the CT lung
volume route beside the built-in radiograph routes and Orthanc (stock, Nagle on) as the
PACS. Each run sends a fresh CT, waits until its job is in its model (``submitted``),
then sends a fresh 2-image radiograph study and measures from its last instance to its
results stored in Orthanc; then it waits for the CT's results before the next run. The
same runs with ``[completion] small_study_lane_images = 0`` (one worker lane, as before
the lanes) show what the radiograph waited for.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench import data
from bench.appliance_runs import CT_ROUTE, _find, _queue_rows, _study_uid, send_study
from bench.peers import start_orthanc
from bench.report import Row
from tests.helpers.appliance import ApplianceProcess, all_jobs

RADIOGRAPH_ROUTE = """
[[routes]]
name = "chest-xray-pneumonia"
algorithm = "pneumonia-cxr"
modalities = ["CR", "DX"]
body_parts = ["CHEST"]
"""
"""The built-in radiograph route (a settings file with routes replaces the built-in ones)."""
IDLE_SECONDS = 0.1
WAIT_SECONDS = 300.0


def _ct_job_state(data_dir: Path, study_uid: str) -> str | None:
    rows = _queue_rows(
        data_dir,
        "SELECT j.state FROM jobs j JOIN studies s ON s.id = j.study_id"
        " WHERE s.study_uid = ? AND j.algorithm_id = 'ct-lung-volume'",
        (study_uid,),
    )
    return str(rows[0][0]) if rows else None


def _in_model(data_dir: Path, study_uid: str) -> bool:
    return _ct_job_state(data_dir, study_uid) == "submitted"


def _stored(orthanc: object, study_uid: str, count: int) -> bool:
    return len(_find(orthanc, study_uid)) >= count


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _runs(work: Path, ct_slices: int, runs: int, lane_images: int) -> tuple[list[float], int]:
    """Seconds from each radiograph study's last instance to its results in Orthanc, and
    in how many runs the CT was still in its model when they arrived."""
    orthanc = start_orthanc(work / f"orthanc-behind-{lane_images}", nodelay=False)
    app = ApplianceProcess(
        work / f"behind-{lane_images}",
        pacs=(orthanc.aet, orthanc.dicom_port),
        idle_seconds=IDLE_SECONDS,
        completion_toml=f"small_study_lane_images = {lane_images}",
        extra_toml=CT_ROUTE + RADIOGRAPH_ROUTE,
    ).start()
    times: list[float] = []
    overlapped = 0
    try:
        warm = data.make_radiograph_study(work / "behind-warm", size=1024)
        send_study(warm, app.port, app.ae_title)
        app.wait_for(all_jobs("delivered", 1), timeout=WAIT_SECONDS, what="the warm-up study")
        expected = len(orthanc.instances_of_study(str(_study_uid(warm[0]))))
        for n in range(runs + 1):  # the first CT loads the lung volume's modules
            ct = data.make_ct(work / f"behind-ct-{n}", ct_slices if n else 70)
            ct_uid = str(_study_uid(ct[0]))
            rx = data.make_radiograph_study(work / f"behind-rx-{n}", size=1024)
            rx_uid = str(_study_uid(rx[0]))
            send_study(ct, app.port, app.ae_title)
            _wait(partial(_in_model, app.data_dir, ct_uid), "the CT's model")
            send_study(rx, app.port, app.ae_title)
            sent = time.perf_counter()
            _wait(partial(_stored, orthanc, rx_uid, expected), "the radiograph's results")
            elapsed = time.perf_counter() - sent
            ct_state = _ct_job_state(app.data_dir, ct_uid)
            _wait(partial(_stored, orthanc, ct_uid, 2), "the CT's results (SR and SEG)")
            shutil.rmtree(work / f"behind-ct-{n}")
            shutil.rmtree(work / f"behind-rx-{n}")
            if n:
                times.append(elapsed)
                overlapped += ct_state == "submitted"
                print(
                    f"  radiograph behind a CT (small-study lane up to {lane_images} images),"
                    f" run {n}: {elapsed:.2f} s; the CT's job then {ct_state}",
                    flush=True,
                )
    finally:
        app.stop()
        orthanc.stop()
    return times, overlapped


def radiograph_behind_ct(work: Path, ct_slices: int, runs: int) -> list[Row]:
    lanes, overlapped = _runs(work, ct_slices, runs, lane_images=20)
    one_lane, _ = _runs(work, ct_slices, runs, lane_images=0)
    print(
        f"  radiograph behind a CT: the CT still in its model when the radiograph's results"
        f" were stored in {overlapped} of {len(lanes)} run(s)",
        flush=True,
    )
    return [
        Row(
            f"radiograph while CT {ct_slices} in model",
            statistics.median(lanes),
            f"goal < 1 s + model; one lane {statistics.median(one_lane):.2f} s",
            None,
        ),
    ]
