"""DICOM Segmentation (binary) of an algorithm's mask over the CT series it saw.

Built with highdicom from the pseudonymised source images (one frame per source slice
that holds any of the mask), in the sources' study and frame of reference; the caller
passes the series and SOP UIDs. Thread: any (pure CPU).

The mask stays bit-packed (:class:`~aifi_app.algorithms.packed_mask.PackedFrames`):
highdicom's Segmentation takes the mask as one array of a byte per pixel (131 MB for a
500-slice CT, the service's largest allocation), so it gets a stand-in that costs no
memory, a read-only all-set view of one frame broadcast over the frames that hold any
of the mask (with their source images), and builds every attribute and per-frame
functional group from that; its Pixel Data is then replaced by the mask's own packed
frames, in the order highdicom put the frames (each frame's source image names it). A
BINARY Segmentation stores its frames exactly as they are packed here, so no frame is
ever unpacked. highdicom does not encode the stand-in's frames nor build its look-up
tables (:class:`_SegmentationHeaders`): the caller gets a plain pydicom data set.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from aifi_app.algorithms.findings import AlgorithmIdentity, SegmentationMask
from aifi_app.results import iod_lookup_cache
from aifi_app.results.secondary_capture import algorithm_contributing_equipment

__all__ = ["build_segmentation"]


def build_segmentation(
    sources: Sequence[Dataset],
    segmentation: SegmentationMask,
    algorithm: AlgorithmIdentity,
    *,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    instance_number: int,
    manufacturer: str = "AIFI Appliance",
    software_version: str,
) -> Dataset:
    """A binary SEG with one segment (``segmentation.concept``) over ``sources``.

    ``sources`` must hold every image named in ``segmentation.source_sop_instance_uids``;
    raises ``ValueError`` otherwise or when the mask does not fit them.
    """
    iod_lookup_cache.install()  # highdicom asks it for every source image
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    try:
        ordered = [by_uid[uid] for uid in segmentation.source_sop_instance_uids]
    except KeyError as exc:
        raise ValueError(f"segmentation references an image not among the sources: {exc}") from None
    packed = segmentation.packed
    if packed.frames != len(ordered):
        raise ValueError(f"mask has {packed.frames} frames for {len(ordered)} source images")
    index_of = {uid: n for n, uid in enumerate(segmentation.source_sop_instance_uids)}
    if len(index_of) != len(ordered):
        raise ValueError("segmentation names a source image twice")
    held = [int(n) for n in np.flatnonzero(packed.frames_set())]
    # all frames empty: highdicom keeps them all (a SEG has at least one frame)
    stand_in = np.broadcast_to(
        np.full((1, packed.rows, packed.columns), 1 if held else 0, dtype=np.uint8),
        (len(held) or len(ordered), packed.rows, packed.columns),
    )
    concept = segmentation.concept
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segmentation.label[:64],
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=hd.sr.CodedConcept(concept.value, concept.scheme, concept.meaning),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm.name[:64],
            version=algorithm.version[:64],
            family=codes.cid7162.MorphologicalOperations,
        ),
    )
    seg = _SegmentationHeaders(
        source_images=[ordered[n] for n in held] if held else ordered,
        pixel_array=stand_in,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        omit_empty_frames=False,  # the stand-in's frames are those that hold the mask
        segment_descriptions=[description],
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=manufacturer,
        manufacturer_model_name=algorithm.algorithm_id[:64],
        software_versions=software_version,
        device_serial_number="0",
        series_description=f"AI result: {algorithm.name}"[:64],
        contributing_equipment=[algorithm_contributing_equipment(algorithm)],
    )
    frame_order = [
        index_of[
            str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        ]
        for item in seg.PerFrameFunctionalGroupsSequence
    ]
    if len(frame_order) != int(seg.NumberOfFrames):
        raise ValueError("highdicom made frames without a source image")
    # its elements as a plain data set: the highdicom object lacks its look-up tables
    ds = Dataset({element.tag: element for element in seg.elements()})
    ds.file_meta = seg.file_meta
    ds.preamble = seg.preamble
    ds.PixelData = packed.pixel_data(frame_order)  # in place of the stand-in's (none)
    shared = ds.get("SharedFunctionalGroupsSequence")
    if "PatientOrientation" not in ds and not (shared and "PlaneOrientationSequence" in shared[0]):
        # projection images (DX, CR) have no plane orientation: General Image then needs
        # Patient Orientation (Type 2C), taken from the source
        ds.PatientOrientation = ordered[0].get("PatientOrientation", "")
    return ds


class _SegmentationHeaders(hd.seg.Segmentation):
    """highdicom's Segmentation without its two steps that only serve the stand-in or the
    highdicom object itself: encoding the stand-in's frames (pack_bits of an all-set
    frame per frame, and their joined copy, 13 MB for 400 frames of 512x512: the result
    stage's memory peak; its Pixel Data is left empty, then replaced by the mask's
    packed frames) and building the look-up tables with which highdicom reads frames
    back (the caller gets a plain data set). Every attribute and per-frame functional
    group is highdicom's (a test compares with highdicom's build from the whole mask)."""

    def _encode_pixels_native(self, planes: np.ndarray) -> bytes:
        return b""

    def _build_luts(self) -> None:
        return None
