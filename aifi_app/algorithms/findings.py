"""What an algorithm reports, independent of how it ran (local model or remote vendor).

Findings live in the pseudonymised space: they reference the pseudonymised SOP Instance
UIDs that the algorithm saw. The result builders turn them into DICOM objects, and the
re-identifier maps them back onto the original study.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from aifi_app.algorithms.packed_mask import PackedFrames


@dataclass(frozen=True)
class CodedConcept:
    """A coded value (DICOM code sequence item): value, scheme designator and meaning."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class AlgorithmIdentity:
    """Who produced a result: shown in every result object (name, version, vendor)."""

    algorithm_id: str
    name: str
    version: str
    vendor: str


@dataclass(frozen=True)
class Finding:
    """One classification finding of an algorithm for one source image.

    ``positive`` is the decision at the manifest's threshold; ``score`` the model's
    probability for ``concept`` in [0, 1]; ``source_sop_instance_uid`` and
    ``source_sop_class_uid`` name the (pseudonymised) image it was computed on.
    """

    concept: CodedConcept
    score: float
    threshold: float
    positive: bool
    source_sop_instance_uid: str
    source_sop_class_uid: str
    source_series_instance_uid: str
    label: str
    """Short words for people, e.g. "Pneumonia suspected" or "No pneumonia detected"."""


@dataclass(frozen=True)
class MeasurementFinding:
    """One quantity an algorithm measured on a series (e.g. lung volume in mL).

    ``source_sop_instance_uids`` name the (pseudonymised) images it was measured on.
    """

    concept: CodedConcept
    """What was measured on (finding type), e.g. SCT 39607008 "Lung structure"."""
    quantity: CodedConcept
    """The measurement's name, e.g. SCT 118565006 "Volume"."""
    value: float
    unit: CodedConcept
    """UCUM unit, e.g. mL."""
    method: str
    """How, in words (shown in the report)."""
    source_series_instance_uid: str
    source_sop_instance_uids: tuple[str, ...]
    source_sop_class_uid: str
    label: str


@dataclass(frozen=True)
class RegionFinding:
    """A region an algorithm marked on one source image (a box, a polygon or a point).

    ``points`` are image pixel coordinates as (column, row) pairs, with (0, 0) the
    top-left corner of the top-left pixel, as DICOM SR SCOORD and GSPS graphics use them
    (PIXEL units). A ``box`` has two points (top-left, bottom-right); a ``polygon`` three
    or more (not repeated at the end); a ``point`` one. ``frame_number`` is 1-based for
    multi-frame images and ``None`` otherwise. ``score`` is the model's confidence in
    [0, 1] where it has one.
    """

    concept: CodedConcept
    """What the region shows, e.g. SCT 72704001 "Fracture"."""
    label: str
    """Short words shown next to the graphic, e.g. "Fracture suspected (0.91)"."""
    shape: str
    points: tuple[tuple[float, float], ...]
    source_sop_instance_uid: str
    source_sop_class_uid: str
    source_series_instance_uid: str
    score: float | None = None
    frame_number: int | None = None


@dataclass(frozen=True, eq=False)
class SegmentationMask:
    """A binary mask an algorithm drew: one frame per source image, in the order of
    ``source_sop_instance_uids``, kept bit-packed (:class:`PackedFrames`: a 500-slice
    CT's mask takes 16 MB, not 131 MB); in memory only, not part of the stored JSON."""

    concept: CodedConcept
    """What is segmented, e.g. SCT 39607008 "Lung"."""
    label: str
    source_sop_instance_uids: tuple[str, ...]
    packed: PackedFrames

    @classmethod
    def from_array(
        cls,
        concept: CodedConcept,
        label: str,
        source_sop_instance_uids: tuple[str, ...],
        mask: npt.NDArray[np.bool_],
    ) -> SegmentationMask:
        """From a (frames, rows, columns) array (packed; the array is not kept)."""
        return cls(concept, label, source_sop_instance_uids, PackedFrames.from_array(mask))

    @property
    def mask(self) -> npt.NDArray[np.bool_]:
        """The whole mask unpacked (frames, rows, columns): a new array, 1 byte a pixel."""
        return self.packed.to_array()


@dataclass(frozen=True)
class AlgorithmResult:
    """Everything one run of an algorithm on one study reported."""

    algorithm: AlgorithmIdentity
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    measurements: tuple[MeasurementFinding, ...] = field(default_factory=tuple)
    segmentations: tuple[SegmentationMask, ...] = field(
        default_factory=tuple, compare=False, repr=False
    )
    regions: tuple[RegionFinding, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        """The findings and measurements as JSON (segmentation masks are left out)."""
        return json.dumps(
            {
                "algorithm": asdict(self.algorithm),
                "findings": [asdict(f) for f in self.findings],
                "measurements": [asdict(m) for m in self.measurements],
                "regions": [asdict(r) for r in self.regions],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> AlgorithmResult:
        raw: dict[str, Any] = json.loads(text)
        findings = tuple(
            Finding(**{**f, "concept": CodedConcept(**f["concept"])}) for f in raw["findings"]
        )
        measurements = tuple(
            MeasurementFinding(
                **{
                    **m,
                    "concept": CodedConcept(**m["concept"]),
                    "quantity": CodedConcept(**m["quantity"]),
                    "unit": CodedConcept(**m["unit"]),
                    "source_sop_instance_uids": tuple(m["source_sop_instance_uids"]),
                }
            )
            for m in raw.get("measurements", [])
        )
        regions = tuple(
            RegionFinding(
                **{
                    **r,
                    "concept": CodedConcept(**r["concept"]),
                    "points": tuple((float(x), float(y)) for x, y in r["points"]),
                }
            )
            for r in raw.get("regions", [])
        )
        return cls(
            algorithm=AlgorithmIdentity(**raw["algorithm"]),
            findings=findings,
            measurements=measurements,
            regions=regions,
        )
