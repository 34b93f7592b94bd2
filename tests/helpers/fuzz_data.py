"""Malformed DICOM for the fuzz campaigns: hypothesis strategies over a valid instance.

Byte-level mutations of a valid Part-10 file (truncation, flipped bytes, overwritten and
inserted spans, a wrong VR, a corrupted length), and structure-level oddities written by
hand (sequences nested thousands deep, huge values, undefined lengths that never end).
Every base instance carries the planted identifiers in :data:`PLANTED`, so a campaign can
also check that whatever the pseudonymiser lets through holds none of them.

``AIFI_FUZZ_EXAMPLES`` sets how many cases each campaign runs (small in CI).
"""

from __future__ import annotations

import io
import os
import struct

from hypothesis import strategies as st
from pydicom import Dataset, dcmwrite
from pydicom.sequence import Sequence

from aifi_app.sample_studies import SamplePatient, chest_radiograph, phantom_chest

EXAMPLES = int(os.environ.get("AIFI_FUZZ_EXAMPLES", "150"))

PATIENT = SamplePatient(
    name="Fuzzmaker^Hendrika",
    patient_id="FZ99887766",
    birth_date="19600101",
    sex="F",
    accession="FZACC5544",
)
PLANTED = [b"Fuzzmaker", b"FZ99887766", b"FZACC5544", b"Hendrika"]

_VRS = [b"AE", b"AS", b"CS", b"DA", b"DS", b"FD", b"IS", b"LO", b"OB", b"OW", b"PN", b"SQ",
        b"UI", b"UL", b"UN", b"US", b"UT", b"XX", b"\0\0"]  # fmt: skip


def base_dataset() -> Dataset:
    ds = chest_radiograph(PATIENT, phantom_chest(size=32))
    ds.OperatorsName = "Fuzzmaker^Hendrika"
    item = Dataset()
    # a code item (kept as coded content by the pseudonymiser): no identifiers in it
    item.CodeValue = "RPID2468"
    item.CodingSchemeDesignator = "RADLEX"
    item.CodeMeaning = "XR chest"
    ds.ProcedureCodeSequence = Sequence([item])
    ds.add_new(0x00091010, "LO", "PRIVATE Fuzzmaker")
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


BASE = to_bytes(base_dataset())
_BODY = 132  # preamble and "DICM"


def _deep_sequence(depth: int, defined: bool) -> bytes:
    """A data set of sequences nested ``depth`` deep (Referenced Series Sequence)."""
    sq_tag = struct.pack("<HH", 0x0008, 0x1115)
    item = struct.pack("<HH", 0xFFFE, 0xE000)
    if not defined:
        head = sq_tag + b"SQ\0\0" + b"\xff\xff\xff\xff" + item + b"\xff\xff\xff\xff"
        tail = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
        return head * depth + tail * depth
    inner = b""
    for _ in range(depth):
        body = struct.pack("<L", len(inner))
        inner = sq_tag + b"SQ\0\0" + struct.pack("<L", len(inner) + 8) + item + body + inner
    return inner


@st.composite
def malformed_files(draw: st.DrawFn) -> bytes:
    """A Part-10 file (or something that claims to be one) that is broken in one or more ways."""
    kind = draw(
        st.sampled_from(
            ["truncate", "flip", "overwrite", "insert", "vr", "length", "deep", "huge", "garbage"]
        )
    )
    data = bytearray(BASE)
    size = len(data)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, size - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 16))):
            pos = draw(st.integers(_BODY, size - 1))
            data[pos] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind == "overwrite":
        pos = draw(st.integers(_BODY, size - 1))
        data[pos : pos + 64] = draw(st.binary(min_size=1, max_size=64))
        return bytes(data)
    if kind == "insert":
        pos = draw(st.integers(_BODY, size))
        return bytes(data[:pos] + draw(st.binary(min_size=1, max_size=256)) + data[pos:])
    if kind == "vr":
        # put a different VR where the header of an element is (explicit VR little endian)
        pos = draw(st.integers(_BODY, size - 2))
        data[pos : pos + 2] = draw(st.sampled_from(_VRS))
        return bytes(data)
    if kind == "length":
        pos = draw(st.integers(_BODY, size - 4))
        fmt = draw(st.sampled_from(["<H", "<L"]))
        top = 0xFFFF if fmt == "<H" else 0xFFFFFFFF
        value = draw(st.one_of(st.sampled_from([0, 1, 0xFFFF, 0xFFFFFFFF & top, top - 1]),
                               st.integers(0, top)))  # fmt: skip
        data[pos : pos + struct.calcsize(fmt)] = struct.pack(fmt, value)
        return bytes(data)
    if kind == "deep":
        # the deep sequence goes in before Pixel Data: after the header's last element
        depth = draw(st.sampled_from([2, 50, 500, 5000, 50000]))
        cut = BASE.index(struct.pack("<HH", 0x7FE0, 0x0010), _BODY)
        return bytes(data[:cut]) + _deep_sequence(depth, draw(st.booleans())) + bytes(data[cut:])
    if kind == "huge":
        # a value far longer than its VR allows, with a matching (valid) 32-bit length
        n = draw(st.sampled_from([70, 1 << 16, 1 << 20, 8 << 20]))
        element = struct.pack("<HH", 0x0020, 0x4000) + b"LT\0\0"
        value = (b"Fuzzmaker " * (n // 10 + 1))[:n]
        # LT has a 16-bit length: use UT's layout under LT's tag instead
        element = struct.pack("<HH", 0x0020, 0x4000) + b"UT\0\0" + struct.pack("<L", n) + value
        cut = BASE.index(struct.pack("<HH", 0x7FE0, 0x0010), _BODY)
        return bytes(data[:cut]) + element + bytes(data[cut:])
    return bytes(data[:_BODY]) + draw(st.binary(min_size=0, max_size=2048))
