"""The studies the benchmarks send: a 500-slice CT and a 2-image chest radiograph study."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.uid import generate_uid

from aifi_app.sample_studies import chest_radiograph, ct_series, demo_patient, phantom_chest

if TYPE_CHECKING:
    from aifi_app.service import Appliance


def phantom_chest_slice(n: int, slices: int, size: int = 512) -> np.ndarray:
    """Slice ``n`` of a synthetic chest CT (stored values, HU + 1024): air around an
    elliptic body (40 HU) holding two ellipsoid lungs (-850 HU) with a vessel each, plus
    noise; the lungs span the middle 80 % of the slices, so the lung volume is real."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rng = np.random.default_rng(n)
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    hu[((x - 0.5) / 0.44) ** 2 + ((y - 0.5) / 0.34) ** 2 <= 1] = 40.0
    z = (n + 0.5) / slices  # 0..1 along the patient axis
    half = 0.4 * (1 - ((z - 0.5) / 0.4) ** 2) if abs(z - 0.5) < 0.4 else 0.0
    for cx in (0.3, 0.7):
        if half > 0:
            lung = ((x - cx) / (0.15 * half**0.5)) ** 2 + ((y - 0.5) / (0.24 * half**0.5)) ** 2
            hu[lung <= 1] = -850.0
            hu[(x - cx) ** 2 + (y - 0.5) ** 2 <= 0.0002] = 40.0
    hu += rng.normal(0, 20, hu.shape).astype(np.float32)
    return (hu + 1024).astype(np.int16)


def make_ct(folder: Path, slices: int) -> list[Path]:
    """A chest CT of ``slices`` 512x512 16-bit uncompressed images (about 0.5 MB each),
    with lungs the ct-lung-volume package measures (:func:`phantom_chest_slice`)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in ct_series(demo_patient(1), slices, size=512):
        ds.PixelData = phantom_chest_slice(ds.InstanceNumber - 1, slices).tobytes()
        path = folder / f"{ds.InstanceNumber:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_radiograph_study(folder: Path, size: int = 2048) -> list[Path]:
    """Two chest radiographs (PA and a second view) of one study, 8-bit, size x size."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid()
    paths = []
    for n in range(2):
        ds = chest_radiograph(demo_patient(2), phantom_chest(size, seed=n), study_uid=study_uid)
        ds.InstanceNumber = n + 1
        path = folder / f"{n + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def size_of(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def pseudonymised_ct_job(work: Path, slices: int) -> tuple[Appliance, int]:
    """An appliance (not serving; its data under ``work``) that has taken a synthetic
    CT of ``slices`` slices into its queue as if received, routed it to the bundled
    ``ct-lung-volume`` package and pseudonymised its job; and that job's id."""
    import shutil

    from pydicom import dcmread

    from aifi_app.config.settings import (
        CompletionSettings,
        NodeSettings,
        Route,
        Settings,
        StorageSettings,
    )
    from aifi_app.service import Appliance
    from aifi_app.store import jobs

    ct = make_ct(work / "ct", slices)
    settings = Settings(
        node=NodeSettings(port=0),
        completion=CompletionSettings(idle_seconds=0.0),
        storage=StorageSettings(data_dir=str(work / "data")),
        routes=(Route(name="ct", algorithm="ct-lung-volume", modalities=("CT",)),),
    )
    app = Appliance(settings, secret_for=lambda _: b"k" * 32)
    app.node.incoming.mkdir(parents=True, exist_ok=True)
    for path in ct:
        uid = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        target = app.node.incoming / "x.dcm"
        shutil.copyfile(path, target)
        app.node.accept_file(target, "MODALITY", str(uid.SOPInstanceUID))
    for study_id in jobs.due_studies(app.db):
        jobs.mark_complete(app.db, study_id)
    for study_id in jobs.complete_studies(app.db):
        app.worker.route(study_id)
    (job_id,) = [int(r["id"]) for r in app.db.query("SELECT id FROM jobs")]
    app.processor.pseudonymise(job_id)
    return app, job_id
