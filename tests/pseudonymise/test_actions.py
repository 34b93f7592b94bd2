"""Resolution of Table E.1-1 codes: options, conflicts, wildcards, combined codes, IOD types."""

from __future__ import annotations

import itertools

import pytest
from pydicom import uid
from pydicom.datadict import tag_for_keyword

from aifi_app.pseudonymise.actions import (
    Action,
    ActionTable,
    TablePatternError,
    TagPattern,
    effective_code,
    resolve_action,
    resolve_combined,
    table_rows,
)
from aifi_app.pseudonymise.profile_options import ProfileOption as O

NONE: frozenset[O] = frozenset()
CT = uid.CTImageStorage
SR = uid.ComprehensiveSRStorage


def tag(keyword: str) -> int:
    value = tag_for_keyword(keyword)
    assert value is not None
    return value


@pytest.mark.parametrize(
    ("text", "value", "mask"),
    [
        ("(0008,0050)", 0x00080050, 0xFFFFFFFF),
        ("(50XX,XXXX)", 0x50000000, 0xFF000000),
        ("(60xx,3000)", 0x60003000, 0xFF00FFFF),
        ("(60XX,4000)", 0x60004000, 0xFF00FFFF),
    ],
)
def test_tag_pattern_parse(text: str, value: int, mask: int) -> None:
    pattern = TagPattern.parse(text)
    assert (pattern.value, pattern.mask, pattern.private) == (value, mask, False)


@pytest.mark.parametrize("text", ["0008,0050", "(0008,005G)", "(0008,0050", "(GGGG,EEEE)"])
def test_tag_pattern_rejects_garbage(text: str) -> None:
    with pytest.raises(TablePatternError):
        TagPattern.parse(text)


def test_wildcard_patterns_match_every_repeating_group() -> None:
    overlay = TagPattern.parse("(60XX,3000)")
    assert all(overlay.matches(0x60003000 | (g << 16)) for g in range(0, 0x20, 2))
    assert not overlay.matches(0x60003001)
    assert not overlay.matches(0x61003000)
    curve = TagPattern.parse("(50XX,XXXX)")
    assert curve.matches(0x50000005) and curve.matches(0x501E3000)
    assert not curve.matches(0x51000000)
    private = TagPattern.parse("(GGGG,EEEE) WHERE GGGG IS ODD")
    assert private.private and private.matches(0x00091001) and not private.matches(0x00081001)


@pytest.mark.parametrize("group", [0x5000, 0x5002, 0x501E])
def test_curves_are_removed(group: int) -> None:
    assert resolve_action((group << 16) | 0x3000, NONE) is Action.REMOVE
    assert resolve_action((group << 16) | 0x0005, frozenset({O.CLEAN_GRAPHICS})) is Action.REMOVE


@pytest.mark.parametrize("group", [0x6000, 0x6002, 0x601E])
def test_overlay_data_and_comments_are_removed(group: int) -> None:
    for element in (0x3000, 0x4000):
        assert resolve_action((group << 16) | element, NONE) is Action.REMOVE
        assert resolve_action((group << 16) | element, frozenset(O)) is Action.REMOVE


def test_private_and_unlisted_tags_are_left_to_the_caller() -> None:
    assert resolve_action(0x00091001, NONE) is None
    assert resolve_action(tag("Rows"), NONE) is None


@pytest.mark.parametrize(
    ("code", "attribute_type", "expected"),
    [
        ("X/Z", 3, Action.REMOVE),
        ("X/Z", 2, Action.EMPTY),
        ("X/Z", 1, Action.EMPTY),
        ("X/D", 3, Action.REMOVE),
        ("X/D", 2, Action.DUMMY),
        ("X/D", 1, Action.DUMMY),
        ("Z/D", 3, Action.EMPTY),
        ("Z/D", 2, Action.EMPTY),
        ("Z/D", 1, Action.DUMMY),
        ("X/Z/D", 3, Action.REMOVE),
        ("X/Z/D", 2, Action.EMPTY),
        ("X/Z/D", 1, Action.DUMMY),
        ("X/Z/U*", 3, Action.REMOVE),
        ("X/Z/U*", 2, Action.EMPTY),
        ("X/Z/U*", 1, Action.REPLACE_UID),
        ("K", 1, Action.KEEP),
        ("U", 3, Action.REPLACE_UID),
        ("C", 3, Action.SHIFT_DATE),
    ],
)
def test_resolve_combined(code: str, attribute_type: int, expected: Action) -> None:
    assert resolve_combined(code, attribute_type) is expected


@pytest.mark.parametrize(
    ("keyword", "options", "sop_class", "expected"),
    [
        # Basic profile, single codes.
        ("PatientName", NONE, CT, Action.EMPTY),
        ("PatientBirthDate", NONE, CT, Action.EMPTY),
        ("OtherPatientIDs", NONE, CT, Action.REMOVE),
        ("StudyInstanceUID", NONE, CT, Action.REPLACE_UID),
        ("StudyDate", NONE, CT, Action.EMPTY),
        # Options override the basic profile.
        ("StudyInstanceUID", frozenset({O.RETAIN_UIDS}), CT, Action.KEEP),
        ("PatientSex", frozenset({O.RETAIN_PATIENT_CHARACTERISTICS}), CT, Action.KEEP),
        ("PatientAge", frozenset({O.RETAIN_PATIENT_CHARACTERISTICS}), CT, Action.KEEP),
        ("PatientWeight", frozenset({O.RETAIN_PATIENT_CHARACTERISTICS}), CT, Action.KEEP),
        ("PatientBirthDate", frozenset({O.RETAIN_PATIENT_CHARACTERISTICS}), CT, Action.EMPTY),
        ("InstitutionName", frozenset({O.RETAIN_INSTITUTION_IDENTITY}), CT, Action.KEEP),
        ("DeviceSerialNumber", frozenset({O.RETAIN_DEVICE_IDENTITY}), CT, Action.KEEP),
        ("StudyDate", frozenset({O.RETAIN_LONGITUDINAL_FULL_DATES}), CT, Action.KEEP),
        ("StudyDate", frozenset({O.RETAIN_LONGITUDINAL_MODIFIED_DATES}), CT, Action.SHIFT_DATE),
        ("StudyTime", frozenset({O.RETAIN_LONGITUDINAL_MODIFIED_DATES}), CT, Action.KEEP),
        (
            "AcquisitionDateTime",
            frozenset({O.RETAIN_LONGITUDINAL_MODIFIED_DATES}),
            CT,
            Action.SHIFT_DATE,
        ),
        # Timezone offset: a Modified Dates C on a non-date falls back to the basic profile.
        (
            "TimezoneOffsetFromUTC",
            frozenset({O.RETAIN_LONGITUDINAL_MODIFIED_DATES}),
            CT,
            Action.REMOVE,
        ),
        # Conflicts: the more protective code (C) wins over K.
        (
            "StudyDate",
            frozenset({O.RETAIN_LONGITUDINAL_FULL_DATES, O.RETAIN_LONGITUDINAL_MODIFIED_DATES}),
            CT,
            Action.SHIFT_DATE,
        ),
        (
            "DateOfLastDetectorCalibration",
            frozenset({O.RETAIN_DEVICE_IDENTITY, O.RETAIN_LONGITUDINAL_MODIFIED_DATES}),
            CT,
            Action.SHIFT_DATE,
        ),
        # Clean Descriptors cleans free text; other cleaning falls back to the basic profile.
        ("SeriesDescription", frozenset({O.CLEAN_DESCRIPTORS}), CT, Action.CLEAN_TEXT),
        ("StudyDescription", frozenset({O.CLEAN_DESCRIPTORS}), CT, Action.CLEAN_TEXT),
        ("ContrastBolusAgent", frozenset({O.CLEAN_DESCRIPTORS}), CT, Action.CLEAN_TEXT),
        ("SeriesDescription", frozenset(), CT, Action.REMOVE),
        (
            "Allergies",
            frozenset({O.RETAIN_PATIENT_CHARACTERISTICS, O.CLEAN_DESCRIPTORS}),
            CT,
            Action.CLEAN_TEXT,
        ),
        (
            "ReasonForTheAttributeModification",
            frozenset({O.CLEAN_DESCRIPTORS}),
            CT,
            Action.DUMMY,
        ),
        ("ContentSequence", frozenset({O.CLEAN_STRUCTURED_CONTENT}), SR, Action.DUMMY),
        ("GraphicAnnotationSequence", frozenset({O.CLEAN_GRAPHICS}), CT, Action.DUMMY),
        ("StationAETitle", frozenset({O.RETAIN_DEVICE_IDENTITY}), CT, Action.REMOVE),
        # Combined codes resolved with the IOD's type.
        ("ContentDate", NONE, CT, Action.EMPTY),
        ("ContentDate", NONE, SR, Action.DUMMY),
        ("AcquisitionDateTime", NONE, CT, Action.REMOVE),
        ("AcquisitionDateTime", NONE, uid.EnhancedCTImageStorage, Action.DUMMY),
        ("AcquisitionDate", NONE, CT, Action.REMOVE),
        ("SeriesDate", NONE, CT, Action.REMOVE),
        ("OperatorsName", NONE, CT, Action.REMOVE),
        ("InstitutionName", NONE, CT, Action.REMOVE),
        ("ProtocolName", NONE, CT, Action.REMOVE),
        ("ContrastBolusAgent", NONE, CT, Action.EMPTY),
        (
            "AcquisitionContextSequence",
            NONE,
            uid.DigitalXRayImageStorageForPresentation,
            Action.EMPTY,
        ),
        ("DeviceSerialNumber", NONE, CT, Action.REMOVE),
        ("DeviceSerialNumber", NONE, uid.SegmentationStorage, Action.DUMMY),
        ("ReferencedImageSequence", NONE, CT, Action.REMOVE),
        (
            "ReferencedImageSequence",
            NONE,
            uid.GrayscaleSoftcopyPresentationStateStorage,
            Action.REPLACE_UID,
        ),
        ("ReferencedImageSequence", frozenset({O.RETAIN_UIDS}), CT, Action.KEEP),
        ("SourceImageSequence", NONE, uid.SegmentationStorage, Action.REPLACE_UID),
        ("PatientID", NONE, CT, Action.EMPTY),
    ],
)
def test_resolve_action(
    keyword: str, options: frozenset[O], sop_class: str, expected: Action
) -> None:
    assert resolve_action(tag(keyword), options, sop_class) is expected


def test_effective_code_prefers_options_over_basic() -> None:
    study_date = next(row for row in table_rows() if row.name == "Study Date")
    assert effective_code(study_date, []) == "Z"
    assert effective_code(study_date, [O.RETAIN_LONGITUDINAL_FULL_DATES]) == "K"
    assert effective_code(study_date, [O.RETAIN_LONGITUDINAL_MODIFIED_DATES]) == "C"
    assert effective_code(study_date, [O.RETAIN_UIDS]) == "Z"


def test_every_row_resolves_for_every_option_combination_of_size_two() -> None:
    combos = [frozenset(c) for n in (0, 1, 2) for c in itertools.combinations(list(O), n)]
    combos.append(frozenset(O))
    for options in combos:
        table = ActionTable(options)
        for sop_class in (None, CT, SR, uid.SegmentationStorage, uid.EnhancedMRImageStorage):
            lookup = table.for_sop_class(sop_class)
            assert all(isinstance(action, Action) for action in lookup.values())
            assert len(lookup) == 617  # 621 rows less 3 wildcards and the private row


def test_no_table_code_keeps_identifying_names_under_any_option() -> None:
    names = ("PatientName", "ReferringPhysicianName", "OperatorsName", "PerformingPhysicianName")
    for name in names:
        assert resolve_action(tag(name), frozenset(O), CT) is not Action.KEEP
