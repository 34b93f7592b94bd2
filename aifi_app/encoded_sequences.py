"""Long sequences encoded ahead of pydicom's writer, to the bytes it would write itself.

A SEG of a 500-slice CT has ~400 Per-frame Functional Groups Sequence items, ~3,600
nested data sets that share their structure and most of their values (the segment
number, the derivation codes, the purpose of reference); only each frame's source
image, position and dimension index differ. pydicom's writer encodes every element of
every nested data set afresh, and corrects ambiguous VRs again at every nesting level:
most of writing such a SEG. Here a top-level sequence of many items (nested ones' items
counted: a SEG's Referenced Series Sequence holds one item with an item per image) is
encoded once,
each element value that occurs again (same tag, VR, value and character set) from the
bytes of its first encoding by pydicom's own :func:`~pydicom.filewriter.write_data_element`;
the item and sequence headers are those pydicom writes (defined lengths unless a
sequence or item says it is of undefined length). The result goes to pydicom's writer
as a raw element, so the file is byte for byte pydicom's (tests compare).

Explicit VR Little Endian only, data sets built in memory only: a data set with an
element read from a file (raw), or with an ambiguous VR inside a sequence (pydicom would
correct it from its ancestors), is left entirely to pydicom; an ambiguous VR at the top
level (Pixel Data's OB or OW) is corrected here as pydicom's writer corrects it.
Thread: any (pure CPU; nothing shared).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import cast

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian
from pydicom.valuerep import IS, DSdecimal, DSfloat

__all__ = [
    "MANY_ITEMS",
    "element_bytes",
    "encoded_items",
    "item_bytes",
    "sequence_bytes",
    "with_long_sequences_encoded",
]

MANY_ITEMS = 32  # a top-level sequence of at least this many items is encoded here

_ITEM = b"\xfe\xff\x00\xe0"
_ITEM_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_UNDEFINED = b"\xff\xff\xff\xff"
_UL = struct.Struct("<L")
_TAG = struct.Struct("<HH")
_CHARSET = BaseTag(0x00080005)
_CACHED_UP_TO = 1024  # longer values are encoded each time (and never kept)

_Key = tuple[object, ...]


class _LeftToPydicom(Exception):
    """Something this encoder does not reproduce: pydicom writes the data set itself."""


def with_long_sequences_encoded(ds: Dataset, *, many_items: int = MANY_ITEMS) -> Dataset:
    """``ds`` to write with :func:`~pydicom.filewriter.dcmwrite` in its place.

    Either ``ds`` itself, or a new top-level data set over the same elements (``ds`` is
    not changed) in which every top-level sequence of ``many_items`` items or more is
    a raw element holding the bytes pydicom would encode for it; the new data set is
    marked as of its file's encoding, so pydicom writes those bytes as they are.
    ``ds`` itself when it is not Explicit VR Little Endian, has no such sequence, or
    holds anything this encoder leaves to pydicom (see the module)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or meta.get("TransferSyntaxUID") != ExplicitVRLittleEndian:
        return ds
    if not any(_is_long_sequence(element, many_items) for element in ds.elements()):
        return ds
    encodings = convert_encodings(ds.get("SpecificCharacterSet", default_encoding))
    cache: dict[_Key, bytes] = {}
    elements: dict[BaseTag, DataElement | RawDataElement] = {}
    try:
        for element in ds.elements():
            if element.is_raw:
                raise _LeftToPydicom  # pydicom decodes it while writing
            if element.VR is not None and len(element.VR) != 2:
                # as pydicom's writer corrects the top level (Pixel Data: OB or OW)
                correct_ambiguous_vr_element(element, ds, True)
                if len(element.VR) != 2:
                    raise _LeftToPydicom
            tag = element.tag
            if _is_long_sequence(element, many_items):
                element = cast(DataElement, element)
                body = b"".join(_item(item, encodings, cache) for item in element.value)
                undefined = element.is_undefined_length
                elements[tag] = RawDataElement(
                    tag,
                    "SQ",
                    0xFFFFFFFF if undefined else len(body),
                    body,
                    0,
                    False,
                    True,
                )
            else:
                elements[tag] = element
    except _LeftToPydicom:
        return ds
    out = Dataset(elements)
    out.file_meta = meta
    if getattr(ds, "preamble", None) is not None:
        out.preamble = ds.preamble
    # the raw sequences are of the file's encoding: pydicom writes them as they are
    # (without this its writer would decode them to check their VRs)
    charset = out.get("SpecificCharacterSet")
    out.set_original_encoding(
        False, True, convert_encodings(charset) if charset else default_encoding
    )
    return out


def encoded_items(items: Iterable[Dataset], encodings: list[str] | None = None) -> bytes:
    """The bytes pydicom writes for these items of a sequence (Explicit VR Little Endian,
    ``encodings``: the character set in force, default pydicom's); raises ``ValueError``
    for an item this encoder leaves to pydicom (see the module)."""
    cache: dict[_Key, bytes] = {}
    try:
        return b"".join(_item(item, encodings or [default_encoding], cache) for item in items)
    except _LeftToPydicom:
        raise ValueError("an item holds an element left to pydicom's writer") from None


def item_bytes(content: bytes) -> bytes:
    """A sequence item of defined length holding ``content`` (its encoded elements)."""
    return _ITEM + _UL.pack(len(content)) + content


def sequence_bytes(tag: int, items: bytes) -> bytes:
    """A sequence element of defined length holding ``items`` (encoded items)."""
    tag = BaseTag(tag)
    return _TAG.pack(tag.group, tag.element) + b"SQ\x00\x00" + _UL.pack(len(items)) + items


def element_bytes(element: DataElement, encodings: list[str] | None = None) -> bytes:
    """A data element (not a sequence) as pydicom writes it in Explicit VR Little Endian."""
    return _element(element, encodings or [default_encoding])


def _is_long_sequence(element: DataElement | RawDataElement, many_items: int) -> bool:
    """A top-level sequence with ``many_items`` items or more, its nested sequences' items
    counted too (a SEG's Referenced Series Sequence: one series item with an item per
    referenced image)."""
    return (
        not element.is_raw
        and element.VR == "SQ"
        and _items_in(cast(DataElement, element).value, many_items) >= many_items
    )


def _items_in(items: Iterable[Dataset], enough: int) -> int:
    """The items of a sequence and of the sequences nested in them (counted up to about
    ``enough``); raw elements are not looked into."""
    count = 0
    for item in items:
        count += 1
        if count >= enough:
            return count
        for element in item.values():
            if not element.is_raw and element.VR == "SQ":
                count += _items_in(cast(DataElement, element).value, enough - count)
                if count >= enough:
                    return count
    return count


def _item(item: Dataset, parent: list[str], cache: dict[_Key, bytes]) -> bytes:
    content = _dataset(item, parent, cache)
    if getattr(item, "is_undefined_length_sequence_item", False):
        return _ITEM + _UNDEFINED + content + _ITEM_END
    return _ITEM + _UL.pack(len(content)) + content


def _dataset(ds: Dataset, parent: list[str], cache: dict[_Key, bytes]) -> bytes:
    tags = sorted(ds.keys())
    encodings = parent
    if _CHARSET in tags:
        encodings = convert_encodings(ds.get_item(_CHARSET).value)
    parts: list[bytes] = []
    for tag in tags:
        if tag.element == 0 and tag.group > 6:
            continue  # pydicom does not write retired group lengths
        element = ds.get_item(tag)
        if element.is_raw:
            raise _LeftToPydicom
        vr = element.VR
        if vr == "SQ":
            body = b"".join(_item(item, encodings, cache) for item in element.value)
            header = _TAG.pack(tag.group, tag.element) + b"SQ\x00\x00"
            if element.is_undefined_length:
                parts.append(header + _UNDEFINED + body + _SEQUENCE_END)
            else:
                parts.append(header + _UL.pack(len(body)) + body)
            continue
        if vr is None or len(vr) != 2 or element.is_buffered:
            raise _LeftToPydicom
        key = _value_key(element.value)
        if key is None:
            parts.append(_element(element, encodings))
            continue
        full = (tag, vr, key, tuple(encodings))
        encoded = cache.get(full)
        if encoded is None:
            encoded = _element(element, encodings)
            if len(encoded) <= _CACHED_UP_TO:
                cache[full] = encoded
        parts.append(encoded)
    return b"".join(parts)


def _element(element: DataElement, encodings: list[str]) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_data_element(fp, element, encodings)
    return fp.getvalue()


def _value_key(value: object) -> _Key | None:
    """A key equal only for values pydicom encodes alike (for one tag and VR), or None.

    Strings, integers, bytes by type and value; DS and IS by the text pydicom writes
    for them; values of several of these by theirs. Others (floats: 0.0 equals -0.0;
    person names) are not cached."""
    kind = type(value)
    if value is None or kind in (str, UID, int, bytes):
        return (kind, value)
    if kind in (DSfloat, DSdecimal, IS):
        number = cast(DSfloat | DSdecimal | IS, value)
        # as pydicom's write_number_string
        return (kind, number.original_string if hasattr(number, "original_string") else str(number))
    if kind is MultiValue:
        keys = [_value_key(v) for v in cast(Iterable[object], value)]
        if any(k is None for k in keys):
            return None
        return (kind, *keys)
    return None
