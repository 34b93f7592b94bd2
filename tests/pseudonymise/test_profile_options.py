"""Profile options: CID 7050 codes checked against pydicom's code dictionary."""

from __future__ import annotations

import pytest
from pydicom.sr.codedict import codes

from aifi_app.pseudonymise import annex_e_table
from aifi_app.pseudonymise.profile_options import (
    BASIC_PROFILE,
    ProfileOption,
    sorted_options,
)

EXPECTED_CODES = {
    ProfileOption.RETAIN_SAFE_PRIVATE: "113111",
    ProfileOption.RETAIN_UIDS: "113110",
    ProfileOption.RETAIN_DEVICE_IDENTITY: "113109",
    ProfileOption.RETAIN_INSTITUTION_IDENTITY: "113112",
    ProfileOption.RETAIN_PATIENT_CHARACTERISTICS: "113108",
    ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES: "113106",
    ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES: "113107",
    ProfileOption.CLEAN_DESCRIPTORS: "113105",
    ProfileOption.CLEAN_STRUCTURED_CONTENT: "113104",
    ProfileOption.CLEAN_GRAPHICS: "113103",
}


def _pydicom_meaning(value: str) -> str:
    for name in dir(codes.DCM):
        if name.startswith("_"):
            continue
        code = getattr(codes.DCM, name)
        if getattr(code, "value", None) == value and getattr(code, "scheme_designator", "") in (
            "DCM",
        ):
            return str(code.meaning)
    raise AssertionError(f"code {value} not in pydicom's DCM dictionary")


@pytest.mark.parametrize("option", list(ProfileOption))
def test_option_code_matches_cid_7050(option: ProfileOption) -> None:
    assert option.code.value == EXPECTED_CODES[option]
    assert option.code.meaning == _pydicom_meaning(option.code.value)
    assert len(option.code.meaning) <= 64  # fits LO in De-identification Method


def test_basic_profile_code() -> None:
    assert BASIC_PROFILE.value == "113100"
    assert BASIC_PROFILE.meaning == _pydicom_meaning("113100")


def test_every_table_column_has_one_option() -> None:
    assert [option.column for option in ProfileOption] == list(annex_e_table.OPTION_COLUMNS)
    for column in annex_e_table.OPTION_COLUMNS:
        assert ProfileOption.from_column(column).column == column
    with pytest.raises(KeyError):
        ProfileOption.from_column("noSuchOpt")


def test_sorted_options_is_declaration_order() -> None:
    chosen = frozenset({ProfileOption.CLEAN_GRAPHICS, ProfileOption.RETAIN_UIDS})
    assert sorted_options(chosen) == [ProfileOption.RETAIN_UIDS, ProfileOption.CLEAN_GRAPHICS]
