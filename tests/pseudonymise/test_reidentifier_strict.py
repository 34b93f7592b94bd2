"""Strict re-identification: unknown references and mixed patients are refused."""

from __future__ import annotations

import dataclasses

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from aifi_app.pseudonymise import (
    PatientMixError,
    ProfileOption,
    Pseudonymiser,
    ResultScope,
    UnknownReferenceError,
    reidentify,
)
from tests.pseudonymise.test_reidentifier import (
    ORIGINAL,
    SECRET,
    original_header,
    result_in_pseudonymised_space,
)

MODIFIED = frozenset({ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES})


class FullTable:
    """Every kind of mapping, as the store keeps it: pseudonym -> original."""

    def __init__(self) -> None:
        self.originals: dict[str, str] = {}

    def record(self, kind: str, original: str, pseudonym: str) -> None:
        self.originals[pseudonym] = original

    def original_for(self, pseudonym: str) -> str | None:
        return self.originals.get(pseudonym)


def _setup(
    options: frozenset[ProfileOption] = MODIFIED,
) -> tuple[Dataset, Dataset, Dataset, FullTable, ResultScope]:
    header = original_header()
    table = FullTable()
    pseudonymiser = Pseudonymiser(SECRET, options, table.record)
    image = pseudonymiser.pseudonymise(header)
    result = result_in_pseudonymised_space(image)
    known = {ORIGINAL["instance"]: ORIGINAL["study"]}
    scope = ResultScope(
        study_uid=ORIGINAL["study"],
        patient_pseudonym=pseudonymiser.patient_pseudonym(header.PatientID),
        accession_number=header.AccessionNumber,
        study_id=header.StudyID,
        study_of_instance=known.get,
        date_offset_days=pseudonymiser.date_offset_days(header.PatientID)
        if ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in options
        else None,
    )
    return header, image, result, table, scope


def test_a_conforming_result_is_restored() -> None:
    header, image, result, table, scope = _setup()
    nested = Dataset()
    nested.AcquisitionDate = image.StudyDate  # a shifted date deep inside the result
    nested.AccessionNumber = image.AccessionNumber
    nested.PatientID = image.PatientID
    result.ContentSequence[0].ContentSequence[0].ReferencedRequestSequence = Sequence([nested])
    result.ContentDate = "20260101"  # the result's own creation date: never shifted
    out = reidentify(result, table.original_for, header, scope)
    item = out.ContentSequence[0].ContentSequence[0].ReferencedRequestSequence[0]
    assert item.AcquisitionDate == header.StudyDate
    assert item.AccessionNumber == header.AccessionNumber
    assert out.ContentDate == "20260101"
    assert out.StudyInstanceUID == ORIGINAL["study"]
    assert out.PatientID == header.PatientID


def test_dates_are_kept_when_they_were_not_shifted() -> None:
    header, _, result, table, scope = _setup(frozenset())
    result.AcquisitionDate = "20200202"
    assert reidentify(result, table.original_for, header, scope).AcquisitionDate == "20200202"


def test_unknown_uid_is_refused() -> None:
    header, _, result, table, scope = _setup()
    result.ContentSequence[0].ContentSequence[0].ReferencedSOPSequence[
        0
    ].ReferencedSOPInstanceUID = "2.25.1234"
    with pytest.raises(UnknownReferenceError, match=r"\(0008,1155\)"):
        reidentify(result, table.original_for, header, scope)


def test_a_reference_to_a_sibling_result_is_kept_and_nothing_else() -> None:
    """An SR may reference the SEG re-identified with it (its UIDs are the SEG's own, in
    no mapping); the same reference is refused when the SEG is not among the siblings."""
    header, _, result, table, scope = _setup()
    seg_instance, seg_series = "2.25.4242", "2.25.4243"
    reference = result.ContentSequence[0].ContentSequence[0].ReferencedSOPSequence[0]
    reference.ReferencedSOPInstanceUID = seg_instance
    evidence = result.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    evidence.SeriesInstanceUID = seg_series
    evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID = seg_instance
    with_seg = dataclasses.replace(scope, sibling_uids=frozenset({seg_instance, seg_series}))
    out = reidentify(result, table.original_for, header, with_seg)
    restored = out.ContentSequence[0].ContentSequence[0].ReferencedSOPSequence[0]
    assert restored.ReferencedSOPInstanceUID == seg_instance
    restored_evidence = out.CurrentRequestedProcedureEvidenceSequence[0]
    assert restored_evidence.StudyInstanceUID == ORIGINAL["study"]
    assert restored_evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == seg_series
    with pytest.raises(UnknownReferenceError, match=r"\(0008,1155\)|\(0020,000E\)"):
        reidentify(result, table.original_for, header, scope)
    only_series = dataclasses.replace(scope, sibling_uids=frozenset({seg_series}))
    with pytest.raises(UnknownReferenceError, match=r"\(0008,1155\)"):
        reidentify(result, table.original_for, header, only_series)


def test_reference_to_an_instance_not_received_is_refused() -> None:
    header, _, result, table, scope = _setup()
    table.originals["2.25.77"] = "1.2.3.4.5"  # in the mapping, but no received instance
    result.ContentSequence[0].ContentSequence[0].ReferencedSOPSequence[
        0
    ].ReferencedSOPInstanceUID = "2.25.77"
    with pytest.raises(UnknownReferenceError, match="not received"):
        reidentify(result, table.original_for, header, scope)


def test_other_patients_study_is_refused() -> None:
    header, _, result, table, scope = _setup()
    other = original_header()
    other.PatientID = "PID-OTHER"
    other.StudyInstanceUID = "1.2.840.99999.8.9.1"
    other_image = Pseudonymiser(SECRET, MODIFIED, table.record).pseudonymise(other)
    result.CurrentRequestedProcedureEvidenceSequence[
        0
    ].StudyInstanceUID = other_image.StudyInstanceUID
    with pytest.raises(PatientMixError, match="another study") as info:
        reidentify(result, table.original_for, header, scope)
    assert "PID" not in str(info.value)


def test_other_patients_id_is_refused() -> None:
    header, _, result, table, scope = _setup()
    other = original_header()
    other.PatientID = "PID-OTHER"
    other_image = Pseudonymiser(SECRET, MODIFIED, table.record).pseudonymise(other)
    nested = Dataset()
    nested.PatientID = other_image.PatientID
    result.ContentSequence[0].ReferencedRequestSequence = Sequence([nested])
    with pytest.raises(PatientMixError, match="another patient"):
        reidentify(result, table.original_for, header, scope)


def test_unknown_accession_and_unmappable_dates_are_refused() -> None:
    header, _, result, table, scope = _setup()
    result.AccessionNumber = "AIFIUNKNOWN1"
    with pytest.raises(UnknownReferenceError, match="identifier"):
        reidentify(result, table.original_for, header, scope)
    header, _, result, table, scope = _setup()
    result.AcquisitionDate = "2020"
    with pytest.raises(UnknownReferenceError, match="date"):
        reidentify(result, table.original_for, header, scope)
