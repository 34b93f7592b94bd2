"""The studies the benchmarks send: a 500-slice CT and a 2-image chest radiograph study."""

from __future__ import annotations

from pathlib import Path

from pydicom.uid import generate_uid

from aifi_app.sample_studies import chest_radiograph, ct_series, demo_patient, phantom_chest


def make_ct(folder: Path, slices: int) -> list[Path]:
    """A CT of ``slices`` 512x512 16-bit uncompressed images (about 0.5 MB each)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in ct_series(demo_patient(1), slices, size=512):
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
