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
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.pixels.processing import apply_modality_lut

from aifi_app.algorithms.findings import AlgorithmResult, MeasurementFinding, SegmentationMask
from aifi_app.algorithms.onnx_runner import InferenceError
from aifi_app.algorithms.package import AlgorithmPackage, MeasurementSpec

log = logging.getLogger(__name__)


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


def lung_mask(
    hu: npt.NDArray[np.float32], voxel_ml: float, settings: LungVolumeSettings
) -> npt.NDArray[np.bool_]:
    """The lung mask of a (slices, rows, columns) HU volume."""
    from scipy import ndimage  # imported on first use: it costs the idle service ~30 MB

    air = (hu >= settings.lower_hu) & (hu <= settings.upper_hu)
    labels, count = ndimage.label(air)
    if count == 0:
        return np.zeros_like(air)
    border = np.unique(
        np.concatenate(
            [
                labels[:, 0, :].ravel(),
                labels[:, -1, :].ravel(),
                labels[:, :, 0].ravel(),
                labels[:, :, -1].ravel(),
            ]
        )
    )
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    sizes[border] = 0
    sizes[sizes * voxel_ml < settings.min_component_ml] = 0
    keep = [int(i) for i in np.argsort(sizes)[::-1][: settings.keep_components] if sizes[i] > 0]
    lookup = np.zeros(count + 1, dtype=bool)
    lookup[keep] = True
    mask: npt.NDArray[np.bool_] = lookup[labels]
    if not keep:
        return mask
    # fill holes only within the lungs' bounding box (most of each slice is outside)
    rows = np.flatnonzero(mask.any(axis=(0, 2)))
    cols = np.flatnonzero(mask.any(axis=(0, 1)))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    for n in np.flatnonzero(mask.any(axis=(1, 2))):
        mask[n][box] = ndimage.binary_fill_holes(mask[n][box])
    out: npt.NDArray[np.bool_] = mask
    return out


class LungVolumeRunner:
    """The ``ct_lung_volume`` built-in runner; ``run`` may be called from any thread."""

    def __init__(self, package: AlgorithmPackage, settings: dict[str, Any]) -> None:
        if not isinstance(package.output, MeasurementSpec):
            raise InferenceError("ct_lung_volume reports a measurement output")
        self.package = package
        self.output: MeasurementSpec = package.output
        self.settings = LungVolumeSettings.from_manifest(settings)

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
            hu = np.stack([apply_modality_lut(ds.pixel_array, ds) for ds in ordered])
        except ValueError as exc:
            raise InferenceError(f"slices differ in size or cannot be decoded ({exc})") from exc
        mask = lung_mask(hu.astype(np.float32), voxel_ml, self.settings)
        volume = round(float(mask.sum()) * voxel_ml, 1)
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
            concept=out.concept,
            label="Lung",
            source_sop_instance_uids=measurement.source_sop_instance_uids,
            mask=mask,
        )
        return AlgorithmResult(
            algorithm=self.package.identity,
            measurements=(measurement,),
            segmentations=(segmentation,),
        )
