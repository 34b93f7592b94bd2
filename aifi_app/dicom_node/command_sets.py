"""The two small encodings made once per received instance: the file meta and the response.

Both have a fixed layout with two or three values that change per instance, so they are
packed here directly: through pydicom (``create_file_meta`` + ``write_file_meta_info``,
a ``Dataset`` encoded by ``pynetdicom.dsutils.encode``) they cost about 0.75 ms each per
instance on the development machine, 1.5 ms of an instance's ~5 ms budget, most of it
pydicom's value validation. ``tests/dicom_node/test_command_sets.py`` checks that the
bytes are exactly what pydicom writes for the same values.

The peer's command set is read the same way (:func:`read_command`): the plain encoding
every sender uses is walked here, anything else is decoded by pydicom as before (through
pydicom it cost about 0.2 ms an instance, and each read of a value from the ``Dataset``
more; with four associations at once that time holds the interpreter's lock).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from io import BytesIO
from typing import Final

from pynetdicom.dsutils import decode

C_STORE_RSP: Final = 0x8001
C_ECHO_RSP: Final = 0x8030
NO_DATA_SET: Final = 0x0101

_UL_EXPLICIT = struct.Struct("<HH2sHL")  # group 2: tag, "UL", 4, value
_SHORT_EXPLICIT = struct.Struct("<HH2sH")  # tag, VR, 16-bit length
_IMPLICIT = struct.Struct("<HHL")  # tag, 32-bit length
_US_IMPLICIT = struct.Struct("<HHLH")


def _even(value: str, pad: bytes) -> bytes:
    data = value.encode("ascii", "replace")
    return data + pad if len(data) % 2 else data


def file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str,
    *,
    sending_ae_title: str = "",
    receiving_ae_title: str = "",
) -> bytes:
    """The File Meta Information (group 0002, explicit VR little endian, no preamble).

    ``sending_ae_title`` / ``receiving_ae_title``: the association's calling and called
    AE titles (Sending / Receiving Application Entity Title, PS3.10 section 7.1); left
    out when empty.
    """
    elements = b"".join(
        [
            _SHORT_EXPLICIT.pack(0x0002, 0x0001, b"OB", 0) + struct.pack("<L", 2) + b"\x00\x01",
            *(
                _SHORT_EXPLICIT.pack(0x0002, element, vr, len(value)) + value
                for element, vr, value in (
                    (0x0002, b"UI", _even(sop_class_uid, b"\x00")),
                    (0x0003, b"UI", _even(sop_instance_uid, b"\x00")),
                    (0x0010, b"UI", _even(transfer_syntax_uid, b"\x00")),
                    (0x0012, b"UI", _even(implementation_class_uid, b"\x00")),
                    (0x0013, b"SH", _even(implementation_version_name, b" ")),
                    (0x0017, b"AE", _even(sending_ae_title, b" ")),
                    (0x0018, b"AE", _even(receiving_ae_title, b" ")),
                )
                if value or element < 0x0017
            ),
        ]
    )
    return _UL_EXPLICIT.pack(0x0002, 0x0000, b"UL", 4, len(elements)) + elements


def response(
    command_field: int,
    message_id: int,
    status: int,
    sop_class_uid: str,
    sop_instance_uid: str | None = None,
) -> bytes:
    """A C-STORE-RSP or C-ECHO-RSP command set (implicit VR little endian)."""
    class_uid = _even(sop_class_uid, b"\x00")
    parts = [
        _IMPLICIT.pack(0x0000, 0x0002, len(class_uid)) + class_uid,
        _US_IMPLICIT.pack(0x0000, 0x0100, 2, command_field),
        _US_IMPLICIT.pack(0x0000, 0x0120, 2, message_id),
        _US_IMPLICIT.pack(0x0000, 0x0800, 2, NO_DATA_SET),
        _US_IMPLICIT.pack(0x0000, 0x0900, 2, status),
    ]
    if sop_instance_uid is not None:
        instance_uid = _even(sop_instance_uid, b"\x00")
        parts.append(_IMPLICIT.pack(0x0000, 0x1000, len(instance_uid)) + instance_uid)
    body = b"".join(parts)
    return _IMPLICIT.pack(0x0000, 0x0000, 4) + struct.pack("<L", len(body)) + body


@dataclass(frozen=True)
class Command:
    """What the node uses of a request's command set."""

    field: int
    message_id: int
    has_data_set: bool
    sop_class_uid: str
    """Affected SOP Class UID ("" if absent)."""
    sop_instance_uid: str
    """Affected SOP Instance UID ("" if absent)."""


_AFFECTED_SOP_CLASS_UID: Final = 0x00000002
_COMMAND_FIELD: Final = 0x00000100
_MESSAGE_ID: Final = 0x00000110
_COMMAND_DATA_SET_TYPE: Final = 0x00000800
_AFFECTED_SOP_INSTANCE_UID: Final = 0x00001000
_US_TAGS: Final = frozenset({_COMMAND_FIELD, _MESSAGE_ID, _COMMAND_DATA_SET_TYPE})
_UI_TAGS: Final = frozenset({_AFFECTED_SOP_CLASS_UID, _AFFECTED_SOP_INSTANCE_UID})
_UID: Final = re.compile(rb"(?=.{1,64}$)(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_implicit_header = _IMPLICIT.unpack_from
_us = struct.Struct("<H").unpack_from


def read_command(data: bytes) -> Command:
    """The request's command set (implicit VR little endian); raises if it cannot be read."""
    return _scan_command(data) or _decode_command(data)


def _scan_command(data: bytes) -> Command | None:
    """The command from its bytes, or None where pydicom must decode it.

    Only for the plain encoding: group 0000 elements in ascending order, each within the
    bytes, the three numbers 2 bytes long, the UIDs valid (then the values are pydicom's).
    """
    end = len(data)
    if end >= 6 and 0x40 < data[4] < 0x5B and 0x40 < data[5] < 0x5B:
        return None  # pydicom would take it for explicit VR
    offset = 0
    previous = -1
    values: dict[int, int | str] = {}
    while offset < end:
        if offset + 8 > end:
            return None
        group, element, length = _implicit_header(data, offset)
        tag = group << 16 | element
        start = offset + 8
        offset = start + length
        if group != 0 or tag <= previous or offset > end:
            return None
        previous = tag
        if tag in _US_TAGS:
            if length != 2:
                return None
            values[tag] = _us(data, start)[0]
        elif tag in _UI_TAGS:
            uid = data[start:offset].rstrip(b"\x00 ")
            if _UID.fullmatch(uid) is None:
                return None
            values[tag] = uid.decode("ascii")
    try:
        return Command(
            field=int(values[_COMMAND_FIELD]),
            message_id=int(values[_MESSAGE_ID]),
            has_data_set=values[_COMMAND_DATA_SET_TYPE] != NO_DATA_SET,
            sop_class_uid=str(values.get(_AFFECTED_SOP_CLASS_UID, "")),
            sop_instance_uid=str(values.get(_AFFECTED_SOP_INSTANCE_UID, "")),
        )
    except KeyError:
        return None


def _decode_command(data: bytes) -> Command:
    command = decode(BytesIO(data), True, True)
    return Command(
        field=int(command.CommandField),
        message_id=int(command.MessageID),
        has_data_set=int(command.CommandDataSetType) != NO_DATA_SET,
        sop_class_uid=str(command.get("AffectedSOPClassUID") or ""),
        sop_instance_uid=str(command.get("AffectedSOPInstanceUID") or ""),
    )
