"""Dummy values for the D action: valid for their VR, the same for every instance, no PHI.

PS3.15 E.1.1 D: "replace with a non-zero length value that may be a dummy value and
consistent with the VR". The values here are fixed constants, so they carry no information;
identifiers that must stay distinguishable get keyed pseudonyms instead (see the
pseudonymiser).
"""

from __future__ import annotations

from typing import Final

DUMMY_TEXT: Final = "ANONYMISED"

DUMMY_BY_VR: Final[dict[str, object]] = {
    "AE": DUMMY_TEXT,
    "AS": "000D",
    "CS": DUMMY_TEXT,
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "LO": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "PN": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "ST": DUMMY_TEXT,
    "UC": DUMMY_TEXT,
    "UT": DUMMY_TEXT,
    "UR": "urn:x-aifi:anonymised",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
    "AT": 0,
    "OB": b"\0" * 8,
    "OW": b"\0" * 8,
    "OF": b"\0" * 8,
    "OD": b"\0" * 8,
    "OL": b"\0" * 8,
    "OV": b"\0" * 8,
    "UN": b"\0" * 8,
}

MAX_LENGTH_BY_VR: Final[dict[str, int]] = {
    "AE": 16,
    "CS": 16,
    "SH": 16,
    "LO": 64,
    "UC": 64,
    "LT": 64,
    "ST": 64,
    "UT": 64,
}
"""Length available to a keyed text pseudonym in each VR (capped at the LO length)."""


def dummy_value(vr: str) -> object | None:
    """Return the dummy value for ``vr``; None (written as zero length) for an unknown VR."""
    return DUMMY_BY_VR.get(vr)
