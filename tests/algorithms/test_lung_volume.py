"""The built-in CT lung volume on a synthetic chest of known lung volume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.pixels.utils import pixel_array

from aifi_app.algorithms import lung_volume
from aifi_app.algorithms.lung_volume import LungVolumeRunner, LungVolumeSettings, lung_mask
from aifi_app.algorithms.onnx_runner import InferenceError
from aifi_app.algorithms.package import builtin_package_dir, load_package
from aifi_app.algorithms.packed_mask import PackedFrames
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


def _reference_mask(air: np.ndarray, voxel_ml: float, settings: LungVolumeSettings) -> np.ndarray:
    """The method labelled on the whole volume at once (6-connectivity), as it was
    before the slice-by-slice labelling: the reference the latter must equal."""
    from scipy import ndimage

    labels, count = ndimage.label(air)
    border = np.unique(
        np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel()]).tolist()
        + np.concatenate([labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]).tolist()
    )
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    sizes[border] = 0
    sizes[sizes * voxel_ml < settings.min_component_ml] = 0
    keep = [i for i in range(1, count + 1) if sizes[i] > 0]
    keep = sorted(keep, key=lambda i: -sizes[i])[: settings.keep_components]
    mask = np.isin(labels, keep)
    for n in range(len(mask)):
        mask[n] = ndimage.binary_fill_holes(mask[n]) if keep else mask[n]
    return mask


def _lung_mask(air: np.ndarray, voxel_ml: float, settings: LungVolumeSettings) -> np.ndarray:
    """:func:`lung_mask` on a bool array (it works on the bit-packed slices)."""
    return lung_mask(PackedFrames.from_array(air), voxel_ml, settings).to_array()


@pytest.mark.parametrize("seed", range(6))
def test_slice_by_slice_labelling_equals_labelling_the_volume(seed: int) -> None:
    """Random air (below the percolation threshold: many components that merge and split
    across slices, some touching the border, some too small) gives the mask that
    labelling the whole volume at once gives."""
    rng = np.random.default_rng(seed)
    air = rng.random((12, 20, 24)) < 0.25
    air[:, 6:14, 6:18] |= rng.random((12, 8, 12)) < 0.3  # denser inside
    # every component of at least 3 voxels is kept: no ties to break
    settings = LungVolumeSettings(keep_components=10**6, min_component_ml=0.003)
    expected = _reference_mask(air.copy(), 0.001, settings)
    got = _lung_mask(air, 0.001, settings)
    assert expected.any()
    np.testing.assert_array_equal(got, expected)


def test_slices_without_lung_are_cleared() -> None:
    """Slices whose air is all too small or on the border hold no lung afterwards."""
    rng = np.random.default_rng(9)
    air = rng.random((12, 20, 24)) < 0.2  # specks only (below the size floor)
    air[4:8, 5:15, 5:19] = True  # the one large inner component
    air[4:8, 9:11, 9:11] = False  # with a hole, filled in the mask
    air[[3, 8]] = False  # no specks joining it through the slices next to it
    settings = LungVolumeSettings(keep_components=2, min_component_ml=0.05)
    got = _lung_mask(air, 0.001, settings)
    np.testing.assert_array_equal(got, _reference_mask(air.copy(), 0.001, settings))
    assert not got[:4].any() and not got[8:].any()
    assert got[4:8, 9:11, 9:11].all()


def test_no_air_gives_an_empty_mask() -> None:
    air = np.zeros((3, 8, 8), dtype=bool)
    assert not _lung_mask(air, 1.0, LungVolumeSettings()).any()


def test_slices_read_from_files_are_decoded_from_them_not_kept(tmp_path: Path) -> None:
    """The pipeline reads a job's images with their pixel data deferred; the runner
    decodes each slice from its file and leaves the datasets without pixel data, so a
    large CT's pixel data is never all in memory; the volume is the same."""
    hu, lungs = phantom_volume()
    paths = []
    for ds in phantom_series(hu):
        paths.append(tmp_path / f"{ds.InstanceNumber:03d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    deferred = [dcmread(p, defer_size=1024) for p in paths]
    runner = RunnerCache().get(_package())
    result = runner.run(deferred)
    assert result == runner.run([dcmread(p) for p in paths])
    expected_ml = lungs.sum() * SPACING * SPACING * THICKNESS / 1000
    assert result.measurements[0].value == pytest.approx(expected_ml, abs=0.1)
    for ds in deferred:
        assert ds.get_item(0x7FE00010, keep_deferred=True).value is None


def test_slices_of_different_sizes_are_refused() -> None:
    hu, _ = phantom_volume()
    images = list(phantom_series(hu))
    images[3].Rows = SIZE // 2
    images[3].PixelData = images[3].PixelData[: len(images[3].PixelData) // 2]
    with pytest.raises(InferenceError, match="differ in size"):
        RunnerCache().get(_package()).run(images)


def _deferred_copy(tmp_path: Path, ds: Dataset, name: str, **save: Any) -> Dataset:
    path = tmp_path / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True, **save)
    return dcmread(path, defer_size=1024)


@pytest.mark.parametrize(
    ("allocated", "stored", "signed"),
    [(16, 16, 1), (16, 12, 1), (16, 12, 0), (16, 16, 0), (8, 8, 0), (8, 6, 1)],
)
def test_plain_slices_are_read_at_their_place_as_pydicom_decodes_them(
    tmp_path: Path, allocated: int, stored: int, signed: int
) -> None:
    ds = next(iter(ct_series(demo_patient(7), 1, size=SIZE)))
    rng = np.random.default_rng(allocated + stored + signed)
    dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
    info = np.iinfo(dtype)
    # every bit set at random, the unused high bits included: pydicom clears or
    # sign-extends them, so must this read
    values = rng.integers(info.min, info.max, size=(SIZE, SIZE), endpoint=True, dtype=dtype)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, stored, stored - 1
    ds.PixelRepresentation = signed
    ds.PixelData = values.tobytes()
    read = _deferred_copy(tmp_path, ds, "slice")
    got = lung_volume._native_pixels(
        read, read.get_item(0x7FE00010, keep_deferred=True), read.filename
    )
    assert got is not None
    expected = pixel_array(read.filename)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert np.array_equal(lung_volume._stored_pixels(read), expected)


def test_other_slices_are_decoded_by_pydicom(tmp_path: Path) -> None:
    ds = next(iter(ct_series(demo_patient(7), 1, size=SIZE)))
    ds.NumberOfFrames = 2
    ds.PixelData = np.arange(2 * SIZE * SIZE, dtype=np.int16).tobytes()
    frames = _deferred_copy(tmp_path, ds, "frames")  # more than one frame
    ds = next(iter(ct_series(demo_patient(7), 1, size=SIZE)))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.arange(3 * SIZE * SIZE, dtype=np.uint8).tobytes()
    colour = _deferred_copy(tmp_path, ds, "colour")  # three samples
    for read in (frames, colour):
        element = read.get_item(0x7FE00010, keep_deferred=True)
        assert element is not None and element.value is None
        assert lung_volume._native_pixels(read, element, read.filename) is None
        assert np.array_equal(lung_volume._stored_pixels(read), pixel_array(read.filename))


@pytest.mark.parametrize("seed", range(4))
def test_components_are_scipys_with_its_numbering(seed: int) -> None:
    """The slices' components joined as scipy's csgraph joins them, each component's
    label the same (the lowest node's order): the same ties broken among components of
    equal size. Random graphs, and a chain numbered out of order (one long lung)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(50):
        nodes = int(rng.integers(1, 300))
        edges = int(rng.integers(0, 2 * nodes))
        cases.append((nodes, rng.integers(0, nodes, edges), rng.integers(0, nodes, edges)))
    order = rng.permutation(1000)
    cases.append((1000, order[:-1], order[1:]))
    for nodes, sources, targets in cases:
        graph = coo_matrix(
            (np.ones(len(sources), np.int8), (sources, targets)), shape=(nodes, nodes)
        )
        _, expected = connected_components(graph, directed=False)
        got = lung_volume.connected_components(
            nodes, sources.astype(np.int64), targets.astype(np.int64)
        )
        np.testing.assert_array_equal(got, expected)


def test_the_model_does_not_import_scipy_sparse() -> None:
    """The lung mask needs scipy.ndimage only (scipy.sparse: ~11 MB of the service)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from aifi_app.algorithms.lung_volume import LungVolumeSettings, lung_mask\n"
        "from aifi_app.algorithms.packed_mask import PackedFrames\n"
        "air = np.zeros((4, 16, 16), bool); air[:, 4:12, 4:12] = True\n"
        "lung_mask(PackedFrames.from_array(air), 0.001, LungVolumeSettings(min_component_ml=0))\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy.sparse')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
