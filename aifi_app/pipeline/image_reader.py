"""A job's pseudonymised image read for its runner, without pydicom's element reader.

Before its model runs, a job reads the header of each image in its work folder, its pixel
data deferred (``dcmread(path, defer_size=64 KiB)``): 500 reads for a CT, 0.6 ms each on
the two-core machine, most of it pydicom's per-element reading loop. The work files are
ours, written by the pseudonymiser: explicit VR little endian with a file meta, every
element of defined length. :func:`read_image` walks such a file's first bytes itself
(tag, VR, length; one ``struct`` unpack per element) and hands pydicom the same
:class:`~pydicom.dataelem.RawDataElement` entries its reader would have made (values
decoded on first use, as with ``dcmread``; the large ones, the pixel data, left in the
file with their position), in a :class:`~pydicom.dataset.FileDataset` made as ``dcmread``
makes it. Anything else (implicit VR, big endian, deflated, an undefined length, a
header longer than :data:`HEAD_BYTES`, bytes after the last element beyond what was
read, an unknown VR) is read by ``dcmread`` itself, so every file gives the data set
``dcmread`` gives, and every error ``dcmread`` raises.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Final, cast

from pydicom import Dataset, FileDataset, FileMetaDataset, dcmread
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

DEFER_BYTES: Final = 64 * 1024
"""Element values larger than this (pixel data) are read from the file on first use."""
HEAD_BYTES: Final = 16 * 1024
"""Bytes read from the start of a file; a header longer than this is read by ``dcmread``."""
CHARSET: Final = 0x00080005
UNDEFINED_LENGTH: Final = 0xFFFFFFFF
TRANSFER_SYNTAX: Final = 0x00020010

_HEADER: Final = struct.Struct("<HH2sH")
_LONG_LENGTH: Final = struct.Struct("<L")
_VRS: Final = {v.value.encode("ascii"): str(v.value) for v in VR if len(v.value) == 2}
"""The two-letter VRs pydicom knows, as they are written, to their names."""
_LONG_VRS: Final = frozenset(v.encode("ascii") for v in EXPLICIT_VR_LENGTH_32)
_EMPTY: Final[dict[str, bytes | None]] = {
    vr: cast(bytes | None, empty_value_for_VR(vr, raw=True)) for vr in _VRS.values()
}
"""The value of an empty element, as pydicom's reader gives it."""
_PLAIN_SYNTAXES: Final = frozenset({b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.1"})
"""Explicit VR Little Endian as written (even length: padded with a NUL), the syntax the
pseudonymiser writes; any other is read by ``dcmread``."""
Elements = dict[BaseTag, DataElement | RawDataElement]
_TAGS: dict[int, BaseTag] = {}
"""BaseTag per tag number (the same few dozen tags in every file)."""
_CHARSET_TAG: Final = BaseTag(CHARSET)
_PIXEL_TAGS: Final = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""Float, Double Float and Pixel Data: where ``dcmread(stop_before_pixels=True)`` stops."""
_SYNTAX_TAG: Final = BaseTag(TRANSFER_SYNTAX)
_ENCODINGS: dict[bytes, str | list[str]] = {}
MEMO_ENTRIES: Final = 2_000
"""Entries kept at most; the memo is emptied when it holds more. Only entries of the
series being read are of use (a CT slice adds four that no other file repeats, after the
first file's 52), and the memo's memory stays with the process: at 20,000 entries the
appliance's process tree peaked 3.6 MB higher with each CT over twelve CTs (over the
300 MB goal from the fifth on); at 2,000 (and
:data:`~aifi_app.pipeline.processing._DECODED_UIDS_MAX`,
``pre_pseudonymise._JSON_ELEMENTS_MAX`` and the pseudonymiser's memo likewise) its peaks
over eight CTs were 283, 287, 290, 290, 290, 291, 292 and 293 MB (``bench/README.md``,
the fifteenth session)."""
_MEMO: dict[tuple[int, bytes], RawDataElement] = {}
"""The entries made, by their place in the file and their bytes as written (header and
value): the images of a series share most of their elements, at the same places. An
entry is immutable (pydicom converts it into a new element of the data set that uses
it), so data sets share them."""


def read_image(path: Path) -> Dataset:
    """``dcmread(path, defer_size=DEFER_BYTES)``: the same data set, read faster when the
    file is plain (see the module)."""
    found = _read(path, None)
    return dcmread(path, defer_size=DEFER_BYTES) if found is None else found


def read_header(path: Path, tags: frozenset[int]) -> Dataset:
    """``dcmread(path, stop_before_pixels=True, specific_tags=tags)``: the same data set
    (those elements, and the Specific Character Set), read faster when the file's header
    is plain (see the module; the other elements need only be of defined length). For a
    received instance's selection tags at job time."""
    found = _read(path, tags | {CHARSET})
    if found is None:
        return dcmread(path, stop_before_pixels=True, specific_tags=list(tags))
    return found


def _read(path: Path, keep: frozenset[int] | None) -> Dataset | None:
    """The data set as :func:`read_image` (``keep`` None) or :func:`read_header` (only
    the elements ``keep`` names, up to the pixel data) read it; None when the file is
    not plain."""
    name = str(path)
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
        st = os.fstat(fh.fileno())
    read = _plain(head, st.st_size, keep)
    if read is None:
        return None
    meta, elements = read
    file_meta = FileMetaDataset(meta)
    file_meta.set_original_encoding(False, True, default_encoding)
    return _file_dataset(name, st.st_mtime, elements, head[:128], file_meta)


_TEMPLATES: dict[str, dict[str, Any]] = {}
"""Per Python encoding of the character set, the attributes of an empty ``FileDataset``
as ``dcmread`` leaves them (read from one made by pydicom itself)."""


def _file_dataset(
    name: str, mtime: float, elements: Elements, preamble: bytes, file_meta: FileMetaDataset
) -> FileDataset:
    """``FileDataset(name, elements, preamble, file_meta, False, True)`` with its original
    encoding set, as ``dcmread`` makes it, without pydicom's attribute checks for each of
    its two dozen attributes and its second ``stat`` of the file (a third of a work
    file's read): the attributes of one made by pydicom, each container a fresh copy,
    then this file's own."""
    encodings = _encodings(elements.get(_CHARSET_TAG))
    key = repr(encodings)
    template = _TEMPLATES.get(key)
    if template is None:
        made = FileDataset(name, {}, preamble, FileMetaDataset(), False, True)
        made.set_original_encoding(False, True, encodings)
        template = _TEMPLATES[key] = dict(vars(made))
    ds: FileDataset = FileDataset.__new__(FileDataset)
    state = vars(ds)
    for attribute, value in template.items():  # fresh containers: a data set's own
        state[attribute] = value.copy() if isinstance(value, dict | list) else value
    state["_dict"] = elements
    state["file_meta"] = file_meta
    state["preamble"] = preamble
    state["filename"] = name
    state["timestamp"] = mtime
    return ds


def _encodings(charset: DataElement | RawDataElement | None) -> str | list[str]:
    """The Python encodings of a Specific Character Set as read (what
    ``Dataset._character_set`` gives; converted once per value)."""
    if charset is None:
        return default_encoding
    value = charset.value if isinstance(charset, RawDataElement) else None
    found = None if value is None else _ENCODINGS.get(value)
    if found is None:
        found = Dataset({_CHARSET_TAG: charset})._character_set
        if value is not None:
            _ENCODINGS[value] = found
    return list(found) if isinstance(found, list) else found


def _plain(
    head: bytes, size: int, keep: frozenset[int] | None = None
) -> tuple[Elements, Elements] | None:
    """(file meta elements, data set elements) of a plain file whose first bytes are
    ``head`` and whose length is ``size``; None for anything else. ``keep``: only these
    elements of the data set, up to the pixel data (as ``dcmread`` with
    ``stop_before_pixels`` and ``specific_tags`` reads them: no value deferred)."""
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    meta: Elements = {}
    elements: Elements = {}
    target = meta
    in_meta = True
    pos = 132
    limit = len(head)
    unpack = _HEADER.unpack_from
    unpack_long = _LONG_LENGTH.unpack_from
    vrs = _VRS
    long_vrs = _LONG_VRS
    tags = _TAGS
    empty = _EMPTY
    raw = RawDataElement
    memo = _MEMO
    while pos < size:
        if pos + 8 > limit:
            return None
        group, element, vr_bytes, length = unpack(head, pos)
        if in_meta and group != 2:
            syntax = meta.get(_SYNTAX_TAG)
            if syntax is None or syntax.value not in _PLAIN_SYNTAXES:
                return None
            target = elements
            in_meta = False
        elif group == 2 and not in_meta:
            return None  # group 2 in the data set: dcmread's own handling
        vr = vrs.get(vr_bytes)
        if vr is None or group == 0xFFFE:
            return None
        if vr_bytes in long_vrs:
            if pos + 12 > limit:
                return None
            (length,) = unpack_long(head, pos + 8)
            if length == UNDEFINED_LENGTH:
                return None
            start = pos + 12
        else:
            start = pos + 8
        end = start + length
        tag = (group << 16) | element
        value: bytes | None
        if keep is not None and not in_meta:
            if tag in _PIXEL_TAGS:
                return meta, elements  # dcmread stops before the pixel data
            if tag not in keep:
                if end > limit:
                    return None
                pos = end  # skipped, as dcmread skips it
                continue
            if end > limit:
                return None
        if end > limit:
            if end > size or in_meta or length <= DEFER_BYTES or tag == CHARSET:
                return None  # truncated, or more to read: dcmread's own handling
            value = None  # left in the file (pixel data)
        elif not in_meta and keep is None and length > DEFER_BYTES and tag != CHARSET:
            value = None
        else:  # the same element at the same place as in an earlier file: the same entry
            key = (start, head[pos:end])
            found = memo.get(key)
            if found is not None:
                target[found.tag] = found
                pos = end
                continue
            value = head[start:end] if length else empty[vr]
        base = tags.get(tag)
        if base is None:
            base = tags[tag] = BaseTag(tag)
        target[base] = made = raw(base, vr, length, value, start, False, True)
        if value is not None:
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            memo[key] = made
        pos = end
    if in_meta or pos != size:
        return None
    return meta, elements
