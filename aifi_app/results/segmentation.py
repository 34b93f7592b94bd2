"""DICOM Segmentation (binary) of an algorithm's mask over the CT series it saw.

Built with highdicom from the pseudonymised source images (one frame per source image,
empty frames included, so that nothing but its Pixel Data depends on the mask), in the
sources' study and frame of reference; the caller passes the series and SOP UIDs. The
frames without the segment are then left out, as highdicom leaves them out
(:mod:`aifi_app.results.segmentation_frames`). Thread: any (pure CPU).

The mask stays bit-packed (:class:`~aifi_app.algorithms.packed_mask.PackedFrames`):
highdicom's Segmentation takes the mask as one array of a byte per pixel (131 MB for a
500-slice CT, the service's largest allocation), so it gets a stand-in that costs no
memory, a read-only all-set view of one frame broadcast over the sources, and builds
every attribute and per-frame functional group from that; its Pixel Data is then the
mask's own packed frames, in the order highdicom put the frames (each frame's source
image names it). A BINARY Segmentation stores its frames exactly as they are packed
here, so no frame is ever unpacked. highdicom does not encode the stand-in's frames nor
build its look-up tables (:class:`_SegmentationHeaders`): the caller gets a plain
pydicom data set.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.valuerep import DA, DT, TM

from aifi_app.algorithms.findings import AlgorithmIdentity, CodedConcept, SegmentationMask
from aifi_app.results import iod_lookup_cache
from aifi_app.results.secondary_capture import algorithm_contributing_equipment
from aifi_app.results.segmentation_frames import kept_frames_of, omit_frames

__all__ = ["build_segmentation", "build_segmentation_headers", "segmentation_frame_order"]


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
    created: datetime.datetime | None = None,
    dimension_organization_uid: str | None = None,
) -> Dataset:
    """A binary SEG with one segment (``segmentation.concept``) over ``sources``: one frame
    per image the mask names in which the segment is present (every image's where it is
    present in none), those images in the order of ``sources``
    (:mod:`aifi_app.results.segmentation_frames`).

    ``sources`` must hold every image named in ``segmentation.source_sop_instance_uids``;
    raises ``ValueError`` otherwise or when the mask does not fit them.
    """
    uids = segmentation.source_sop_instance_uids
    index_of = {uid: n for n, uid in enumerate(uids)}
    if len(index_of) != len(uids):
        raise ValueError("segmentation names a source image twice")
    present = {str(ds.SOPInstanceUID) for ds in sources}
    missing = [uid for uid in uids if uid not in present]
    if missing:
        raise ValueError(f"segmentation references an image not among the sources: {missing[0]!r}")
    packed = segmentation.packed
    if packed.frames != len(uids):
        raise ValueError(f"mask has {packed.frames} frames for {len(uids)} source images")
    ds = build_segmentation_headers(
        [s for s in sources if str(s.SOPInstanceUID) in index_of],
        segmentation.concept,
        segmentation.label,
        algorithm,
        series_instance_uid=series_instance_uid,
        sop_instance_uid=sop_instance_uid,
        series_number=series_number,
        instance_number=instance_number,
        manufacturer=manufacturer,
        software_version=software_version,
        created=created,
        dimension_organization_uid=dimension_organization_uid,
    )
    order = [index_of[uid] for uid in segmentation_frame_order(ds)]
    kept = kept_frames_of(packed, order)
    omit_frames(ds, kept)  # the frames without the segment left out
    ds.PixelData = packed.pixel_data([order[n] for n in kept])  # in place of the stand-in's
    return ds


def segmentation_frame_order(ds: Dataset) -> list[str]:
    """The SOP Instance UID of each frame's source image, in frame order."""
    return [
        str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        for item in ds.PerFrameFunctionalGroupsSequence
    ]


def build_segmentation_headers(
    sources: Sequence[Dataset],
    concept: CodedConcept,
    label: str,
    algorithm: AlgorithmIdentity,
    *,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    instance_number: int,
    manufacturer: str = "AIFI Appliance",
    software_version: str,
    created: datetime.datetime | None = None,
    dimension_organization_uid: str | None = None,
) -> Dataset:
    """Every element of the binary SEG of a mask over ``sources`` (one frame per source,
    in highdicom's order: :func:`segmentation_frame_order`) but its Pixel Data, which is
    left empty (the last element; :func:`build_segmentation` sets it). Nothing in it
    depends on the mask: a SEG built ahead of the mask (while the model runs,
    :mod:`aifi_app.pipeline.seg_ahead`) is the same object, given the same ``created``
    (its content and instance creation date and time, and highdicom's contribution's;
    default: now) and
    ``dimension_organization_uid`` (default: a new one, highdicom's). Thread: any (pure
    CPU)."""
    if not sources:
        raise ValueError("a segmentation needs at least one source image")
    if len({str(ds.SOPInstanceUID) for ds in sources}) != len(sources):
        raise ValueError("segmentation names a source image twice")
    iod_lookup_cache.install()  # highdicom asks it for every source image
    rows, columns = int(sources[0].Rows), int(sources[0].Columns)
    stand_in = np.broadcast_to(
        np.ones((1, rows, columns), dtype=np.uint8), (len(sources), rows, columns)
    )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label[:64],
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
        source_images=list(sources),
        pixel_array=stand_in,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        omit_empty_frames=False,  # every source's frame: only Pixel Data depends on the mask
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
        content_date=None if created is None else created.date(),
        content_time=None if created is None else created.time(),
    )
    if int(seg.NumberOfFrames) != len(sources):
        raise ValueError("highdicom made a frame count other than one per source image")
    # its elements as a plain data set: the highdicom object lacks its look-up tables
    ds = Dataset({element.tag: element for element in seg.elements()})
    ds.file_meta = seg.file_meta
    ds.preamble = seg.preamble
    if len(segmentation_frame_order(ds)) != len(sources):
        raise ValueError("highdicom made frames without a source image")
    if created is not None:  # highdicom takes no instance creation time: it sets now
        ds.InstanceCreationDate = DA(created.date())
        ds.InstanceCreationTime = TM(created.time())
        for item in ds.get("ContributingEquipmentSequence", []):
            if "ContributionDateTime" in item:  # highdicom's own item: made now
                item.ContributionDateTime = DT(created)
    if dimension_organization_uid is not None:  # highdicom makes a new one per build
        for item in (*ds.DimensionOrganizationSequence, *ds.DimensionIndexSequence):
            item.DimensionOrganizationUID = dimension_organization_uid
    shared = ds.get("SharedFunctionalGroupsSequence")
    if "PatientOrientation" not in ds and not (shared and "PlaneOrientationSequence" in shared[0]):
        # projection images (DX, CR) have no plane orientation: General Image then needs
        # Patient Orientation (Type 2C), taken from the source
        ds.PatientOrientation = sources[0].get("PatientOrientation", "")
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
