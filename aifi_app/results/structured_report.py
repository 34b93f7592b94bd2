"""DICOM SR TID 1500 Measurement Report with the findings of one algorithm run.

One Comprehensive SR document per algorithm run, built with highdicom from the
pseudonymised source images the algorithm saw. It goes into the sources' study (patient
and study modules copied from the first source) in a new series whose UIDs the caller
passes in. Content:

* observation context: the algorithm as device observer (TID 1004: UID from the caller,
  name = algorithm name, manufacturer = vendor, model name = algorithm id);
* procedure reported: SCT 399208008 "Plain chest X-ray" for a DX/CR chest source, else
  SCT 363679005 "Imaging procedure" (CID 100);
* per finding one TID 1501 group: tracking identifier (deterministic UID and readable
  text), finding type = the finding's concept, algorithm name/version/vendor with the
  decision threshold as algorithm parameter, the source image, a qualitative evaluation
  "<concept> = Present/Absent" (SCT 52101004 / 272519000, CID 240) and a measurement
  "Probability" (DCM 122157) of the score in UCUM "1" (no units) referencing the image;
* per measurement of a segmented structure for which the same result also gets a SEG
  (``segments``): one TID 1411 volumetric ROI group that references the SEG's segment
  ("Referenced Segment", DCM 121191, with the source series as "Source series for
  segmentation", as IHE AIR recommends) instead of every source image: the SEG already
  names each of its frames' sources, and a 500-slice CT's 500 image references made up
  most of the document's size and build time; other measurements: a TID 1501 group that
  references their source images;
* per region one TID 1410 planar ROI group: the region as SCOORD (a box or polygon as a
  closed POLYLINE, a point as a POINT, PIXEL coordinates) on the referenced source image
  (and frame), the region's tracking identifier and UID (:func:`region_tracking_uid`, the
  same as in the GSPS), finding type, algorithm, "<concept> = Present" and, where the
  algorithm gave one, the probability;
* all sources, and the referenced SEGs, as evidence (Current Requested Procedure
  Evidence Sequence).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.tag import BaseTag

from aifi_app.algorithms.findings import (
    AlgorithmIdentity,
    AlgorithmResult,
    Finding,
    MeasurementFinding,
    RegionFinding,
)
from aifi_app.results.presentation_state import (
    region_graphic,
    region_tracking_id,
    region_tracking_uid,
)
from aifi_app.results.secondary_capture import (
    algorithm_contributing_equipment,
    character_set_for,
    copy_study_context,
    lo_value,
)
from aifi_app.results.segment_reference import SegmentReference

__all__ = [
    "PLAIN_CHEST_XRAY",
    "PROBABILITY",
    "SEGMENTATION_STORAGE",
    "SegmentReference",
    "build_measurement_report",
    "procedure_reported_for",
]

PLAIN_CHEST_XRAY = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
"""SNOMED CT procedure "Plain chest X-ray (procedure)"; not in pydicom's code tables."""
IMAGING_PROCEDURE = hd.sr.CodedConcept.from_code(codes.SCT.ImagingProcedure)
PROBABILITY = hd.sr.CodedConcept.from_code(codes.DCM.Probability)
NO_UNITS = hd.sr.CodedConcept.from_code(codes.UCUM.NoUnits)
PRESENT = hd.sr.CodedConcept.from_code(codes.SCT.Present)
ABSENT = hd.sr.CodedConcept.from_code(codes.SCT.Absent)
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
_STUDY_INSTANCE_UID = BaseTag(0x0020000D)
_SERIES_INSTANCE_UID = BaseTag(0x0020000E)
_SOP_INSTANCE_UID = BaseTag(0x00080018)
_Group = (
    hd.sr.MeasurementsAndQualitativeEvaluations
    | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
)


def build_measurement_report(
    sources: Sequence[Dataset],
    result: AlgorithmResult,
    *,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    instance_number: int,
    device_observer_uid: str,
    manufacturer: str = "AIFI Appliance",
    software_version: str,
    tracking_base_uid: str | None = None,
    segments: Sequence[SegmentReference] = (),
    evidence_of_all_sources: bool = True,
) -> Dataset:
    """Build a Comprehensive SR (TID 1500) reporting every finding of ``result``.

    Promises: the document is COMPLETE, FINAL and UNVERIFIED, in the study of
    ``sources`` with the given series/SOP UIDs and numbers, SeriesDescription
    "AI result: <algorithm name>", one measurement group per finding in the order of
    ``result.findings``, then one per measurement, then one planar ROI group per region,
    and all ``sources`` recorded as evidence. A measurement that one of ``segments``
    :meth:`~SegmentReference.measures` is a TID 1411 group referencing that segment (the
    SEG is then evidence too), any other a TID 1501 group. Tracking UIDs derive from
    ``sop_instance_uid`` (regions': from ``tracking_base_uid``, default the same), so
    the same arguments always give the same UIDs (only creation dates and times differ).
    ``sources`` are not modified.

    ``evidence_of_all_sources=False``: the evidence records only the first source and
    those the content references (and the referenced SEGs), for a caller that records
    the others itself (:class:`aifi_app.results.sr_evidence.EvidenceJoin`: the same
    bytes as with every source, made ahead).

    Raises ``ValueError`` when ``sources`` is empty, spans more than one study,
    ``result`` has no findings, measurements or regions, or a finding's or region's
    source image is not among ``sources``.

    Thread: any thread (pure CPU, a few ms).
    """
    if not sources:
        raise ValueError("a measurement report needs at least one source image")
    # (each source's UIDs by tag: a 500-slice CT's 1,500 look-ups by keyword took ~5 ms)
    studies = {str(source[_STUDY_INSTANCE_UID].value) for source in sources}
    if len(studies) != 1:
        raise ValueError(f"sources span {len(studies)} studies; one report per study")
    if not result.findings and not result.measurements and not result.regions:
        raise ValueError("TID 1500 needs at least one measurement group; result is empty")
    uids = [str(source[_SOP_INSTANCE_UID].value) for source in sources]
    by_uid = dict(zip(uids, sources, strict=True))
    algorithm = result.algorithm

    groups: list[_Group] = [
        _measurement_group(index, finding, algorithm, _source_of(finding, by_uid), sop_instance_uid)
        for index, finding in enumerate(result.findings)
    ]
    referenced: list[SegmentReference] = []
    for measurement in result.measurements:
        segment = next((s for s in segments if s.measures(measurement)), None)
        if segment is None:
            groups.append(
                _quantity_group(len(groups), measurement, algorithm, by_uid, sop_instance_uid)
            )
        else:
            groups.append(
                _segment_volume_group(
                    len(groups), measurement, algorithm, by_uid, segment, sop_instance_uid
                )
            )
            referenced.append(segment)
    base = tracking_base_uid or sop_instance_uid
    regions = [
        _region_group(index, region, algorithm, by_uid, base)
        for index, region in enumerate(result.regions)
    ]
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(algorithm, device_observer_uid),
        procedure_reported=procedure_reported_for(sources),
        imaging_measurements=[*groups, *regions],
    )

    series_description = lo_value(f"AI result: {algorithm.name}")
    software_versions = [
        lo_value(software_version),
        lo_value(f"{algorithm.name} {algorithm.version}"),
    ]
    equipment = algorithm_contributing_equipment(algorithm)
    charset = character_set_for(
        sources[0],
        [series_description, manufacturer, *software_versions],
        [*report, equipment],
    )
    kwargs: dict[str, Any] = {}
    if charset is not None:
        kwargs["specific_character_set"] = charset
    recorded = (
        sources
        if evidence_of_all_sources
        else _referenced_sources(sources, uids, result, referenced)
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[*recorded, *(_segmentation_evidence(sources[0], s) for s in referenced)],
        content=report,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=lo_value(manufacturer),
        is_complete=True,
        is_final=True,
        is_verified=False,
        contributing_equipment=[equipment],
        series_description=series_description,
        software_versions=software_versions,
        **kwargs,
    )
    copy_study_context(sources[0], sr)
    return sr


def procedure_reported_for(sources: Sequence[Dataset]) -> hd.sr.CodedConcept:
    """The TID 1500 "Procedure reported" code for ``sources``.

    Promises: SCT 399208008 "Plain chest X-ray" when every source is a DX or CR image
    of the chest, otherwise SCT 363679005 "Imaging procedure".

    Thread: any thread.
    """
    chest_xray = all(
        str(source.get("Modality", "")).upper() in ("DX", "CR")
        and str(source.get("BodyPartExamined", "")).upper() == "CHEST"
        for source in sources
    )
    return PLAIN_CHEST_XRAY if sources and chest_xray else IMAGING_PROCEDURE


def _referenced_sources(
    sources: Sequence[Dataset],
    uids: Sequence[str],
    result: AlgorithmResult,
    segments: Sequence[SegmentReference],
) -> list[Dataset]:
    """The first of ``sources`` (highdicom takes the SR's patient and study from it) and
    those the report's content references (findings', regions' and the measurements'
    not of a referenced segment), in the order of ``sources``."""
    referenced = {f.source_sop_instance_uid for f in result.findings}
    referenced |= {r.source_sop_instance_uid for r in result.regions}
    for measurement in result.measurements:
        if not any(s.measures(measurement) for s in segments):
            referenced.update(measurement.source_sop_instance_uids)
    pairs = zip(uids[1:], sources[1:], strict=True)
    return [sources[0]] + [ds for uid, ds in pairs if uid in referenced]


def _source_of(finding: Finding, by_uid: dict[str, Dataset]) -> Dataset:
    try:
        return by_uid[finding.source_sop_instance_uid]
    except KeyError:
        raise ValueError(
            f"finding {finding.label!r} references SOP instance "
            f"{finding.source_sop_instance_uid}, which is not among the sources"
        ) from None


def _observation_context(
    algorithm: AlgorithmIdentity, device_observer_uid: str
) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_observer_uid,
        name=lo_value(algorithm.name),
        manufacturer_name=lo_value(algorithm.vendor),
        model_name=lo_value(algorithm.algorithm_id),
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=device,
        )
    )


def _measurement_group(
    index: int,
    finding: Finding,
    algorithm: AlgorithmIdentity,
    source: Dataset,
    sop_instance_uid: str,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    concept = hd.sr.CodedConcept(
        finding.concept.value, finding.concept.scheme, finding.concept.meaning
    )
    tracking = hd.sr.TrackingIdentifier(
        uid=_derived_uid(sop_instance_uid, f"finding-{index}"),
        identifier=f"{algorithm.name} finding {index + 1}: {finding.label}",
    )
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=lo_value(algorithm.name),
        version=lo_value(algorithm.version),
        parameters=[f"decision threshold {finding.threshold:.4g}"],
        manufacturer=lo_value(algorithm.vendor),
    )
    evaluation = hd.sr.QualitativeEvaluation(
        name=concept, value=PRESENT if finding.positive else ABSENT
    )
    probability = hd.sr.Measurement(
        name=PROBABILITY,
        value=float(finding.score),
        unit=NO_UNITS,
        algorithm_id=algorithm_id,
        referenced_images=[hd.sr.SourceImageForMeasurement.from_source_image(source)],
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        finding_type=concept,
        algorithm_id=algorithm_id,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
        qualitative_evaluations=[evaluation],
        measurements=[probability],
    )


def _quantity_group(
    index: int,
    measurement: MeasurementFinding,
    algorithm: AlgorithmIdentity,
    by_uid: dict[str, Dataset],
    sop_instance_uid: str,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """One TID 1501 group for a measured quantity (e.g. lung volume) on a series."""
    missing = [u for u in measurement.source_sop_instance_uids if u not in by_uid]
    if missing:
        raise ValueError(f"measurement {measurement.label!r} references images not among sources")
    concept = hd.sr.CodedConcept(
        measurement.concept.value, measurement.concept.scheme, measurement.concept.meaning
    )
    algorithm_id, quantity = _algorithm_and_quantity(measurement, algorithm)
    sources = [by_uid[u] for u in measurement.source_sop_instance_uids]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_derived_uid(sop_instance_uid, f"measurement-{index}"),
            identifier=lo_value(f"{algorithm.name}: {measurement.label}"),
        ),
        finding_type=concept,
        algorithm_id=algorithm_id,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(s) for s in sources],
        measurements=[quantity],
    )


def _algorithm_and_quantity(
    measurement: MeasurementFinding, algorithm: AlgorithmIdentity
) -> tuple[hd.sr.AlgorithmIdentification, hd.sr.Measurement]:
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=lo_value(algorithm.name),
        version=lo_value(algorithm.version),
        parameters=[lo_value(measurement.method)],
        manufacturer=lo_value(algorithm.vendor),
    )
    quantity = hd.sr.Measurement(
        name=hd.sr.CodedConcept(
            measurement.quantity.value, measurement.quantity.scheme, measurement.quantity.meaning
        ),
        value=float(measurement.value),
        unit=hd.sr.CodedConcept(
            measurement.unit.value, measurement.unit.scheme, measurement.unit.meaning
        ),
        algorithm_id=algorithm_id,
    )
    return algorithm_id, quantity


def _segment_volume_group(
    index: int,
    measurement: MeasurementFinding,
    algorithm: AlgorithmIdentity,
    by_uid: dict[str, Dataset],
    segment: SegmentReference,
    sop_instance_uid: str,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """One TID 1411 group for a measured quantity of a segment (e.g. the lung volume of
    the lung segment), referencing the segment and its source series."""
    missing = [u for u in measurement.source_sop_instance_uids if u not in by_uid]
    if missing:
        raise ValueError(f"measurement {measurement.label!r} references images not among sources")
    series = {
        str(by_uid[u][_SERIES_INSTANCE_UID].value) for u in measurement.source_sop_instance_uids
    }
    if len(series) != 1:
        raise ValueError(f"measurement {measurement.label!r} spans {len(series)} series")
    algorithm_id, quantity = _algorithm_and_quantity(measurement, algorithm)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_derived_uid(sop_instance_uid, f"measurement-{index}"),
            identifier=lo_value(f"{algorithm.name}: {measurement.label}"),
        ),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=SEGMENTATION_STORAGE,
            sop_instance_uid=segment.sop_instance_uid,
            segment_number=segment.segment_number,
            source_series=hd.sr.SourceSeriesForSegmentation(series.pop()),
        ),
        finding_type=hd.sr.CodedConcept(
            measurement.concept.value, measurement.concept.scheme, measurement.concept.meaning
        ),
        algorithm_id=algorithm_id,
        measurements=[quantity],
    )


def _segmentation_evidence(source: Dataset, segment: SegmentReference) -> Dataset:
    """What the evidence lists of a referenced SEG (in the sources' study)."""
    ds = Dataset()
    ds.StudyInstanceUID = source.StudyInstanceUID
    ds.SeriesInstanceUID = segment.series_instance_uid
    ds.SOPClassUID = SEGMENTATION_STORAGE
    ds.SOPInstanceUID = segment.sop_instance_uid
    return ds


def _region_group(
    index: int,
    region: RegionFinding,
    algorithm: AlgorithmIdentity,
    by_uid: dict[str, Dataset],
    tracking_base_uid: str,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """One TID 1410 group for a region marked on one image (SCOORD on that image)."""
    source = by_uid.get(region.source_sop_instance_uid)
    if source is None:
        raise ValueError(f"region {region.label!r} references an image not among the sources")
    concept = hd.sr.CodedConcept(
        region.concept.value, region.concept.scheme, region.concept.meaning
    )
    graphic_type, data = region_graphic(region)
    single_frame = int(source.get("NumberOfFrames") or 1) == 1
    frames = (
        None
        if region.frame_number is None or (single_frame and region.frame_number == 1)
        else [region.frame_number]
    )
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=lo_value(algorithm.name),
        version=lo_value(algorithm.version),
        manufacturer=lo_value(algorithm.vendor),
    )
    measurements = []
    if region.score is not None:
        measurements.append(
            hd.sr.Measurement(
                name=PROBABILITY,
                value=float(region.score),
                unit=NO_UNITS,
                algorithm_id=algorithm_id,
            )
        )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=region_tracking_uid(tracking_base_uid, index),
            identifier=region_tracking_id(algorithm.name, index, region),
        ),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=graphic_type,
            graphic_data=data,
            source_image=hd.sr.SourceImageForRegion.from_source_image(
                source, referenced_frame_numbers=frames
            ),
        ),
        finding_type=concept,
        algorithm_id=algorithm_id,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=concept, value=PRESENT)],
        measurements=measurements or None,
    )


def _derived_uid(base_uid: str, part: str) -> str:
    """A 2.25 UID (PS3.5 B.2) that depends only on ``base_uid`` and ``part``."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'{base_uid}/{part}').int}"
