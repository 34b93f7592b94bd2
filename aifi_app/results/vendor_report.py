"""Read the findings of a vendor's TID 1500 Measurement Report (with highdicom's SR reading).

A vendor's own result objects are passed on as they are; where one is a TID 1500 SR, its
qualitative evaluations and measurements are also recorded as our findings, so that the
queue shows them and urgent ones raise the order's priority (HL7 to the RIS).

* a qualitative evaluation "<concept> = <value>" becomes a :class:`Finding` of that
  concept, positive unless the value is SCT 272519000 "Absent" (or a code meaning
  "absent", "no", "negative" or "normal"); its score is the group's DCM 122157
  "Probability" measurement when the vendor gave one, else 1.0 (positive) or 0.0, with
  threshold 0.5, and the label "<concept>: <value>";
* any other numeric measurement becomes a :class:`MeasurementFinding` of the group's
  finding type, on the group's source images, or for a TID 1411 group that references a
  segment, the evidence's images of the segment's source series.

The references stay in the space the vendor saw (pseudonymised UIDs), like our own
findings. A document that is not a readable TID 1500 report gives no findings.
Thread: any (pure CPU).
"""

from __future__ import annotations

import logging
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset

from aifi_app.algorithms.findings import (
    AlgorithmIdentity,
    AlgorithmResult,
    CodedConcept,
    Finding,
    MeasurementFinding,
)
from aifi_app.results import module_attributes

module_attributes.install()  # highdicom reads its largest table a module at a time

__all__ = ["findings_of_vendor_report"]

log = logging.getLogger(__name__)

_MEASUREMENT_REPORT = ("126000", "DCM")
_PROBABILITY = ("122157", "DCM")
_ABSENT = ("272519000", "SCT")
_NEGATIVE_WORDS = frozenset({"absent", "no", "negative", "normal", "not present"})


def findings_of_vendor_report(ds: Dataset, algorithm: AlgorithmIdentity) -> AlgorithmResult:
    """The findings and measurements of the vendor's SR ``ds`` (empty when it is not a
    TID 1500 Measurement Report or cannot be read; the reason is logged without values).
    """
    empty = AlgorithmResult(algorithm=algorithm)
    title = ds.get("ConceptNameCodeSequence")
    if not title or (str(title[0].CodeValue), str(title[0].CodingSchemeDesignator)) != (
        _MEASUREMENT_REPORT
    ):
        return empty
    try:
        return _read(ds, algorithm)
    except Exception as exc:  # a vendor's document we cannot read: pass it on, record nothing
        log.warning("vendor SR could not be read as TID 1500 (%s)", type(exc).__name__)
        return empty


def _read(ds: Dataset, algorithm: AlgorithmIdentity) -> AlgorithmResult:
    report = hd.sr.MeasurementReport.from_sequence([ds])
    groups = [
        *report.get_image_measurement_groups(),
        *report.get_planar_roi_measurement_groups(),
        *report.get_volumetric_roi_measurement_groups(),
    ]
    evidence = _evidence(ds)
    series_of = {uid: series for uid, _, series in evidence}
    findings: list[Finding] = []
    measurements: list[MeasurementFinding] = []
    for group in groups:
        sources = (
            [(uid, cls, series_of.get(uid, "")) for uid, cls, _ in _group_sources(group)]
            or _segment_source_series(group, evidence)
            or evidence[:1]
        )
        uid, cls, series = sources[0] if sources else ("", "", "")
        probability: float | None = None
        others = []
        for measurement in group.get_measurements():
            if _key(measurement.name) == _PROBABILITY:
                probability = float(measurement.value)
            else:
                others.append(measurement)
        for evaluation in group.get_qualitative_evaluations():
            concept = _concept(evaluation.name)
            value = _concept(evaluation.value)  # type: ignore[arg-type]  # a CODE item
            positive = (value.value, value.scheme) != _ABSENT and (
                value.meaning.strip().lower() not in _NEGATIVE_WORDS
            )
            score = probability if probability is not None else (1.0 if positive else 0.0)
            findings.append(
                Finding(
                    concept=concept,
                    score=score,
                    threshold=0.5,
                    positive=positive,
                    source_sop_instance_uid=uid,
                    source_sop_class_uid=cls,
                    source_series_instance_uid=series,
                    label=f"{concept.meaning}: {value.meaning}",
                )
            )
        finding_type = group.finding_type
        for measurement in others:
            quantity = _concept(measurement.name)
            measurements.append(
                MeasurementFinding(
                    concept=_concept(finding_type) if finding_type is not None else quantity,
                    quantity=quantity,
                    value=float(measurement.value),
                    unit=_concept(measurement.unit),
                    method="reported by the vendor",
                    source_series_instance_uid=series,
                    source_sop_instance_uids=tuple(s[0] for s in sources),
                    source_sop_class_uid=cls,
                    label=f"{quantity.meaning} {float(measurement.value):g} "
                    f"{measurement.unit.value}",
                )
            )
    return AlgorithmResult(
        algorithm=algorithm, findings=tuple(findings), measurements=tuple(measurements)
    )


def _key(code: hd.sr.CodedConcept) -> tuple[str, str]:
    return str(code.value), str(code.scheme_designator)


def _concept(code: hd.sr.CodedConcept) -> CodedConcept:
    return CodedConcept(str(code.value), str(code.scheme_designator), str(code.meaning))


def _group_sources(
    group: Any,
) -> list[tuple[str, str, str]]:
    found = []
    for source in getattr(group, "source_images", None) or []:
        ref = source.referenced_sop_instance_uid
        found.append((str(ref), str(source.referenced_sop_class_uid), ""))
    return found


def _segment_source_series(
    group: Any, evidence: list[tuple[str, str, str]]
) -> list[tuple[str, str, str]]:
    """For a TID 1411 group that references a segment with its source series (as our own
    SRs do): the evidence's instances of that series."""
    segment = getattr(group, "referenced_segment", None)
    series = [
        str(item.UID)
        for item in segment or []
        if getattr(item, "ValueType", "") == "UIDREF" and "UID" in item
    ]
    return [e for e in evidence if series and e[2] == series[0]]


def _evidence(ds: Dataset) -> list[tuple[str, str, str]]:
    found = []
    for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            for item in series.get("ReferencedSOPSequence", []):
                found.append(
                    (
                        str(item.ReferencedSOPInstanceUID),
                        str(item.ReferencedSOPClassUID),
                        str(series.SeriesInstanceUID),
                    )
                )
    return found
