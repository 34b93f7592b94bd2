"""A segment of a Segmentation made for the same result as an SR, as the SR refers to it.

Kept apart from :mod:`aifi_app.results.structured_report` (which imports highdicom) so
that a job plans its results, and writes a SEG built ahead, before highdicom is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifi_app.algorithms.findings import MeasurementFinding, SegmentationMask

__all__ = ["SegmentReference"]


@dataclass(frozen=True)
class SegmentReference:
    """A segment of a Segmentation made for the same result (built before or after the
    SR: only its UIDs are needed), and the mask it encodes."""

    sop_instance_uid: str
    series_instance_uid: str
    segment_number: int
    mask: SegmentationMask

    def measures(self, measurement: MeasurementFinding) -> bool:
        """True when ``measurement`` is of this segment: the same structure on the same
        source images."""
        return (
            measurement.concept == self.mask.concept
            and measurement.source_sop_instance_uids == self.mask.source_sop_instance_uids
        )
