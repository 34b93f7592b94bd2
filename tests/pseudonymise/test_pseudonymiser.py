"""Pseudonymiser: planted PHI never reaches the written bytes; keyed, stable, recursive."""

from __future__ import annotations

import copy
import datetime
import io
import logging
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset, config
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from aifi_app.pseudonymise import (
    ProfileOption,
    PseudonymisationError,
    Pseudonymiser,
    element_policy,
)
from aifi_app.pseudonymise.actions import table_rows
from aifi_app.pseudonymise.element_policy import (
    REMOVED_NON_TABLE_KEYWORDS,
    SAFE_NON_TABLE_KEYWORDS,
    WELL_KNOWN_UID_KEYWORDS,
)

Opt = ProfileOption
REPO_ROOT = Path(__file__).resolve().parents[2]
CT_DIR = REPO_ROOT / "../shared/data/ct-lungmask"
SECRET = b"installation-secret-for-tests"

ORIGINAL_UIDS = {
    "study": "1.2.840.99999.7.1.1001",
    "series": "1.2.840.99999.7.1.1002",
    "instance": "1.2.840.99999.7.1.1003",
    "frame_of_reference": "1.2.840.99999.7.1.1004",
    "referenced": "1.2.840.99999.7.1.1005",
    "nested_referenced": "1.2.840.99999.7.1.1006",
}
ORIGINAL_DATES = ("20240229", "20240228", "19610405", "20231231")
TRIAL_SUBJECT = "PHI-TRIAL-SUBJ"

PLANTED_TEXT = {
    "PatientID": "PHI-PID-7734",
    "IssuerOfPatientID": "PHI-ISSUER",
    "OtherPatientIDs": "PHI-OTHER-ID",
    "PatientAddress": "PHI 221B Baker Street",
    "PatientTelephoneNumbers": "PHI-555-0101",
    "AdditionalPatientHistory": "PHI history of something",
    "PatientComments": "PHI patient comment",
    "AccessionNumber": "PHIACC4711",
    "StudyID": "PHISTUDY42",
    "InstitutionName": "PHI St Elsewhere Hospital",
    "InstitutionAddress": "PHI 1 Hospital Road",
    "StationName": "PHISTATION1",
    "DeviceSerialNumber": "PHISERIAL99",
    "StudyDescription": "PHI study description",
    "SeriesDescription": "PHI series description",
    "ImageComments": "PHI image comment free text",
    "ProtocolName": "PHI protocol name",
    "AcquisitionProtocolName": "PHI non-table protocol",
    "ReceiveCoilName": "PHICOILNAME",
    "TextValue": "PHI non-table text value",
    "ClinicalTrialSubjectID": TRIAL_SUBJECT,
}
PLANTED_NAMES = {
    "ReferringPhysicianName": "PHIReferrer^Doctor",
    "PerformingPhysicianName": "PHIPerformer^Doc",
    "OperatorsName": "PHIOperator^Op",
    "EvaluatorName": "PHIEvaluator^NonTable",  # PN not in Table E.1-1
}
NESTED_TEXT = {
    "nested_name": "PHINested^Zebedee",
    "nested_person": "PHINestedPerson^X",
    "nested_private": "PHI nested private",
    "nested_other_id": "PHI-OTHERSEQ-ID",
    "nested_issuer": "PHI-OTHERSEQ-ISSUER",
}
PRIVATE_TEXT = {"creator": "PHIVENDOR", "value": "PHI private value"}
PRIVATE_BYTES = b"PHI-PRIVATE-BYTES!"
OVERLAY_BITS = b"PHIOVERLAYBITS!!" + bytes(16)
OVERLAY_TEXT = ("PHI overlay description", "PHI overlay comments")
CURVE_BYTES = b"PHICURVEDATA"
SOURCE_AE = "PHIMODALITYAE"
PIXELS = b"\x00\x01\x02\x03" * 128  # 16 x 16 x 16 bit

LATIN_NAME = "Müller^Jürgen"
JAPANESE_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"
CHARSETS = [
    pytest.param("ISO_IR 100", LATIN_NAME, id="latin1"),
    pytest.param("ISO_IR 192", LATIN_NAME, id="utf8"),
    pytest.param(["", "ISO 2022 IR 87"], JAPANESE_NAME, id="iso2022-ir87"),
]

BASIC: frozenset[ProfileOption] = frozenset()
MODIFIED_DATES = frozenset({Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES})
CLEANING = frozenset(
    {
        Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES,
        Opt.CLEAN_DESCRIPTORS,
        Opt.CLEAN_STRUCTURED_CONTENT,
        Opt.CLEAN_GRAPHICS,
        Opt.RETAIN_SAFE_PRIVATE,
        Opt.RETAIN_PATIENT_CHARACTERISTICS,
    }
)
OPTION_SETS = [
    pytest.param(BASIC, id="basic"),
    pytest.param(MODIFIED_DATES, id="modified-dates"),
    pytest.param(CLEANING, id="clean-options"),
]
ENCODINGS = ("utf-8", "latin-1", "cp1252", "iso2022_jp", "shift_jis", "euc_jp", "utf-16-le")


# --- building and checking datasets ----------------------------------------------------------


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def planted_dataset(charset: str | list[str] = "ISO_IR 100", name: str = LATIN_NAME) -> Dataset:
    """A small CT instance with PHI planted everywhere the profile must reach."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ORIGINAL_UIDS["instance"]
    ds.StudyInstanceUID = ORIGINAL_UIDS["study"]
    ds.SeriesInstanceUID = ORIGINAL_UIDS["series"]
    ds.FrameOfReferenceUID = ORIGINAL_UIDS["frame_of_reference"]
    ds.StudyDate = "20240229"
    ds.StudyTime = "101112"
    ds.SeriesDate = "20240229"
    ds.ContentDate = "20240228"
    ds.ContentTime = "101530"
    ds.InstanceCreationDate = "20231231"
    ds.AcquisitionDateTime = "20240229101500.5+0100"
    ds.Modality = "CT"
    ds.Manufacturer = "ACME Imaging"
    ds.ConvolutionKernel = "B30f"
    ds.PatientName = name
    ds.PatientBirthDate = "19610405"
    ds.PatientSex = "F"
    ds.PatientAge = "062Y"
    ds.PatientSize = "1.68"
    ds.PatientWeight = "71"
    for keyword, value in {**PLANTED_TEXT, **PLANTED_NAMES}.items():
        setattr(ds, keyword, value)
    ds.OtherPatientIDsSequence = Sequence(
        [
            _item(
                PatientID=NESTED_TEXT["nested_other_id"],
                IssuerOfPatientID=NESTED_TEXT["nested_issuer"],
            )
        ]
    )
    ds.ReferencedImageSequence = Sequence(
        [
            _item(
                ReferencedSOPClassUID=CTImageStorage,
                ReferencedSOPInstanceUID=ORIGINAL_UIDS["referenced"],
            )
        ]
    )
    # A kept (non-table) sequence whose item holds another kept sequence with PHI inside.
    modifier = _item(
        CodeValue="G-A101",
        CodingSchemeDesignator="SRT",
        CodeMeaning="Left",
        PatientName=NESTED_TEXT["nested_name"],
        PersonName=NESTED_TEXT["nested_person"],
        ReferencedSOPClassUID=CTImageStorage,
        ReferencedSOPInstanceUID=ORIGINAL_UIDS["nested_referenced"],
        StudyDate="20240229",
    )
    modifier.add_new(0x00110010, "LO", "PHINESTEDVENDOR")
    modifier.add_new(0x00111001, "LO", NESTED_TEXT["nested_private"])
    ds.AnatomicRegionSequence = Sequence(
        [
            _item(
                CodeValue="T-D3000",
                CodingSchemeDesignator="SRT",
                CodeMeaning="Chest",
                AnatomicRegionModifierSequence=Sequence([modifier]),
            )
        ]
    )
    ds.add_new(0x00090010, "LO", PRIVATE_TEXT["creator"])
    ds.add_new(0x00091001, "LO", PRIVATE_TEXT["value"])
    ds.add_new(0x00091002, "OB", PRIVATE_BYTES)
    repeating_groups: list[tuple[int, str, object]] = [
        (0x60000010, "US", 16),
        (0x60000011, "US", 16),
        (0x60000022, "LO", OVERLAY_TEXT[0]),
        (0x60000040, "CS", "G"),
        (0x60000050, "SS", [1, 1]),
        (0x60000100, "US", 1),
        (0x60000102, "US", 0),
        (0x60003000, "OW", OVERLAY_BITS),
        (0x60004000, "LT", OVERLAY_TEXT[1]),
        (0x50000005, "US", 1),
        (0x50003000, "OB", CURVE_BYTES),
    ]
    for tag, vr, element_value in repeating_groups:
        ds.add_new(tag, vr, element_value)
    ds.Rows = 16
    ds.Columns = 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = PIXELS
    ds["PixelData"].VR = "OW"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(ORIGINAL_UIDS["instance"])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = SOURCE_AE
    return ds


def written(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def reread(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def encoded_forms(text: str) -> set[bytes]:
    """The bytes ``text`` would have in any plausible encoding, ISO 2022 escapes removed too."""
    forms: set[bytes] = set()
    for encoding in ENCODINGS:
        try:
            data = text.encode(encoding)
        except UnicodeEncodeError:
            continue
        forms.add(data)
        if encoding == "iso2022_jp" and b"\x1b" in data:
            for chunk in data.split(b"\x1b"):
                core = chunk[2:] if chunk[:2] in (b"$B", b"(B", b"(J") else chunk
                if len(core) >= 4:
                    forms.add(core)
    return forms


def name_parts(name: str) -> list[str]:
    parts = [name]
    for group in name.split("="):
        parts += [part for part in group.split("^") if len(part.encode()) >= 4]
    return parts


def leaked(data: bytes, strings: Iterable[str], blobs: Iterable[bytes] = ()) -> list[str]:
    found = [text for text in strings if any(form in data for form in encoded_forms(text))]
    found += [repr(blob) for blob in blobs if blob in data]
    return found


def all_planted_strings(name: str) -> list[str]:
    return [
        *name_parts(name),
        *PLANTED_TEXT.values(),
        *(part for value in PLANTED_NAMES.values() for part in name_parts(value)),
        *(part for value in NESTED_TEXT.values() for part in name_parts(value)),
        *PRIVATE_TEXT.values(),
        "PHINESTEDVENDOR",
        *OVERLAY_TEXT,
        SOURCE_AE,
        *ORIGINAL_UIDS.values(),
        *ORIGINAL_DATES,
    ]


def uid_values(ds: Dataset) -> set[str]:
    found: set[str] = set()
    for element in ds.iterall():
        if element.VR == "UI" and element.value:
            values = element.value if isinstance(element.value, list) else [element.value]
            found.update(str(value) for value in values)
    return found


# --- the planted-PHI tests -------------------------------------------------------------------


@pytest.mark.parametrize("options", OPTION_SETS)
@pytest.mark.parametrize(("charset", "name"), CHARSETS)
def test_no_planted_phi_in_written_bytes(
    charset: str | list[str], name: str, options: frozenset[ProfileOption]
) -> None:
    source = planted_dataset(charset, name)
    assert leaked(written(source), all_planted_strings(name)) != []  # the check can see PHI
    data = written(Pseudonymiser(SECRET, options).pseudonymise(source))
    blobs = (PRIVATE_BYTES, OVERLAY_BITS[:16], CURVE_BYTES)
    assert leaked(data, all_planted_strings(name), blobs) == []
    out = reread(data)
    assert out.SpecificCharacterSet == charset
    assert str(out.PatientName).startswith("AIFI-")


def test_implicit_vr_input_read_from_bytes() -> None:
    source = planted_dataset()
    source.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    read = reread(written(source))
    assert read.get_item(0x00100010).VR is None  # still raw, VR unknown until converted
    out = Pseudonymiser(SECRET, MODIFIED_DATES).pseudonymise(read)
    data = written(out)
    blobs = (PRIVATE_BYTES, OVERLAY_BITS[:16], CURVE_BYTES)
    assert leaked(data, all_planted_strings(LATIN_NAME), blobs) == []
    back = reread(data)
    assert back.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert back.PixelData == PIXELS
    assert back.PixelRepresentation == 0 and back.Rows == 16


def test_input_dataset_is_untouched() -> None:
    source = planted_dataset()
    before = copy.deepcopy(source)
    Pseudonymiser(SECRET, CLEANING).pseudonymise(source)
    assert source == before
    assert source.file_meta == before.file_meta


def test_kept_sequences_are_processed_at_every_depth() -> None:
    out = Pseudonymiser(SECRET, BASIC).pseudonymise(planted_dataset())
    region = out.AnatomicRegionSequence[0]
    assert (region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning) == (
        "T-D3000",
        "SRT",
        "Chest",
    )
    modifier = region.AnatomicRegionModifierSequence[0]
    assert modifier.CodeMeaning == "Left"
    assert modifier.PatientName == ""
    assert modifier.PersonName == "ANONYMISED"
    assert modifier.ReferencedSOPClassUID == CTImageStorage
    assert modifier.ReferencedSOPInstanceUID.startswith("2.25.")
    assert modifier.StudyDate == ""
    assert not any(element.tag.is_private for element in modifier)


def test_table_actions_are_applied() -> None:
    out = Pseudonymiser(SECRET, BASIC).pseudonymise(planted_dataset())
    for keyword in (
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "IssuerOfPatientID",
        "PatientAddress",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "InstitutionName",
        "StationName",
        "DeviceSerialNumber",
        "SeriesDate",
        "StudyDescription",
        "SeriesDescription",
        "ImageComments",
        "ReferencedImageSequence",
        "PerformingPhysicianName",
        "OperatorsName",
        "AcquisitionDateTime",
        "InstanceCreationDate",
    ):
        assert keyword not in out, keyword
    for keyword in (
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "ContentDate",
    ):
        assert out[keyword].is_empty, keyword
    assert out.ClinicalTrialSubjectID.startswith("AIFI-")
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


def test_non_table_elements_follow_the_policy() -> None:
    out = Pseudonymiser(SECRET, BASIC).pseudonymise(planted_dataset())
    for keyword in ("AcquisitionProtocolName", "ReceiveCoilName", "TextValue", "EvaluatorName"):
        assert keyword not in out, keyword
    assert out.Manufacturer == "ACME Imaging"
    assert out.ConvolutionKernel == "B30f"
    assert out.Modality == "CT"
    assert out.ImageType == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert (out.Rows, out.Columns, out.BitsStored, out.HighBit) == (16, 16, 12, 11)
    assert out.FrameOfReferenceUID.startswith("2.25.")


def test_encrypted_original_attributes_are_removed() -> None:
    source = planted_dataset()
    encrypted = Dataset()
    encrypted.EncryptedContentTransferSyntaxUID = ExplicitVRLittleEndian
    encrypted.EncryptedContent = b"PHI-ENCRYPTED-ORIGINALS!"
    source.EncryptedAttributesSequence = Sequence([encrypted])
    out = Pseudonymiser(SECRET, frozenset(Opt)).pseudonymise(source)
    assert "EncryptedAttributesSequence" not in out
    assert b"PHI-ENCRYPTED-ORIGINALS!" not in written(out)


def test_private_overlay_and_curve_groups_are_removed_under_every_option() -> None:
    source = planted_dataset()
    for options in (BASIC, frozenset(Opt)):
        out = Pseudonymiser(SECRET, options).pseudonymise(source)
        groups = {element.tag.group for element in out.iterall()}
        assert not any(group & 1 for group in groups)
        assert not any(group & 0xFF00 in (0x5000, 0x6000) for group in groups)


def test_safe_private_attributes_are_kept_only_with_the_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        element_policy, "SAFE_PRIVATE_ATTRIBUTES", frozenset({("PHIVENDOR", 0x0009, 0x01)})
    )
    source = planted_dataset()
    kept = Pseudonymiser(SECRET, frozenset({Opt.RETAIN_SAFE_PRIVATE})).pseudonymise(source)
    # a safe-listed element holding text is still removed: only numbers are ever kept
    assert 0x00091001 not in kept
    assert 0x00091002 not in kept
    source[0x00091001] = DataElement(0x00091001, "DS", "1.5")
    kept = Pseudonymiser(SECRET, frozenset({Opt.RETAIN_SAFE_PRIVATE})).pseudonymise(source)
    assert kept[0x00091001].value == "1.5"
    assert kept[0x00090010].value == PRIVATE_TEXT["creator"]
    assert 0x00091001 not in Pseudonymiser(SECRET, BASIC).pseudonymise(source)


def test_real_safe_private_entries_are_kept_as_numbers_only() -> None:
    source = Dataset()
    source.PatientID = "P"
    source.add(DataElement(0x00190010, "LO", "GEMS_ACQU_01"))
    source.add(DataElement(0x00191023, "DS", "39.375"))  # Table Speed: safe-listed
    source.add(DataElement(0x00191024, "UN", b"PHI free text"))  # safe-listed, not a number
    source.add(DataElement(0x00191025, "DS", "1"))  # not safe-listed
    kept = Pseudonymiser(SECRET, frozenset({Opt.RETAIN_SAFE_PRIVATE})).pseudonymise(source)
    assert kept[0x00190010].value == "GEMS_ACQU_01"
    assert kept[0x00191023].value == "39.375"
    assert 0x00191024 not in kept
    assert 0x00191025 not in kept


def test_well_known_uids_are_kept_and_instance_uids_replaced() -> None:
    source = planted_dataset()
    out = Pseudonymiser(SECRET, BASIC).pseudonymise(source)
    assert out.SOPClassUID == CTImageStorage
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        value = out[keyword].value
        assert value.startswith("2.25.") and len(value) <= 64 and UID(value).is_valid
        assert value != source[keyword].value
    assert not uid_values(out) & set(ORIGINAL_UIDS.values())


def test_retain_uids_keeps_instance_uids() -> None:
    source = planted_dataset()
    out = Pseudonymiser(SECRET, frozenset({Opt.RETAIN_UIDS})).pseudonymise(source)
    assert out.StudyInstanceUID == ORIGINAL_UIDS["study"]
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ORIGINAL_UIDS["referenced"]


def test_uids_are_stable_per_secret_and_differ_between_secrets() -> None:
    source = planted_dataset()
    first = Pseudonymiser(SECRET, BASIC).pseudonymise(source)
    second = Pseudonymiser(SECRET, MODIFIED_DATES).pseudonymise(source)
    other = Pseudonymiser(b"another-installation", BASIC).pseudonymise(source)
    for keyword in (
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
    ):
        assert first[keyword].value == second[keyword].value
        assert first[keyword].value != other[keyword].value
    assert first.PatientID == second.PatientID != other.PatientID


def test_file_meta_is_rebuilt() -> None:
    out = Pseudonymiser(SECRET, BASIC).pseudonymise(planted_dataset())
    meta = out.file_meta
    assert meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == CTImageStorage
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert "SourceApplicationEntityTitle" not in meta


def test_keyed_patient_accession_and_study_id() -> None:
    pseudonymiser = Pseudonymiser(SECRET, BASIC)
    out = pseudonymiser.pseudonymise(planted_dataset())
    pseudonym = pseudonymiser.patient_pseudonym(PLANTED_TEXT["PatientID"])
    assert out.PatientID == pseudonym
    assert str(out.PatientName) == pseudonym + "^"  # one-component name, PS3.5 6.2.1.2
    assert len(pseudonym) == 21 and pseudonym.startswith("AIFI-")
    assert len(out.AccessionNumber) == 16 and out.AccessionNumber.startswith("AIFI")
    assert len(out.StudyID) == 16 and out.StudyID != out.AccessionNumber
    other_patient = planted_dataset()
    other_patient.PatientID = "PHI-PID-0001"
    assert pseudonymiser.pseudonymise(other_patient).PatientID != pseudonym
    again = pseudonymiser.pseudonymise(planted_dataset(["", "ISO 2022 IR 87"], JAPANESE_NAME))
    assert again.PatientID == pseudonym  # the same patient, whatever the name's encoding


def test_empty_identifiers_stay_empty() -> None:
    source = planted_dataset()
    source.AccessionNumber = ""
    source.PatientID = ""
    out = Pseudonymiser(SECRET, BASIC).pseudonymise(source)
    assert out.AccessionNumber == ""
    assert out.PatientID == ""
    assert out.PatientName == ""


def test_on_pseudonym_reports_every_mapping_once() -> None:
    calls: list[tuple[str, str, str]] = []
    pseudonymiser = Pseudonymiser(SECRET, BASIC, lambda *call: calls.append(call))
    out = pseudonymiser.pseudonymise(planted_dataset())
    mapping = {(kind, original): pseudonym for kind, original, pseudonym in calls}
    assert len(mapping) == len(calls)
    assert mapping[("patient_id", PLANTED_TEXT["PatientID"])] == out.PatientID
    assert mapping[("accession", PLANTED_TEXT["AccessionNumber"])] == out.AccessionNumber
    assert mapping[("study_id", PLANTED_TEXT["StudyID"])] == out.StudyID
    assert mapping[("other_id", TRIAL_SUBJECT)] == out.ClinicalTrialSubjectID
    assert mapping[("uid", ORIGINAL_UIDS["study"])] == out.StudyInstanceUID
    assert mapping[("uid", ORIGINAL_UIDS["instance"])] == out.SOPInstanceUID
    assert ("uid", ORIGINAL_UIDS["nested_referenced"]) in mapping
    assert ("uid", CTImageStorage) not in mapping
    assert {kind for kind, _ in mapping} == {
        "uid",
        "patient_id",
        "accession",
        "study_id",
        "other_id",
    }


def test_deidentification_attributes() -> None:
    options = frozenset({Opt.CLEAN_GRAPHICS, Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES})
    out = Pseudonymiser(SECRET, options).pseudonymise(planted_dataset())
    assert out.PatientIdentityRemoved == "YES"
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [
        (item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning)
        for item in out.DeidentificationMethodCodeSequence
    ]
    assert codes == [
        ("113100", "DCM", "Basic Application Confidentiality Profile"),
        ("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"),
        ("113103", "DCM", "Clean Graphics Option"),
    ]
    assert out.DeidentificationMethod[0].startswith("AIFI Appliance")
    assert all(len(value) <= 64 for value in out.DeidentificationMethod)
    full = Pseudonymiser(SECRET, frozenset({Opt.RETAIN_LONGITUDINAL_FULL_DATES}))
    assert full.pseudonymise(planted_dataset()).LongitudinalTemporalInformationModified == (
        "UNMODIFIED"
    )


def _days_between(later: str, earlier: str) -> int:
    parse = datetime.datetime.strptime
    return (parse(later[:8], "%Y%m%d") - parse(earlier[:8], "%Y%m%d")).days


def test_modified_dates_are_shifted_consistently() -> None:
    pseudonymiser = Pseudonymiser(SECRET, MODIFIED_DATES)
    source = planted_dataset()
    out = pseudonymiser.pseudonymise(source)
    offset = pseudonymiser.date_offset_days(PLANTED_TEXT["PatientID"])
    assert 365 <= offset <= 3650
    for keyword in (
        "StudyDate",
        "SeriesDate",
        "ContentDate",
        "InstanceCreationDate",
        "AcquisitionDateTime",
    ):
        assert _days_between(source[keyword].value, out[keyword].value) == offset, keyword
    nested = out.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0]
    assert _days_between("20240229", nested.StudyDate) == offset
    assert out.AcquisitionDateTime.endswith("101500.5+0100")
    assert out.StudyTime == "101112" and out.ContentTime == "101530"
    assert out.PatientBirthDate == ""  # Z in the table whatever the dates option
    other = planted_dataset()
    other.PatientID = "PHI-PID-0002"
    other_offset = pseudonymiser.date_offset_days("PHI-PID-0002")
    assert _days_between("20240229", pseudonymiser.pseudonymise(other).StudyDate) == other_offset


def test_unparsable_dates_are_removed_never_kept() -> None:
    source = planted_dataset()
    source.add(DataElement(0x00080020, "DA", "2024XX01", validation_mode=config.IGNORE))
    source.add(DataElement(0x00080021, "DA", "20240230", validation_mode=config.IGNORE))
    source.add(DataElement(0x0008002A, "DT", "2024", validation_mode=config.IGNORE))
    out = Pseudonymiser(SECRET, MODIFIED_DATES).pseudonymise(source)
    assert "StudyDate" not in out and "SeriesDate" not in out
    assert out.AcquisitionDateTime != "2024" and len(out.AcquisitionDateTime) == 4


def test_patient_characteristics_option_keeps_only_characteristics() -> None:
    options = frozenset({Opt.RETAIN_PATIENT_CHARACTERISTICS})
    out = Pseudonymiser(SECRET, options).pseudonymise(planted_dataset())
    assert (out.PatientSex, out.PatientAge) == ("F", "062Y")
    assert (out.PatientSize, out.PatientWeight) == (1.68, 71)
    assert out.PatientBirthDate == ""


def test_pixel_data_is_shared_not_copied() -> None:
    source = planted_dataset()
    out = Pseudonymiser(SECRET, BASIC).pseudonymise(source)
    assert out.PixelData is source.PixelData
    assert reread(written(out)).PixelData == PIXELS


def test_encapsulated_pixel_data_is_copied_as_is() -> None:
    source = planted_dataset()
    source.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    source.BitsStored = 8
    source.HighBit = 7
    source.BitsAllocated = 8
    frames = encapsulate([b"\xff\xd8" + bytes(range(40)) + b"\xff\xd9"])
    source.add(DataElement(0x7FE00010, "OB", frames, is_undefined_length=True))
    out = Pseudonymiser(SECRET, BASIC).pseudonymise(source)
    assert out.PixelData is frames
    assert out["PixelData"].is_undefined_length
    assert out.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    back = reread(written(out))
    assert back.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert back.PixelData == frames


def test_kept_non_ascii_text_stays_readable_with_the_kept_character_set() -> None:
    source = planted_dataset("ISO_IR 100", LATIN_NAME)
    source.AnatomicRegionSequence[0].CodeMeaning = "Thorax (Brustkorb, Röntgen)"
    back = reread(written(Pseudonymiser(SECRET, BASIC).pseudonymise(source)))
    assert back.SpecificCharacterSet == "ISO_IR 100"
    assert back.AnatomicRegionSequence[0].CodeMeaning == "Thorax (Brustkorb, Röntgen)"


def test_no_phi_in_exceptions_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    def failing(kind: str, original: str, pseudonym: str) -> None:
        raise RuntimeError(f"storage failed for {original}")

    caplog.set_level(logging.DEBUG)
    Pseudonymiser(SECRET, BASIC).pseudonymise(planted_dataset())
    with pytest.raises(PseudonymisationError) as caught:
        Pseudonymiser(SECRET, BASIC, failing).pseudonymise(planted_dataset())
    message = str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    strings = all_planted_strings(LATIN_NAME)
    assert [s for s in strings if s in message] == []
    assert [s for s in strings if s in caplog.text] == []


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        Pseudonymiser(b"", BASIC)


def test_safe_lists_do_not_override_the_table() -> None:
    table_tags = {row.pattern.value for row in table_rows() if not row.pattern.is_wildcard}
    for keyword in SAFE_NON_TABLE_KEYWORDS | WELL_KNOWN_UID_KEYWORDS | REMOVED_NON_TABLE_KEYWORDS:
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        assert tag not in table_tags, keyword
    for keyword in SAFE_NON_TABLE_KEYWORDS:
        assert dictionary_VR(keyword) != "PN", keyword


# --- the two real CT slices ------------------------------------------------------------------

needs_ct = pytest.mark.skipif(not (CT_DIR / "0.dcm").exists(), reason="../shared/data is absent")


@needs_ct
def test_real_ct_slices() -> None:
    sources = [pydicom.dcmread(CT_DIR / f"{index}.dcm") for index in (0, 1)]
    pseudonymiser = Pseudonymiser(SECRET, MODIFIED_DATES)
    outputs = [pseudonymiser.pseudonymise(source) for source in sources]
    data = [written(out) for out in outputs]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        originals = {source.get(keyword) for source in sources}
        pseudonyms = {out.get(keyword) for out in outputs}
        assert len(originals) == len(pseudonyms) == 1
        if originals != {None}:
            assert pseudonyms != originals
    assert outputs[0].SOPInstanceUID != outputs[1].SOPInstanceUID
    original_uids: set[str] = set()
    for source in sources:
        original_uids |= uid_values(source) | uid_values(source.file_meta)
    original_uids -= set(UID_dictionary)
    assert original_uids
    for source, out, blob in zip(sources, outputs, data, strict=True):
        assert [uid for uid in original_uids if uid.encode() in blob] == []
        back = reread(blob)
        assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
        assert back.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
        assert back.PixelData == source.PixelData
        assert np.array_equal(back.pixel_array, source.pixel_array)
        assert back.PatientIdentityRemoved == "YES"
        assert out.PixelData is source.PixelData


def _dciodvfy_errors(path: Path) -> set[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return {line for line in lines if line.startswith("Error")}


@pytest.mark.dicom3tools
@needs_ct
def test_pseudonymisation_adds_no_iod_errors(tmp_path: Path) -> None:
    assert shutil.which("dciodvfy")
    pseudonymiser = Pseudonymiser(SECRET, MODIFIED_DATES)
    for name, source in [
        ("planted", planted_dataset()),
        ("ct0", pydicom.dcmread(CT_DIR / "0.dcm")),
    ]:
        before, after = tmp_path / f"{name}-in.dcm", tmp_path / f"{name}-out.dcm"
        before.write_bytes(written(source))
        after.write_bytes(written(pseudonymiser.pseudonymise(source)))
        assert _dciodvfy_errors(after) <= _dciodvfy_errors(before), name


# --- random datasets ------------------------------------------------------------------------

TEXT_TARGETS = (
    ("PatientName", "PN"),
    ("PatientID", "LO"),
    ("OtherPatientIDs", "LO"),
    ("PatientAddress", "LO"),
    ("InstitutionName", "LO"),
    ("StudyDescription", "LO"),
    ("SeriesDescription", "LO"),
    ("ImageComments", "LT"),
    ("OperatorsName", "PN"),
    ("ReferringPhysicianName", "PN"),
    ("AccessionNumber", "SH"),
    ("StudyID", "SH"),
    ("DeviceSerialNumber", "LO"),
    ("StationName", "SH"),
    ("ProtocolName", "LO"),
    ("AdditionalPatientHistory", "LT"),
    ("ContrastBolusAgent", "LO"),
    ("PersonName", "PN"),
    ("ClinicalTrialSubjectID", "LO"),
    ("AcquisitionProtocolName", "LO"),
    ("ReceiveCoilName", "SH"),
    ("TextValue", "UT"),
    ("EvaluatorName", "PN"),
    ("SecondaryReviewerName", "PN"),
)
DATE_TARGETS = (("StudyDate", "DA"), ("AcquisitionDateTime", "DT"), ("SeriesDate", "DA"))
TEXT_SAFE_OPTIONS = [
    Opt.RETAIN_SAFE_PRIVATE,
    Opt.RETAIN_UIDS,
    Opt.RETAIN_LONGITUDINAL_FULL_DATES,
    Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES,
    Opt.CLEAN_DESCRIPTORS,
    Opt.CLEAN_STRUCTURED_CONTENT,
    Opt.CLEAN_GRAPHICS,
]
MARKER = "Zq"
phi_text = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters="\\^="
    ),
    min_size=3,
    max_size=30,
).map(lambda text: MARKER + text.strip())
date_text = st.text(alphabet="0123456789.-+ :", max_size=26)


def _add(ds: Dataset, keyword: str, vr: str, value: str) -> None:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    ds.add(DataElement(tag, vr, value, validation_mode=config.IGNORE))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    top=st.lists(st.tuples(st.sampled_from(TEXT_TARGETS), phi_text), max_size=8),
    nested=st.lists(st.tuples(st.sampled_from(TEXT_TARGETS), phi_text), max_size=4),
    private_value=phi_text,
    dates=st.lists(st.tuples(st.sampled_from(DATE_TARGETS), date_text), max_size=3),
    options=st.sets(st.sampled_from(TEXT_SAFE_OPTIONS)),
)
def test_random_text_never_crashes_and_never_leaks(
    top: list[tuple[tuple[str, str], str]],
    nested: list[tuple[tuple[str, str], str]],
    private_value: str,
    dates: list[tuple[tuple[str, str], str]],
    options: set[ProfileOption],
) -> None:
    assert not {keyword for keyword, _ in TEXT_TARGETS} & SAFE_NON_TABLE_KEYWORDS
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ORIGINAL_UIDS["instance"]
    for (keyword, vr), value in top:
        _add(ds, keyword, vr, value)
    for (keyword, vr), value in dates:
        _add(ds, keyword, vr, value)
    item = Dataset()
    item.CodeValue = "T-D3000"
    for (keyword, vr), value in nested:
        _add(item, keyword, vr, value)
    item.add(DataElement(0x00110010, "LO", "ZqVendor", validation_mode=config.IGNORE))
    item.add(DataElement(0x00111001, "LO", private_value, validation_mode=config.IGNORE))
    ds.AnatomicRegionSequence = Sequence([_item(AnatomicRegionModifierSequence=Sequence([item]))])
    ds.add(DataElement(0x00091001, "UT", private_value, validation_mode=config.IGNORE))

    out = Pseudonymiser(SECRET, frozenset(options)).pseudonymise(ds)
    data = written(out)
    assert MARKER.encode() not in data
    for _, value in [*top, *nested]:
        assert value.encode("utf-8") not in data
    reread(data)
    for (keyword, _), value in dates:
        if keyword in out and value.strip() and Opt.RETAIN_LONGITUDINAL_FULL_DATES not in options:
            assert out[keyword].value != value
