"""The built-in CT lung volume on a synthetic chest of known lung volume."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pydicom import Dataset

from aifi_app.algorithms.lung_volume import LungVolumeRunner
from aifi_app.algorithms.onnx_runner import InferenceError
from aifi_app.algorithms.package import builtin_package_dir, load_package
from aifi_app.algorithms.runners import RunnerCache
from aifi_app.sample_studies import ct_series, demo_patient

SIZE, SLICES, SPACING, THICKNESS = 64, 24, 6.0, 5.0


def phantom_volume() -> tuple[np.ndarray, np.ndarray]:
    """HU volume (slices, rows, cols) and its true lung mask: air outside an elliptic body
    (40 HU), two ellipsoid lungs (-850 HU) each holding a vessel (+40 HU)."""
    z, y, x = np.mgrid[0:SLICES, 0:SIZE, 0:SIZE].astype(float)
    body = ((x - 32) / 28) ** 2 + ((y - 32) / 22) ** 2 <= 1
    lungs = np.zeros_like(body)
    for cx in (20, 44):
        lungs |= ((x - cx) / 9) ** 2 + ((y - 32) / 14) ** 2 + ((z - 12) / 14) ** 2 <= 1
    vessel = lungs & (((x - 20) ** 2 + (y - 32) ** 2) <= 2)
    hu = np.full(body.shape, -1000.0)
    hu[body] = 40
    hu[lungs] = -850
    hu[vessel] = 40
    return hu, lungs


def phantom_series(hu: np.ndarray, thickness: float = THICKNESS) -> Iterator[Dataset]:
    for ds, plane in zip(ct_series(demo_patient(7), len(hu), size=SIZE), hu, strict=True):
        ds.PixelSpacing = [SPACING, SPACING]
        ds.SliceThickness = thickness
        ds.ImagePositionPatient = [0.0, 0.0, float(ds.InstanceNumber) * thickness]
        ds.PixelData = (plane + 1024).astype(np.int16).tobytes()
        yield ds


def _package():  # type: ignore[no-untyped-def]
    return load_package(builtin_package_dir() / "ct-lung-volume", builtin=True)


def test_volume_matches_the_phantom() -> None:
    hu, lungs = phantom_volume()
    images = list(phantom_series(hu))[::-1]  # arrival order must not matter
    runner = RunnerCache().get(_package())
    assert isinstance(runner, LungVolumeRunner)
    result = runner.run(images)
    (m,) = result.measurements
    expected_ml = lungs.sum() * SPACING * SPACING * THICKNESS / 1000
    assert m.value == pytest.approx(expected_ml, abs=0.1)
    assert (m.unit.value, m.quantity.meaning, m.concept.meaning) == (
        "mL",
        "Volume",
        "Lung structure",
    )
    assert m.label == f"Lung structure volume {expected_ml:.0f} mL"
    assert len(m.source_sop_instance_uids) == SLICES
    assert result.findings == ()
    again = runner.run(images)
    assert again == result  # deterministic


def test_needs_one_series_with_spacing() -> None:
    hu, _ = phantom_volume()
    images = list(phantom_series(hu))
    runner = RunnerCache().get(_package())
    with pytest.raises(InferenceError, match="at least 2 slices"):
        runner.run(images[:1])
    images[0].SeriesInstanceUID = "1.2.3"
    with pytest.raises(InferenceError, match="one series"):
        runner.run(images)
