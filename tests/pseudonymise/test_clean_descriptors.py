"""Clean Descriptors: only safe-vocabulary words survive, in any encoding of the input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import Dataset

from aifi_app.pseudonymise import ProfileOption, Pseudonymiser
from aifi_app.pseudonymise.clean_descriptors import SAFE_WORDS, clean_descriptor, clean_value


@pytest.mark.parametrize(
    ("text", "vr", "expected"),
    [
        ("CT CHEST W/O CONTRAST 5mm", "LO", "CT CHEST W/O CONTRAST 5mm"),
        ("Thorax^Routine (Adult) for Smith John", "LO", "Thorax Routine"),
        ("Pre/Post Jones/Smith", "LO", "Pre Post"),
        ("AX T2 FLAIR Müller", "SH", "AX T2 FLAIR"),
        ("PID 12345678 born 19610405", "LO", ""),
        ("山田 太郎 head", "LT", "head"),
        ("", "ST", ""),
        ("left knee left knee left knee left knee", "SH", "left knee left"),
    ],
)
def test_clean_descriptor(text: str, vr: str, expected: str) -> None:
    assert clean_descriptor(text, vr) == expected


def test_multi_values_are_cleaned_one_by_one() -> None:
    assert clean_value(["HEAD Smith", "Jones"], "LO") == ["HEAD", ""]
    assert clean_value(b"bytes", "LO") == ""


@given(st.text(max_size=200))
def test_output_is_ascii_and_made_of_safe_tokens(text: str) -> None:
    cleaned = clean_descriptor(text, "LT")
    assert cleaned.isascii()
    for token in cleaned.split():
        assert token.lower() in SAFE_WORDS or token[0].isdigit()


def test_pseudonymiser_cleans_descriptors_only_with_the_option() -> None:
    ds = Dataset()
    ds.PatientID = "P1"
    ds.SeriesDescription = "CT HEAD Dr Jekyll"
    ds.StudyDescription = "Brain for Hyde"
    plain = Pseudonymiser(b"k", frozenset()).pseudonymise(ds)
    assert "SeriesDescription" not in plain
    cleaned = Pseudonymiser(b"k", frozenset({ProfileOption.CLEAN_DESCRIPTORS})).pseudonymise(ds)
    assert cleaned.SeriesDescription == "CT HEAD"
    assert cleaned.StudyDescription == "Brain"
