"""Re-identification round trip: a result built on pseudonymised images goes back to the PACS."""

from __future__ import annotations

import copy
import io

import pydicom
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ComprehensiveSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from aifi_app.pseudonymise import (
    ProfileOption,
    Pseudonymiser,
    ReidentificationError,
    reidentify,
)

SECRET = b"reidentification-test-secret"
ORIGINAL = {
    "study": "1.2.840.99999.8.1.2001",
    "series": "1.2.840.99999.8.1.2002",
    "instance": "1.2.840.99999.8.1.2003",
    "frame_of_reference": "1.2.840.99999.8.1.2004",
}
LATIN_NAME = "Müller^Jürgen"
JAPANESE_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"


def original_header(charset: str | list[str] = "ISO_IR 100", name: str = LATIN_NAME) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ORIGINAL["instance"]
    ds.StudyInstanceUID = ORIGINAL["study"]
    ds.SeriesInstanceUID = ORIGINAL["series"]
    ds.FrameOfReferenceUID = ORIGINAL["frame_of_reference"]
    ds.PatientName = name
    ds.PatientID = "PID-4711"
    ds.IssuerOfPatientID = "HOSPITAL-A"
    ds.PatientBirthDate = "19610405"
    ds.PatientSex = "F"
    ds.PatientAge = "062Y"
    ds.OtherPatientIDs = "OTHER-1"
    ds.StudyDate = "20240229"
    ds.StudyTime = "101112"
    ds.AccessionNumber = "ACC4711"
    ds.StudyID = "S42"
    ds.ReferringPhysicianName = "Referrer^Doctor"
    ds.StudyDescription = "CT Thorax"
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "RIS-A"
    ds.IssuerOfAccessionNumberSequence = Sequence([issuer])
    ds.Modality = "CT"
    return ds


class MappingTable:
    """What the caller keeps from ``on_pseudonym``: pseudonym -> original, per kind."""

    def __init__(self) -> None:
        self.uids: dict[str, str] = {}

    def record(self, kind: str, original: str, pseudonym: str) -> None:
        if kind == "uid":
            self.uids[pseudonym] = original

    def original_for(self, uid: str) -> str | None:
        return self.uids.get(uid)


def result_in_pseudonymised_space(image: Dataset) -> Dataset:
    """An SR-like result an algorithm builds from a pseudonymised image."""
    sr = Dataset()
    sr.SpecificCharacterSet = image.get("SpecificCharacterSet", "ISO_IR 100")
    sr.SOPClassUID = ComprehensiveSRStorage
    sr.SOPInstanceUID = generate_uid()
    sr.SeriesInstanceUID = generate_uid()
    sr.StudyInstanceUID = image.StudyInstanceUID
    sr.FrameOfReferenceUID = image.FrameOfReferenceUID
    sr.Modality = "SR"
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
    ):
        if keyword in image:
            sr[keyword] = copy.deepcopy(image[keyword])
    referenced_sop = Dataset()
    referenced_sop.ReferencedSOPClassUID = image.SOPClassUID
    referenced_sop.ReferencedSOPInstanceUID = image.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = image.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence([referenced_sop])
    evidence = Dataset()
    evidence.StudyInstanceUID = image.StudyInstanceUID
    evidence.ReferencedSeriesSequence = Sequence([series])
    sr.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    image_item = Dataset()
    image_item.ValueType = "IMAGE"
    image_item.ReferencedSOPSequence = Sequence([copy.deepcopy(referenced_sop)])
    container = Dataset()
    container.ValueType = "CONTAINER"
    container.ContentSequence = Sequence([image_item])
    sr.ContentSequence = Sequence([container])
    sr.file_meta = FileMetaDataset()
    sr.file_meta.MediaStorageSOPClassUID = ComprehensiveSRStorage
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return sr


def round_trip(
    header: Dataset, options: frozenset[ProfileOption] = frozenset()
) -> tuple[Dataset, Dataset, MappingTable]:
    table = MappingTable()
    image = Pseudonymiser(SECRET, options, table.record).pseudonymise(header)
    return image, result_in_pseudonymised_space(image), table


def written_and_read(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_round_trip_restores_every_original() -> None:
    header = original_header()
    _, result, table = round_trip(header)
    assert result.StudyInstanceUID != ORIGINAL["study"]
    own = (result.SOPInstanceUID, result.SeriesInstanceUID)
    before = copy.deepcopy(result)

    out = reidentify(result, table.original_for, header)

    assert result == before  # input untouched
    assert out.StudyInstanceUID == ORIGINAL["study"]
    assert out.FrameOfReferenceUID == ORIGINAL["frame_of_reference"]
    evidence = out.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == ORIGINAL["study"]
    series = evidence.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == ORIGINAL["series"]
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ORIGINAL["instance"]
    assert series.ReferencedSOPSequence[0].ReferencedSOPClassUID == CTImageStorage
    image_item = out.ContentSequence[0].ContentSequence[0]
    assert image_item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ORIGINAL["instance"]
    assert (out.SOPInstanceUID, out.SeriesInstanceUID) == own
    assert out.SOPClassUID == ComprehensiveSRStorage
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    for keyword in (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "PatientAge",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        "StudyDescription",
        "IssuerOfAccessionNumberSequence",
    ):
        assert out[keyword].value == header[keyword].value, keyword
    for keyword in (
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
    ):
        assert keyword not in out, keyword
    back = written_and_read(out)
    assert back.PatientName == LATIN_NAME
    assert back.SpecificCharacterSet == "ISO_IR 100"


def test_round_trip_with_modified_dates_restores_study_date() -> None:
    header = original_header()
    _, result, table = round_trip(
        header, frozenset({ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES})
    )
    assert result.StudyDate != header.StudyDate
    out = reidentify(result, table.original_for, header)
    assert (out.StudyDate, out.StudyTime) == (header.StudyDate, header.StudyTime)


def test_missing_originals_are_empty_for_type_2_and_absent_otherwise() -> None:
    header = original_header()
    for keyword in ("PatientBirthDate", "StudyDescription", "IssuerOfPatientID"):
        del header[keyword]
    _, result, table = round_trip(header)
    result.StudyDescription = "pseudonymised description"
    out = reidentify(result, table.original_for, header)
    assert out.PatientBirthDate == ""
    assert "StudyDescription" not in out
    assert "IssuerOfPatientID" not in out


def test_character_set_is_copied_when_the_result_has_none() -> None:
    header = original_header(["", "ISO 2022 IR 87"], JAPANESE_NAME)
    _, result, table = round_trip(header)
    del result.SpecificCharacterSet
    out = reidentify(result, table.original_for, header)
    assert out.SpecificCharacterSet == ["", "ISO 2022 IR 87"]
    assert written_and_read(out).PatientName == JAPANESE_NAME


def test_character_set_becomes_utf8_when_the_result_has_its_own_non_ascii_text() -> None:
    header = original_header(["", "ISO 2022 IR 87"], JAPANESE_NAME)
    _, result, table = round_trip(header)
    result.SpecificCharacterSet = "ISO_IR 100"
    result.SeriesDescription = "Lungenknötchen"
    out = reidentify(result, table.original_for, header)
    assert out.SpecificCharacterSet == "ISO_IR 192"
    back = written_and_read(out)
    assert back.PatientName == JAPANESE_NAME
    assert back.SeriesDescription == "Lungenknötchen"


def test_utf8_result_stays_utf8() -> None:
    header = original_header("ISO_IR 100", LATIN_NAME)
    _, result, table = round_trip(header)
    result.SpecificCharacterSet = "ISO_IR 192"
    out = reidentify(result, table.original_for, header)
    assert out.SpecificCharacterSet == "ISO_IR 192"
    assert written_and_read(out).PatientName == LATIN_NAME


def test_ascii_identity_leaves_the_character_set_alone() -> None:
    header = original_header("ISO_IR 100", "Smith^John")
    _, result, table = round_trip(header)
    result.SpecificCharacterSet = "ISO_IR 192"
    assert reidentify(result, table.original_for, header).SpecificCharacterSet == "ISO_IR 192"


def test_errors_name_no_values() -> None:
    header = original_header()
    _, result, _ = round_trip(header)

    def broken(uid: str) -> str | None:
        raise KeyError(f"no mapping for {uid} of {LATIN_NAME}")

    with pytest.raises(ReidentificationError) as caught:
        reidentify(result, broken, header)
    assert "1.2" not in str(caught.value) and "Müller" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
