"""Grayscale Softcopy Presentation State (GSPS) with an algorithm's regions as graphics.

Built with highdicom from the pseudonymised source images the regions were marked on. A
viewer shows the referenced images with, per finding concept, one graphic layer of
outlines (boxes and polygons as closed polylines, points as points) and one layer of text
labels, so that a radiologist can switch the AI's marks and its words on and off
separately. Every graphic and label carries the region's tracking identifier and UID, the
same ones as in the TID 1500 SR (:func:`region_tracking_uid`), so both can be linked.

Coordinates are PIXEL units, (column, row) with (0, 0) the top-left corner of the
top-left pixel, exactly as :class:`~aifi_app.algorithms.findings.RegionFinding` holds
them. Thread: any (pure CPU, a few ms).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from aifi_app.algorithms.findings import AlgorithmResult, CodedConcept, RegionFinding
from aifi_app.results.secondary_capture import (
    algorithm_contributing_equipment,
    character_set_for,
    image_laterality,
    lo_value,
)

DISCLAIMER_EN = "AI RESULT - NOT A DIAGNOSIS"
"""The English half of :data:`DISCLAIMER`, which fits a 64-character LO with a name."""

__all__ = [
    "LABEL_LAYER_SUFFIX",
    "build_presentation_state",
    "images_per_presentation_state",
    "layer_name_for",
    "region_graphic",
    "region_tracking_uid",
]

LABEL_LAYER_SUFFIX = " TXT"
"""Suffix of a concept's text-label layer name (its outline layer has none)."""
_CS_MAX = 16
# CIELab display colours per layer (yellow outlines, white labels): visible on grey images.
_OUTLINE_COLOUR = hd.color.CIELabColor(97.1, -21.6, 94.5)
_LABEL_COLOUR = hd.color.CIELabColor(100.0, 0.0, 0.0)


def region_tracking_uid(tracking_base_uid: str, index: int) -> str:
    """The tracking UID of the ``index``-th region of a result (a 2.25 UID, PS3.5 B.2),
    the same in the SR, the GSPS and every rebuild from the same base.

    Thread: any thread.
    """
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'{tracking_base_uid}/region-{index}').int}"


def region_tracking_id(algorithm_name: str, index: int, region: RegionFinding) -> str:
    """The readable tracking identifier of a region (LO, at most 64 characters)."""
    return lo_value(f"{algorithm_name} region {index + 1}: {region.label}")


def layer_name_for(concept: CodedConcept, number: int) -> str:
    """The graphic layer name (CS, at most 16 characters) of the ``number``-th concept."""
    words = re.sub(r"[^A-Z0-9 ]+", " ", concept.meaning.upper()).split()
    prefix = f"AI{number} "
    room = _CS_MAX - len(prefix) - len(LABEL_LAYER_SUFFIX)
    return (prefix + " ".join(words))[: len(prefix) + room].rstrip()


def region_graphic(region: RegionFinding) -> tuple[str, np.ndarray]:
    """The graphic type and (column, row) data of a region: a box or a polygon as a closed
    POLYLINE (first point repeated at the end), a point as a POINT.

    Raises ``ValueError`` for a shape with the wrong number of points.
    """
    points = [(float(c), float(r)) for c, r in region.points]
    if region.shape == "box":
        if len(points) != 2:
            raise ValueError(f"a box needs 2 points, region {region.label!r} has {len(points)}")
        (c0, r0), (c1, r1) = points
        left, right = min(c0, c1), max(c0, c1)
        top, bottom = min(r0, r1), max(r0, r1)
        outline = [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)]
        return "POLYLINE", np.array(outline, dtype=np.float64)
    if region.shape == "polygon":
        if len(points) < 3:
            raise ValueError(f"a polygon needs 3 or more points, region {region.label!r}")
        return "POLYLINE", np.array([*points, points[0]], dtype=np.float64)
    if region.shape == "point":
        if len(points) != 1:
            raise ValueError(f"a point needs 1 point, region {region.label!r} has {len(points)}")
        return "POINT", np.array(points, dtype=np.float64)
    raise ValueError(f"region {region.label!r} has unknown shape {region.shape!r}")


def images_per_presentation_state(
    result: AlgorithmResult, images: Sequence[Dataset]
) -> list[list[Dataset]]:
    """The images with regions, grouped so that each group can share one presentation
    state (same series and same dimensions; highdicom and PS3.3 C.11.11 need the latter),
    in order of first region. Images no region refers to are left out.

    Thread: any thread.
    """
    by_uid = {str(ds.SOPInstanceUID): ds for ds in images}
    groups: dict[tuple[str, int, int], list[Dataset]] = {}
    for uid in dict.fromkeys(r.source_sop_instance_uid for r in result.regions):
        ds = by_uid.get(uid)
        if ds is None:
            continue
        key = (str(ds.SeriesInstanceUID), int(ds.Rows), int(ds.Columns))
        groups.setdefault(key, []).append(ds)
    return list(groups.values())


def build_presentation_state(
    sources: Sequence[Dataset],
    result: AlgorithmResult,
    *,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    instance_number: int,
    tracking_base_uid: str,
    manufacturer: str = "AIFI Appliance",
    software_version: str,
) -> Dataset:
    """A GSPS that draws every region of ``result`` that lies on one of ``sources``.

    ``sources`` must share series and dimensions (see :func:`images_per_presentation_state`).
    Promises: Grayscale Softcopy Presentation State Storage in the study of the sources,
    referencing exactly the sources that carry regions; ContentLabel "AI_RESULT";
    ContentDescription says "AI RESULT - NOT A DIAGNOSIS" with the algorithm and version; per
    finding concept (in order of first appearance) a layer ``layer_name_for(concept, n)``
    with the outlines and a layer with the same name plus :data:`LABEL_LAYER_SUFFIX` with
    one text label per region, anchored (visibly) at the region's first outline point;
    graphics of multi-frame images name their frame. ``sources`` are not modified.

    Tracking UIDs number the regions by their index in ``result.regions``, so they are
    the same as in the SR whichever group a region is drawn in.

    The display pipeline is the sources': their modality LUT, their first VOI LUT or
    window (highdicom copies it), and an INVERSE presentation LUT for MONOCHROME1.

    Raises ``ValueError`` when no region lies on ``sources``, a region's image is not
    greyscale, or a shape is malformed.
    """
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    indexed = [
        (index, region)
        for index, region in enumerate(result.regions)
        if region.source_sop_instance_uid in by_uid
    ]
    if not indexed:
        raise ValueError("a presentation state needs at least one region on its images")
    for _, region in indexed:
        source = by_uid[region.source_sop_instance_uid]
        if str(source.get("PhotometricInterpretation", "")) not in ("MONOCHROME1", "MONOCHROME2"):
            raise ValueError(f"region {region.label!r} is on an image that is not greyscale")
    algorithm = result.algorithm

    concepts: list[CodedConcept] = []
    for _, region in indexed:
        if region.concept not in concepts:
            concepts.append(region.concept)
    layers: dict[CodedConcept, tuple[hd.pr.GraphicLayer, hd.pr.GraphicLayer]] = {}
    for number, concept in enumerate(concepts, start=1):
        name = layer_name_for(concept, number)
        layers[concept] = (
            hd.pr.GraphicLayer(
                layer_name=name,
                order=2 * number - 1,
                description=lo_value(f"AI {algorithm.name}: {concept.meaning} (outlines)"),
                display_color=_OUTLINE_COLOUR,
            ),
            hd.pr.GraphicLayer(
                layer_name=name + LABEL_LAYER_SUFFIX,
                order=2 * number,
                description=lo_value(f"AI {algorithm.name}: {concept.meaning} (labels)"),
                display_color=_LABEL_COLOUR,
            ),
        )

    # One annotation per (image, frame, layer): graphics and labels grouped as drawn.
    graphics: dict[tuple[str, int | None, CodedConcept], list[hd.pr.GraphicObject]] = {}
    texts: dict[tuple[str, int | None, CodedConcept], list[hd.pr.TextObject]] = {}
    for index, region in indexed:
        frame = region.frame_number
        if (
            frame == 1
            and int(by_uid[region.source_sop_instance_uid].get("NumberOfFrames") or 1) == 1
        ):
            frame = None  # frame 1 of a single-frame image: the image itself
        key = (region.source_sop_instance_uid, frame, region.concept)
        graphic_type, data = region_graphic(region)
        tracking_uid = region_tracking_uid(tracking_base_uid, index)
        tracking_id = region_tracking_id(algorithm.name, index, region)
        graphics.setdefault(key, []).append(
            hd.pr.GraphicObject(
                graphic_type=graphic_type,
                graphic_data=data,
                units="PIXEL",
                tracking_id=tracking_id,
                tracking_uid=tracking_uid,
            )
        )
        anchor = (float(data[0][0]), float(data[0][1]))
        texts.setdefault(key, []).append(
            hd.pr.TextObject(
                text_value=lo_value(region.label),
                units="PIXEL",
                anchor_point=anchor,
                anchor_point_visible=True,
                tracking_id=tracking_id,
                tracking_uid=tracking_uid,
            )
        )
    annotations: list[hd.pr.GraphicAnnotation] = []
    for (uid, frame, concept), objects in graphics.items():
        outline_layer, label_layer = layers[concept]
        frame_kwargs: dict[str, Any] = {}
        if frame is not None:
            frame_kwargs["referenced_frame_number"] = frame
        annotations.append(
            hd.pr.GraphicAnnotation(
                referenced_images=[by_uid[uid]],
                graphic_layer=outline_layer,
                graphic_objects=objects,
                **frame_kwargs,
            )
        )
        annotations.append(
            hd.pr.GraphicAnnotation(
                referenced_images=[by_uid[uid]],
                graphic_layer=label_layer,
                text_objects=texts[(uid, frame, concept)],
                **frame_kwargs,
            )
        )

    referenced = [
        _with_lut_data_as_bytes(by_uid[uid])
        for uid in dict.fromkeys(r.source_sop_instance_uid for _, r in indexed)
    ]
    description = lo_value(f"{DISCLAIMER_EN}: {algorithm.name} {algorithm.version}")
    software_versions = lo_value(software_version)
    equipment = algorithm_contributing_equipment(algorithm)
    charset = character_set_for(
        referenced[0],
        [description, *(r.label for _, r in indexed), *(c.meaning for c in concepts)],
        [equipment],
    )
    kwargs: dict[str, Any] = {}
    if charset is not None:
        kwargs["specific_character_set"] = charset
    if str(referenced[0].get("PhotometricInterpretation")) == "MONOCHROME1":
        # PS3.3 C.11.6: a MONOCHROME1 image shows as intended (dense = white) through an
        # INVERSE presentation LUT; highdicom's default is IDENTITY.
        kwargs["presentation_lut_transformation"] = hd.PresentationLUTTransformation(
            presentation_lut_shape=hd.PresentationLUTShapeValues.INVERSE
        )
    kwargs.update(_classic_multiframe_luts(referenced[0]))
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=referenced,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=lo_value(manufacturer),
        manufacturer_model_name=lo_value(algorithm.algorithm_id),
        software_versions=software_versions,
        device_serial_number="0",
        content_label="AI_RESULT",
        content_description=description,
        graphic_annotations=annotations,
        graphic_layers=[layer for pair in layers.values() for layer in pair],
        content_creator_name=None,
        contributing_equipment=[equipment],
        **kwargs,
    )
    gsps.SeriesDescription = lo_value(f"AI result: {algorithm.name}")
    # General Series Laterality is Type 2C: the source's when it has one, else empty.
    laterality = image_laterality(referenced[0])
    gsps.add_new("Laterality", "CS", laterality)
    ds: Dataset = gsps
    return ds


def _classic_multiframe_luts(source: Dataset) -> dict[str, Any]:
    """Modality and VOI LUT arguments for a multi-frame image without functional groups
    (XA, US, multi-frame SC), whose LUTs highdicom looks for only in functional groups;
    empty for any other image, for which highdicom copies them itself."""
    if int(source.get("NumberOfFrames") or 1) <= 1 or "SharedFunctionalGroupsSequence" in source:
        return {}
    luts: dict[str, Any] = {}
    if "RescaleSlope" in source or "RescaleIntercept" in source:
        luts["modality_lut_transformation"] = hd.ModalityLUTTransformation(
            rescale_intercept=float(source.get("RescaleIntercept", 0)),
            rescale_slope=float(source.get("RescaleSlope", 1)),
            rescale_type=str(source.get("RescaleType") or "US"),
        )
    if "WindowCenter" in source and "WindowWidth" in source:
        center, width = source.WindowCenter, source.WindowWidth
        luts["voi_lut_transformations"] = [
            hd.pr.SoftcopyVOILUTTransformation(
                window_center=float(center[0] if isinstance(center, MultiValue) else center),
                window_width=float(width[0] if isinstance(width, MultiValue) else width),
            )
        ]
    return luts


def _with_lut_data_as_bytes(source: Dataset) -> Dataset:
    """``source``, or a new dataset sharing its elements whose VOI LUT Sequence holds LUT
    Data as OW bytes: highdicom copies a VOI LUT into the presentation state only from
    bytes, and a LUT stored as US (e.g. a CR's) reads as a list of numbers. ``source`` is
    not modified."""
    items = source.get("VOILUTSequence") or []
    if all(isinstance(item.get("LUTData"), bytes | None) for item in items):
        return source
    copy = Dataset()
    for element in source:
        if element.tag != _VOI_LUT_SEQUENCE:  # a new element below: never the shared one
            copy.add(element)
    if hasattr(source, "file_meta"):
        copy.file_meta = source.file_meta
    fixed = []
    for item in items:
        new = Dataset()
        for element in item:
            if element.tag != _LUT_DATA:
                new.add(element)
        data = item.get("LUTData")
        if data is not None and not isinstance(data, bytes):
            bits = int(item.LUTDescriptor[2])
            values = np.asarray(list(data) if not np.isscalar(data) else [data])
            dtype = np.uint8 if bits <= 8 else np.dtype("<u2")
            new.add_new(_LUT_DATA, "OW", values.astype(dtype).tobytes())
        elif data is not None:
            new.add(item[_LUT_DATA])
        fixed.append(new)
    copy.add(DataElement(_VOI_LUT_SEQUENCE, "SQ", fixed))
    return copy


_LUT_DATA = 0x00283006
_VOI_LUT_SEQUENCE = 0x00283010
