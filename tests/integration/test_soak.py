"""Soak: many studies from several concurrent associations while the PACS goes away and
comes back; the service's memory is sampled throughout and nothing may be lost.

Several DCMTK ``storescu`` processes (the modalities) send at once to ``aifi-app serve``;
a real Orthanc is the PACS. While results are being delivered Orthanc is stopped for a
while and started again. At the end every sent instance is in the queue and the spool
exactly once, every study has exactly one job, delivered, Orthanc holds exactly its two
result objects per study, and the database passes ``PRAGMA integrity_check``. The
service's resident memory is printed (start, after the first job, peak, end) and its
growth after warm-up is bounded.

The default is a small run. The full soak (200 studies, 10,000 instances)::

    AIFI_SOAK_STUDIES=200 AIFI_SOAK_INSTANCES=50 .venv/bin/python -m pytest -s \\
        tests/integration/test_soak.py
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest, write
from tests.helpers.appliance import ApplianceProcess
from tests.helpers.ports import free_port
from tests.helpers.tools import storescu

pytestmark = [pytest.mark.orthanc, pytest.mark.dcmtk, pytest.mark.slow]

STUDIES = int(os.environ.get("AIFI_SOAK_STUDIES", "12"))
INSTANCES = int(os.environ.get("AIFI_SOAK_INSTANCES", "20"))
MODALITIES = 4  # concurrent associations
OUTAGE_SECONDS = 15.0
GROWTH_BOUND = 150 * 1024 * 1024  # resident memory growth allowed after warm-up
MB = 1024 * 1024


class RssSampler(threading.Thread):
    def __init__(self, app: ApplianceProcess) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.done.wait(0.5):
            try:
                self.samples.append((time.monotonic() - t0, self.app.rss_bytes()))
            except (OSError, RuntimeError):
                return


def _count(db_path: Path, sql: str) -> int:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute(sql).fetchone()[0])
    finally:
        db.close()


def test_soak_concurrent_modalities_with_pacs_outage(tmp_path: Path, orthanc_factory) -> None:
    port = free_port()
    orthanc = orthanc_factory({"aifi": ("AIFI", "127.0.0.1", port)})
    app = ApplianceProcess(
        tmp_path / "app", pacs=(orthanc.aet, orthanc.dicom_port), port=port, idle_seconds=5.0
    )
    # the modalities' studies: one folder per modality, STUDIES x INSTANCES small images
    pixels = phantom_chest(size=32)
    folders = [tmp_path / f"modality{m}" for m in range(MODALITIES)]
    sent_uids: set[str] = set()
    study_uids: list[str] = []
    for s in range(STUDIES):
        study_uid = generate_uid()
        study_uids.append(study_uid)
        patient = demo_patient(s % 9 + 1)
        for _ in range(INSTANCES):
            ds = chest_radiograph(patient, pixels, study_uid=study_uid)
            sent_uids.add(str(ds.SOPInstanceUID))
            write(ds, folders[s % MODALITIES] / study_uid)
    total = len(sent_uids)
    db_path = app.data_dir / "aifi.sqlite3"

    app.start()
    sampler = RssSampler(app)
    sampler.start()
    t0 = time.monotonic()
    sends = [threading.Thread(target=storescu, args=(folder, app.port)) for folder in folders]
    for t in sends:
        t.start()
    # the PACS goes away once deliveries have begun, and comes back a while later
    delivered = "SELECT COUNT(*) FROM jobs WHERE state = 'delivered'"
    while _count(db_path, delivered) < 1:
        assert time.monotonic() - t0 < 600, "nothing was delivered"
        time.sleep(0.2)
    warm_rss = app.rss_bytes()
    orthanc.stop()
    outage_start = time.monotonic()
    time.sleep(OUTAGE_SECONDS)
    waiting = _count(db_path, "SELECT COUNT(*) FROM jobs WHERE state = 'result_received'")
    orthanc.start()
    outage = time.monotonic() - outage_start
    for t in sends:
        t.join(1800)
    received_at = time.monotonic() - t0
    deadline = time.monotonic() + 1800
    while _count(db_path, delivered) < STUDIES:
        assert time.monotonic() < deadline, "not everything was delivered"
        assert app.proc is not None and app.proc.poll() is None, "the service died"
        time.sleep(1)
    elapsed = time.monotonic() - t0
    sampler.done.set()
    sampler.join(5)
    end_rss = app.rss_bytes()
    assert app.stop() == 0

    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = [u for (u,) in db.execute("SELECT sop_instance_uid FROM instances")]
        paths = [p for (p,) in db.execute("SELECT path FROM instances")]
        per_study = db.execute(
            "SELECT s.study_uid, COUNT(DISTINCT s.id), COUNT(j.id), SUM(j.state = 'delivered')"
            " FROM studies s LEFT JOIN jobs j ON j.study_id = s.id GROUP BY s.study_uid"
        ).fetchall()
    finally:
        db.close()
    assert len(kept) == total and set(kept) == sent_uids  # every instance, exactly once
    assert all((app.data_dir / p).is_file() for p in paths)
    assert sorted(r[0] for r in per_study) == sorted(study_uids)
    assert all(r[1:] == (1, 1, 1) for r in per_study), [r for r in per_study if r[1:] != (1, 1, 1)]
    assert len(orthanc.get("/studies")) == STUDIES
    assert len(orthanc.get("/instances")) == 2 * STUDIES  # each study's SC and SR, once

    rss = [r for _, r in sampler.samples]
    start_rss = rss[0]
    peak = max(rss)
    print(
        f"\nsoak: {STUDIES} studies, {total} instances over {MODALITIES} concurrent associations;"
        f" received in {received_at:.0f} s, all delivered in {elapsed:.0f} s; PACS down"
        f" {outage:.0f} s with {waiting} job(s) waiting; RSS start {start_rss / MB:.0f} MB,"
        f" after first job {warm_rss / MB:.0f} MB, peak {peak / MB:.0f} MB, end"
        f" {end_rss / MB:.0f} MB ({len(rss)} samples); lost: 0"
    )
    assert end_rss - warm_rss < GROWTH_BOUND
