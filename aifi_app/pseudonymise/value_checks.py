"""Kept text values that cannot be what they claim to be: dropped, never copied.

A malformed data set (a wrong VR or a wrong length in the stream) can make the parser read
an element whose value runs on into its neighbours: a kept Code Value then carries the
next elements' bytes, a patient's name among them (found by the fuzz campaign in
``tests/pseudonymise/test_fuzz_pseudonymiser.py``). Every element header holds NUL or
other control bytes (its tag's group and its length), and no text VR allows them, so a
kept text value with a control byte, or far longer than its VR allows, is dropped.
"""

from __future__ import annotations

from typing import Final

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue

# PS3.5 Table 6.2-1 maximum lengths, in characters
_MAX_CHARS: Final[dict[str, int]] = {
    "AE": 16, "AS": 4, "CS": 16, "DA": 18, "DS": 16, "DT": 54, "IS": 12, "LO": 64,
    "LT": 10240, "PN": 64 * 3 + 2, "SH": 16, "ST": 1024, "TM": 28, "UI": 64,
}  # fmt: skip
_BYTES_PER_CHAR: Final = 4  # the widest character set encoding (UTF-8)
_TEXT_VRS: Final = frozenset({*_MAX_CHARS, "UC", "UR", "UT"})
_MULTI_VALUED: Final = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH",
                                  "TM", "UC", "UI"})  # fmt: skip
_ESC, _TAB, _LF, _FF, _CR = 0x1B, 0x09, 0x0A, 0x0C, 0x0D
_ALLOWED_CONTROLS: Final[dict[str, frozenset[int]]] = {
    vr: frozenset({_ESC, _TAB, _LF, _FF, _CR}) for vr in ("LT", "ST", "UT")
}


def _bad_value(value: bytes, vr: str) -> bool:
    if vr == "UI":
        value = value.rstrip(b"\0")  # UI pads with NUL
    allowed = _ALLOWED_CONTROLS.get(vr, frozenset({_ESC}))
    if any(b < 0x20 and b not in allowed for b in value):
        return True
    limit = _MAX_CHARS.get(vr)
    if limit is None:
        return False
    parts = value.split(b"\\") if vr in _MULTI_VALUED else [value]
    return any(len(part.strip(b" ")) > limit * _BYTES_PER_CHAR for part in parts)


def _wrong_vr(tag: int, vr: str) -> bool:
    """A VR that the data dictionary does not give this (known, public) element."""
    try:
        expected = dictionary_VR(tag)
    except KeyError:
        return False
    return vr not in ("UN", expected) and vr not in expected.split(" or ")


def malformed_text(element: DataElement | RawDataElement, vr: str) -> bool:
    """True when a kept element cannot be what it claims: a VR its tag does not have, or a
    text value that no value of its VR can be (see the module)."""
    if _wrong_vr(int(element.tag), vr):
        return True
    if vr not in _TEXT_VRS:
        return False
    value = element.value
    if value is None:
        return False
    if isinstance(value, bytes):
        return _bad_value(value, vr)
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return any(
        isinstance(v, str) and _bad_value(v.encode("utf-8", "surrogateescape"), vr) for v in values
    )
