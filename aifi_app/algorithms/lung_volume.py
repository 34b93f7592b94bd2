"""CT lung volume by HU thresholding: deterministic, explainable, no learnt weights.

Method (after Hu, Hoffman and Reinhardt, IEEE TMI 2001, without their refinements):

1. Hounsfield units from the Modality LUT, slices ordered along the patient axis.
2. Air-like voxels: ``lower_hu <= HU <= upper_hu`` (default -1024 to -320 HU).
3. Air outside the body is dropped: every 3-D connected component (6-connectivity) that
   touches the in-plane border of the volume.
4. The ``keep_components`` largest remaining components are the lungs (with the central
   airways, which this method does not separate); components under ``min_component_ml``
   (bowel gas, noise) are dropped.
5. Vessels and nodules inside the lungs are filled in, slice by slice.
6. Volume = voxels x row spacing x column spacing x slice spacing (from Image Position
   (Patient), or Spacing Between Slices / Slice Thickness).

What it is not: a validated clinical measurement. It includes the trachea and main
bronchi, counts dense consolidation as non-lung, and loses a lung that touches the border
of the field of view. Runs on the worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from aifi_app import lean_scipy
from aifi_app.algorithms.findings import (
    AlgorithmResult,
    CodedConcept,
    MeasurementFinding,
    SegmentationMask,
)
from aifi_app.algorithms.onnx_runner import InferenceError
from aifi_app.algorithms.package import AlgorithmPackage, MeasurementSpec
from aifi_app.algorithms.packed_mask import PackedFrames

log = logging.getLogger(__name__)

PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class LungVolumeSettings:
    lower_hu: float = -1024.0
    upper_hu: float = -320.0
    keep_components: int = 2
    min_component_ml: float = 10.0

    @classmethod
    def from_manifest(cls, raw: dict[str, Any]) -> LungVolumeSettings:
        known = {"lower_hu", "upper_hu", "keep_components", "min_component_ml"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InferenceError(f"unknown runner setting(s) {', '.join(unknown)}")
        return cls(**raw)


def _position_along_normal(ds: Dataset) -> float:
    orientation = ds.get("ImageOrientationPatient")
    position = ds.get("ImagePositionPatient")
    if orientation is None or position is None:
        return float(ds.get("InstanceNumber") or 0)
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    return float(np.dot(np.cross(row, col), np.array(position, float)))


def _slice_spacing_mm(ordered: Sequence[Dataset], positions: Sequence[float]) -> float:
    if len(positions) > 1:
        steps = np.diff(np.asarray(positions))
        if np.all(steps > 0):
            return float(np.median(steps))
    first = ordered[0]
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = first.get(keyword)
        if value not in (None, ""):
            return float(value)
    raise InferenceError("slice spacing unknown (no positions, spacing or thickness)")


def _stored_pixels(ds: Dataset) -> npt.NDArray[Any]:
    """One slice's stored values. A dataset read with its pixel data deferred (as the
    pipeline reads a job's images) is decoded from its file, so that its pixel data is not
    kept in the dataset: the slices' pixel data are never all in memory at once."""
    element = ds.get_item(PIXEL_DATA, keep_deferred=True)
    filename = getattr(ds, "filename", None)
    if element is not None and element.value is None and isinstance(filename, (str, Path)):
        plain = _native_pixels(ds, element, filename)
        return plain if plain is not None else pixel_array(filename)
    array: npt.NDArray[Any] = ds.pixel_array
    return array


_NATIVE_SYNTAXES = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


def _native_pixels(
    ds: Dataset, element: DataElement | RawDataElement, filename: str | Path
) -> npt.NDArray[Any] | None:
    """The slice's stored values read straight from its file where the deferred pixel
    data lie (``value_tell``), when they are plain: uncompressed little endian, one
    sample, one frame, 8 or 16 bits allocated; unused high bits cleared or sign-extended
    as pydicom's decoder does. The array ``pixel_array(filename)`` gives, without parsing
    the file's header again (a third of the time per CT slice). None otherwise."""
    if not isinstance(element, RawDataElement) or element.length == 0xFFFFFFFF:
        return None
    meta = getattr(ds, "file_meta", None)
    if meta is None or meta.get("TransferSyntaxUID") not in _NATIVE_SYNTAXES:
        return None
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        signed = int(ds.PixelRepresentation) == 1
        samples = int(ds.get("SamplesPerPixel") or 1)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if samples != 1 or frames != 1 or allocated not in (8, 16) or not 0 < stored <= allocated:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
    count = rows * columns
    if element.length < count * dtype.itemsize:
        return None
    array = np.fromfile(filename, dtype=dtype, count=count, offset=element.value_tell)
    if array.size != count:
        return None
    array = array.reshape(rows, columns)
    if stored < allocated:  # as pydicom corrects the unused bits
        shift = allocated - stored
        np.left_shift(array, shift, out=array)
        np.right_shift(array, shift, out=array)
    return array


def air_mask(ordered: Sequence[Dataset], settings: LungVolumeSettings) -> PackedFrames:
    """The (slices, rows, columns) mask of air-like voxels (``lower_hu <= HU <= upper_hu``),
    made slice by slice and kept bit-packed: never the HU volume (a float copy of 500
    slices of 512 x 512 would take 0.5 to 1 GB), nor a byte per voxel (131 MB)."""
    first = ordered[0]
    air = PackedFrames(len(ordered), int(first.Rows), int(first.Columns))
    for n, ds in enumerate(ordered):
        hu = apply_modality_lut(_stored_pixels(ds), ds)
        if hu.shape != (air.rows, air.columns):
            raise ValueError(f"slice {n + 1} is {hu.shape}, not {(air.rows, air.columns)}")
        air.set_frame(n, (hu >= settings.lower_hu) & (hu <= settings.upper_hu))
    return air


def _overlap_pairs(
    previous: npt.NDArray[np.int32], current: npt.NDArray[np.int32], counts: tuple[int, int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The (previous, current) label pairs of two adjacent slices' 2-D components that
    share a voxel position (connected across the slices)."""
    both = (previous > 0) & (current > 0)
    width = counts[1] + 1
    keys = previous[both].astype(np.int64) * width + current[both]
    if (counts[0] + 1) * width <= 1 << 24:
        present = np.flatnonzero(np.bincount(keys, minlength=(counts[0] + 1) * width))
    else:  # very many components: sort instead of counting
        present = np.unique(keys)
    return present // width, present % width


def connected_components(
    nodes: int, sources: npt.NDArray[np.int64], targets: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The connected component of each of ``nodes`` nodes of the undirected graph whose
    edges join ``sources[k]`` and ``targets[k]``, numbered as
    ``scipy.sparse.csgraph.connected_components`` numbers them (in the order of each
    component's lowest node): its labels, without importing ``scipy.sparse`` (~11 MB of
    the service's memory for this one call).

    Each round hooks the root of every edge's higher end onto the lower one's, then
    jumps every node's pointer to its root; a node never points above itself, so each
    component's root ends as its lowest node. A chain of slices' components (a lung over
    300 slices) takes one or two rounds of a few jumps each."""
    parent = np.arange(nodes, dtype=np.int64)
    while True:
        low = parent[sources]
        high = parent[targets]
        if np.array_equal(low, high):
            break
        np.minimum.at(parent, np.maximum(low, high), np.minimum(low, high))
        while True:  # every pointer to its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    _, labels = np.unique(parent, return_inverse=True)
    return labels.astype(np.int64, copy=False)


def lung_mask(air: PackedFrames, voxel_ml: float, settings: LungVolumeSettings) -> PackedFrames:
    """The lung mask of a (slices, rows, columns) air mask, made in place (``air`` is
    returned as the lung mask); one slice at a time is unpacked.

    The 3-D components (6-connectivity) are found slice by slice: each slice's 2-D
    components (4-connectivity), joined through the voxels they share with the previous
    slice (a graph's connected components). This needs memory for one slice's labels,
    where labelling the volume at once needs a 32-bit label per voxel (1 GB for 500 slices
    of 512 x 512).
    """
    with lean_scipy.numpy_as_loaded():  # without numpy's unused submodules (6 MB)
        from scipy import ndimage  # imported on first use: it costs the idle service ~14 MB

    offsets: list[int] = []  # the first node number of each slice's components
    counts: list[int] = []  # how many components each slice has
    sizes: list[npt.NDArray[np.int64]] = []  # voxels per node
    on_border: list[npt.NDArray[np.int64]] = []  # nodes touching the in-plane border
    sources: list[npt.NDArray[np.int64]] = []  # edges between nodes of adjacent slices
    targets: list[npt.NDArray[np.int64]] = []
    nodes = 1  # node 0: not air
    previous: npt.NDArray[np.int32] | None = None
    previous_count = 0
    for n in range(air.frames):
        labels, count = ndimage.label(air.frame(n))
        offset = nodes - 1  # local label k is node offset + k
        offsets.append(offset)
        counts.append(count)
        sizes.append(np.bincount(labels.ravel(), minlength=count + 1)[1:])
        edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        on_border.append(np.unique(edge[edge > 0]).astype(np.int64) + offset)
        if previous is not None and count and previous_count:
            before, after = _overlap_pairs(previous, labels, (previous_count, count))
            sources.append(before + offsets[-2])
            targets.append(after + offset)
        nodes += count
        previous, previous_count = labels, count
    if nodes == 1:
        return air
    component = connected_components(
        nodes,
        np.concatenate([np.zeros(0, np.int64), *sources]),
        np.concatenate([np.zeros(0, np.int64), *targets]),
    )
    node_sizes = np.concatenate([np.zeros(1, np.int64), *sizes])
    component_sizes = np.bincount(component, weights=node_sizes).astype(np.int64)
    component_sizes[component[0]] = 0  # node 0 (not air) is a component of its own
    component_sizes[component[np.concatenate(on_border)]] = 0
    component_sizes[component_sizes * voxel_ml < settings.min_component_ml] = 0
    ranked = np.argsort(component_sizes, kind="stable")[::-1]
    keep = [int(c) for c in ranked[: settings.keep_components] if component_sizes[c] > 0]
    in_lung = np.zeros(len(component_sizes), dtype=bool)
    in_lung[keep] = True
    node_in_lung = in_lung[component]
    node_in_lung[0] = False
    rows = np.zeros(air.rows, dtype=bool)  # rows and columns that hold any lung
    cols = np.zeros(air.columns, dtype=bool)
    for n in range(air.frames):
        lookup = node_in_lung[offsets[n] : offsets[n] + counts[n] + 1].copy()
        lookup[0] = False
        if not lookup.any():  # no lung in this slice: no need to label it again
            air.clear_frame(n)
            continue
        labels, _ = ndimage.label(air.frame(n))  # the same labels as in the first pass
        plane = lookup[labels]
        rows |= plane.any(axis=1)
        cols |= plane.any(axis=0)
        air.set_frame(n, plane)
    if not keep or not rows.any():
        return air
    # fill holes only within the lungs' bounding box (most of each slice is outside)
    row_at, col_at = np.flatnonzero(rows), np.flatnonzero(cols)
    box = (slice(row_at[0], row_at[-1] + 1), slice(col_at[0], col_at[-1] + 1))
    for k in np.flatnonzero(air.frames_set()):
        plane = air.frame(int(k))
        plane[box] = ndimage.binary_fill_holes(plane[box])
        air.set_frame(int(k), plane)
    return air


SEGMENT_LABEL = "Lung"
"""The label of the lung mask's segment in the SEG."""


class LungVolumeRunner:
    """The ``ct_lung_volume`` built-in runner; ``run`` may be called from any thread."""

    def __init__(self, package: AlgorithmPackage, settings: dict[str, Any]) -> None:
        if not isinstance(package.output, MeasurementSpec):
            raise InferenceError("ct_lung_volume reports a measurement output")
        self.package = package
        self.output: MeasurementSpec = package.output
        self.settings = LungVolumeSettings.from_manifest(settings)

    @property
    def segment(self) -> tuple[CodedConcept, str]:
        """The concept and label of the segment every result's mask has (what the
        service speculates on to build the SEG while this runs)."""
        return self.output.concept, SEGMENT_LABEL

    def run(self, images: Sequence[Dataset]) -> AlgorithmResult:
        """The lung volume of one CT series (the images the job selected)."""
        if len(images) < 2:
            raise InferenceError("a lung volume needs a CT series of at least 2 slices")
        if len({str(ds.SeriesInstanceUID) for ds in images}) != 1:
            raise InferenceError("a lung volume is measured on one series")
        positions = [_position_along_normal(ds) for ds in images]
        order = np.argsort(positions)
        ordered = [images[int(i)] for i in order]
        spacing = ordered[0].get("PixelSpacing")
        if spacing is None:
            raise InferenceError("pixel spacing unknown")
        dz = _slice_spacing_mm(ordered, [positions[int(i)] for i in order])
        voxel_ml = float(spacing[0]) * float(spacing[1]) * dz / 1000.0
        try:
            air = air_mask(ordered, self.settings)
        except ValueError as exc:
            raise InferenceError(f"slices differ in size or cannot be decoded ({exc})") from exc
        mask = lung_mask(air, voxel_ml, self.settings)
        volume = round(float(mask.count()) * voxel_ml, 1)
        out = self.output
        measurement = MeasurementFinding(
            concept=out.concept,
            quantity=out.quantity,
            value=volume,
            unit=out.unit,
            method=(
                f"HU threshold {self.settings.lower_hu:g} to {self.settings.upper_hu:g},"
                f" {len(ordered)} slices of {dz:g} mm"
            ),
            source_series_instance_uid=str(ordered[0].SeriesInstanceUID),
            source_sop_instance_uids=tuple(str(ds.SOPInstanceUID) for ds in ordered),
            source_sop_class_uid=str(ordered[0].SOPClassUID),
            label=f"{out.concept.meaning} {out.quantity.meaning.lower()} {volume:.0f} "
            f"{out.unit.value}",
        )
        segmentation = SegmentationMask(
            concept=self.segment[0],
            label=self.segment[1],
            source_sop_instance_uids=measurement.source_sop_instance_uids,
            packed=mask,
        )
        return AlgorithmResult(
            algorithm=self.package.identity,
            measurements=(measurement,),
            segmentations=(segmentation,),
        )
