"""Keyed pseudonyms: deterministic, key-dependent, valid for their VR."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st
from pydicom.uid import UID

from aifi_app.pseudonymise.keyed_pseudonyms import (
    date_offset_days,
    text_pseudonym,
    uid_pseudonym,
)

BASE32 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def test_uid_pseudonym_is_hmac_of_the_uid() -> None:
    original = "1.2.826.0.1.3680043.8.498.1"
    digest = hmac.new(b"k", original.encode(), hashlib.sha256).digest()
    assert uid_pseudonym(b"k", original) == f"2.25.{int.from_bytes(digest[:16], 'big')}"


@given(st.binary(min_size=1, max_size=32), st.text(min_size=1, max_size=64))
def test_uid_pseudonym_is_a_valid_short_uid(secret: bytes, original: str) -> None:
    pseudonym = uid_pseudonym(secret, original)
    assert UID(pseudonym).is_valid
    assert len(pseudonym) <= 44
    assert pseudonym == uid_pseudonym(secret, original)


def test_pseudonyms_depend_on_the_secret_and_the_kind() -> None:
    assert uid_pseudonym(b"a", "1.2.3") != uid_pseudonym(b"b", "1.2.3")
    assert text_pseudonym(b"a", "patient_id", "X") != text_pseudonym(b"b", "patient_id", "X")
    assert text_pseudonym(b"a", "patient_id", "X") != text_pseudonym(b"a", "accession", "X")[:21]


@given(st.text(max_size=64))
def test_text_pseudonym_shapes(original: str) -> None:
    long = text_pseudonym(b"secret", "patient_id", original, 64)
    assert len(long) == 21 and long.startswith("AIFI-") and set(long[5:]) <= BASE32
    short = text_pseudonym(b"secret", "accession", original, 16)
    assert len(short) == 16 and short.startswith("AIFI") and set(short[4:]) <= BASE32


@given(st.text(max_size=64))
def test_date_offset_is_in_range(patient_id: str) -> None:
    assert 365 <= date_offset_days(b"secret", patient_id) <= 3650
