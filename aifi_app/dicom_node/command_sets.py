"""The two small encodings made once per received instance: the file meta and the response.

Both have a fixed layout with two or three values that change per instance, so they are
packed here directly: through pydicom (``create_file_meta`` + ``write_file_meta_info``,
a ``Dataset`` encoded by ``pynetdicom.dsutils.encode``) they cost about 0.75 ms each per
instance on the development machine, 1.5 ms of an instance's ~5 ms budget, most of it
pydicom's value validation. ``tests/dicom_node/test_command_sets.py`` checks that the
bytes are exactly what pydicom writes for the same values. Decoding the peer's command
set stays with pydicom (any valid encoding must be understood; it costs 0.2 ms).
"""

from __future__ import annotations

import struct
from typing import Final

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
) -> bytes:
    """The File Meta Information (group 0002, explicit VR little endian, no preamble)."""
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
                )
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
