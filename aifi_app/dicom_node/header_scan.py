"""The few header values the node checks, read from a data set's first bytes in memory.

Why not pydicom here: reading them with ``dcmread`` from the instance's file (file meta,
every element up to the pixel data, the values converted and validated) cost about
0.7 ms an instance, a fifth of the receiving thread's time on a CT. The data set's
beginning is already in memory when the last fragment arrives, so :func:`scan_header`
walks its top-level elements there.

It answers only for the plain, common case and returns None for anything else, so that
the caller reads the file with pydicom as before and refuses what pydicom refuses: a
little-endian transfer syntax (implicit or explicit VR; not big endian, not deflated);
every element up to the pixel data (or the data set's end) inside the bytes given, in
ascending tag order, with a defined length and, in explicit VR, a VR that pydicom knows
(no sequences or items of undefined length, nothing in groups 0000-0007 or FFFE); the
values it returns printable ASCII without backslashes, at most one padding byte, within
their VR's length limit (UIDs also valid UIDs, Modality a valid code string)
and the Specific Character Set absent or one whose ASCII is ASCII. Then the values are
what pydicom's ``dcmread(..., stop_before_pixels=True)`` gives (property-tested against
it on generated and malformed data sets, ``tests/dicom_node/test_header_scan.py``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
_DEFLATED: Final = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"})

HEAD_BYTES: Final = 64 * 1024
"""How much of a data set's beginning the acceptor keeps in memory for the scan."""

_SPECIFIC_CHARACTER_SET: Final = 0x00080005
_SOP_CLASS_UID: Final = 0x00080016
_SOP_INSTANCE_UID: Final = 0x00080018
_MODALITY: Final = 0x00080060
_STUDY_DESCRIPTION: Final = 0x00081030
_STUDY_INSTANCE_UID: Final = 0x0020000D
_SERIES_INSTANCE_UID: Final = 0x0020000E
_WANTED: Final = frozenset(
    {
        _SPECIFIC_CHARACTER_SET,
        _SOP_CLASS_UID,
        _SOP_INSTANCE_UID,
        _MODALITY,
        _STUDY_DESCRIPTION,
        _STUDY_INSTANCE_UID,
        _SERIES_INSTANCE_UID,
    }
)
_PIXEL_DATA: Final = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""Where pydicom's ``stop_before_pixels`` stops."""

_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_VRS: Final = frozenset(
    {
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO",
        b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    }
)  # fmt: skip
_EXPECTED_VR: Final = {
    _SPECIFIC_CHARACTER_SET: b"CS",
    _SOP_CLASS_UID: b"UI",
    _SOP_INSTANCE_UID: b"UI",
    _MODALITY: b"CS",
    _STUDY_DESCRIPTION: b"LO",
    _STUDY_INSTANCE_UID: b"UI",
    _SERIES_INSTANCE_UID: b"UI",
}
_ASCII_CHARACTER_SETS: Final = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"})
_UID: Final = re.compile(rb"(?=.{1,64}$)(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
"""A valid UID (pydicom's check): numbers without leading zeros, separated by dots."""
_CODE_STRING: Final = re.compile(rb"[A-Z0-9_ ]{0,16}")
_PRINTABLE: Final = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")
"""Printable ASCII without the backslash (pydicom's value delimiter)."""
_UNDEFINED: Final = 0xFFFFFFFF

_explicit_short = struct.Struct("<HH2sH").unpack_from
_explicit_long_length = struct.Struct("<L").unpack_from
_implicit = struct.Struct("<HHL").unpack_from


@dataclass(frozen=True)
class Header:
    """What :meth:`StorageNode.accept_file` needs; None: the element is absent."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    modality: str | None
    study_description: str | None


def scan_header(head: bytes | bytearray, transfer_syntax: str, complete: bool) -> Header | None:
    """The header values from a data set's first bytes, or None: read it with pydicom.

    ``complete``: ``head`` is the whole data set (else only its beginning).
    """
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        explicit = False
    elif transfer_syntax == _BIG_ENDIAN or transfer_syntax in _DEFLATED:
        return None
    elif transfer_syntax.startswith("1.2.840.10008.1.2."):
        explicit = True  # explicit VR little endian, and every encapsulated syntax
    else:
        return None
    raw = _scan(head, explicit, complete)
    if raw is None:
        return None
    values: dict[int, str] = {}
    for tag, value in raw.items():
        text = _value(tag, value)
        if text is None:
            return None
        values[tag] = text
    if values.get(_SPECIFIC_CHARACTER_SET, "") not in _ASCII_CHARACTER_SETS:
        return None
    return Header(
        sop_class_uid=values.get(_SOP_CLASS_UID),
        sop_instance_uid=values.get(_SOP_INSTANCE_UID),
        study_instance_uid=values.get(_STUDY_INSTANCE_UID),
        series_instance_uid=values.get(_SERIES_INSTANCE_UID),
        modality=values.get(_MODALITY),
        study_description=values.get(_STUDY_DESCRIPTION),
    )


def _scan(head: bytes | bytearray, explicit: bool, complete: bool) -> dict[int, bytes] | None:
    """The wanted elements' raw values, walking every top-level element to the pixel data."""
    end = len(head)
    if not explicit and end >= 6 and 0x40 < head[4] < 0x5B and 0x40 < head[5] < 0x5B:
        return None  # pydicom would take it for explicit VR
    offset = 0
    previous = -1
    found: dict[int, bytes] = {}
    while offset < end:
        if offset + 8 > end:
            return None  # an element header cut off (or the head ends here)
        if explicit:
            group, element, vr, length = _explicit_short(head, offset)
            tag = group << 16 | element
            if tag in _PIXEL_DATA and tag > previous:
                # pydicom reads the pixel data's whole element header before it stops:
                # one cut short (or of a VR it would guess at) is for it to refuse
                if vr in _SHORT_VRS or (vr in _LONG_VRS and offset + 12 <= end):
                    return found
                return None
            if vr in _SHORT_VRS:
                start = offset + 8
            elif vr in _LONG_VRS:
                if offset + 12 > end:
                    return None
                (length,) = _explicit_long_length(head, offset + 8)
                start = offset + 12
            else:
                return None  # a VR pydicom would have to guess at
            if tag in _EXPECTED_VR and vr != _EXPECTED_VR[tag]:
                return None
        else:
            group, element, length = _implicit(head, offset)
            tag = group << 16 | element
            if tag in _PIXEL_DATA and tag > previous:
                return found
            start = offset + 8
        if group < 0x0008 or group == 0xFFFE or tag <= previous or length == _UNDEFINED:
            return None
        offset = start + length
        if offset > end:
            return None  # the value goes on past the bytes we have
        if tag in _WANTED:
            found[tag] = bytes(head[start:offset])
        previous = tag
    return found if complete else None


def _value(tag: int, value: bytes) -> str | None:
    """The value as pydicom would give it, or None where that needs pydicom to tell."""
    if tag in (_SOP_CLASS_UID, _SOP_INSTANCE_UID, _STUDY_INSTANCE_UID, _SERIES_INSTANCE_UID):
        if value[-1:] in (b"\x00", b" "):
            value = value[:-1]
        if value and _UID.fullmatch(value) is None:
            return None
    elif tag in (_MODALITY, _SPECIFIC_CHARACTER_SET):
        if value[-1:] == b" ":
            value = value[:-1]
        if _CODE_STRING.fullmatch(value) is None or value.startswith(b" ") or value[-1:] == b" ":
            return None
    else:  # Study Description, LO
        if value[-1:] == b" ":
            value = value[:-1]
        if len(value) > 64 or _PRINTABLE.fullmatch(value) is None or value[-1:] == b" ":
            return None
    return value.decode("ascii")
