"""The result objects the appliance makes: kind (as manifests name it), SOP class, series.

One table, read by the pipeline (series numbers), the manifest check (kinds) and the
DICOM conformance statement (``aifi-app conformance``); a test builds each kind and
checks its SOP class against this table, so the statement cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RESULT_OBJECTS", "ResultObjectKind", "result_object"]


@dataclass(frozen=True)
class ResultObjectKind:
    kind: str
    """The name in a manifest's ``[results] objects``."""
    sop_class_uid: str
    sop_class_name: str
    series_number: int
    """Series Number of the result series in the original study."""
    made_when: str
    """For which results it is made, in words."""
    content: str
    """What it holds, in words."""


RESULT_OBJECTS: tuple[ResultObjectKind, ...] = (
    ResultObjectKind(
        "sc",
        "1.2.840.10008.5.1.4.1.1.7",
        "Secondary Capture Image Storage",
        9901,
        "one per classification finding",
        "the source image rendered (modality and VOI LUT) with a burned-in banner: "
        '"AI-RESULTAAT - GEEN DIAGNOSE / AI RESULT - NOT A DIAGNOSIS", algorithm name and '
        "version, finding, score and threshold; Burned In Annotation YES",
    ),
    ResultObjectKind(
        "sr",
        "1.2.840.10008.5.1.4.1.1.88.33",
        "Comprehensive SR Storage",
        9902,
        "one per job with findings, measurements or regions",
        "TID 1500 Measurement Report: the algorithm as device observer; per finding a "
        "TID 1501 group (tracking identifier and UID, finding type, algorithm name and "
        "version, Present/Absent, probability); per measurement a TID 1501 group on its "
        "source images, or, for a measurement of a structure the job also delivers as a "
        "SEG (the CT lung volume), a TID 1411 group referencing the SEG's segment "
        "(Referenced Segment, Source Series for Segmentation; as IHE AIR recommends); per "
        "region a TID 1410 group with an SCOORD (PIXEL) on the source image; sources, and "
        "a referenced SEG, as evidence",
    ),
    ResultObjectKind(
        "seg",
        "1.2.840.10008.5.1.4.1.1.66.4",
        "Segmentation Storage",
        9903,
        "one per mask",
        "binary segmentation, one segment, in the source series' frame of reference; one "
        "frame per source image in which the segment is present (a frame per source image "
        "where it is present in none)",
    ),
    ResultObjectKind(
        "gsps",
        "1.2.840.10008.5.1.4.1.1.11.1",
        "Grayscale Softcopy Presentation State Storage",
        9904,
        "one per source series (and image size) with regions",
        "per finding concept a graphic layer of outlines (closed POLYLINE for boxes and "
        "polygons, POINT) and a layer of text labels, each switchable in the viewer; "
        "tracking UIDs as in the SR; Content Label AI_RESULT",
    ),
    ResultObjectKind(
        "ko",
        "1.2.840.10008.5.1.4.1.1.88.59",
        "Key Object Selection Document Storage",
        9905,
        "one per job with a positive finding or a region",
        'title DCM 113000 "Of Interest", the algorithm as device observer, the images '
        "with positive findings or regions",
    ),
)


def result_object(kind: str) -> ResultObjectKind:
    """The catalog entry of ``kind`` (raises ``KeyError`` for an unknown kind)."""
    for entry in RESULT_OBJECTS:
        if entry.kind == kind:
            return entry
    raise KeyError(kind)
