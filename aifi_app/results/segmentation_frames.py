"""A binary SEG's empty frames left out once its mask is known.

A SEG is built with one frame per source image (:mod:`aifi_app.results.segmentation`), so
that nothing but its Pixel Data depends on the mask and it can be built while the model
runs (:mod:`aifi_app.pipeline.seg_ahead`). Frames in which the segment is absent are
then left out, as highdicom leaves them out by default (``omit_empty_frames``): a chest
CT's lungs cover 70-90 % of its slices, and a PACS stores, indexes and serves every frame
it is sent (Orthanc stored the bench CT's SEG 0.035-0.05 s sooner without its 102 empty
frames of 500, bench/README.md). What that changes, as highdicom makes it:

* the Per-frame Functional Groups Sequence keeps the items of the frames kept, in order;
* each kept frame's Dimension Index Value of the plane position (the index whose
  Dimension Index Pointer is Image Position (Patient)) is renumbered 1, 2, ... in the
  order of the positions kept;
* Number of Frames is the number kept;
* Dimension Organization Type "3D" stays only when the positions kept are still evenly
  spaced (more than one, every n-th of the evenly spaced whole) and goes otherwise. (Where
  the whole was not evenly spaced but the frames kept are, highdicom would infer "3D";
  this leaves the optional attribute out instead.)

Where every frame is empty, all are kept (highdicom cannot omit them all either).

Two forms of the same change: :func:`omit_frames` on a data set (a SEG built whole), and
:func:`frame_layout` with :func:`without_frames` on the encoded bytes of a SEG built
ahead (its Part 10 bytes up to Pixel Data, Explicit VR Little Endian), which splices
them without decoding the thousands of elements of its per-frame items: where the
frame-dependent parts lie is found once, by walking the elements' headers, and each
kept item is copied with one value patched. Tests compare the two byte for byte, and
both with highdicom's own build.

No highdicom here (the worker writes a SEG built ahead before highdicom is loaded).
Thread: any (pure CPU).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import cast

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from aifi_app.algorithms.packed_mask import PackedFrames

__all__ = [
    "FrameLayout",
    "LayoutUnknown",
    "frame_layout",
    "kept_frames",
    "kept_frames_of",
    "omit_frames",
    "without_frames",
]

_NUMBER_OF_FRAMES = 0x00280008
_ORGANIZATION_TYPE = 0x00209311
_DIMENSION_INDEX_SEQUENCE = 0x00209222
_DIMENSION_INDEX_POINTER = 0x00209165
_IMAGE_POSITION = 0x00200032
_PER_FRAME = 0x52009230
_FRAME_CONTENT = 0x00209111
_DIMENSION_INDEX_VALUES = 0x00209157
_PIXEL_DATA = 0x7FE00010
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
_PART10_START = 132  # preamble and "DICM"
_EXPLICIT_LITTLE = b"1.2.840.10008.1.2.1"
_HH = struct.Struct("<HH")
_H = struct.Struct("<H")
_L = struct.Struct("<L")


class LayoutUnknown(ValueError):
    """The bytes are not a SEG header this module can splice (the frames are then kept)."""


def kept_frames(frames_set: Sequence[bool]) -> list[int]:
    """The frames to keep, given whether each (in frame order) has a pixel set: those
    that have, or every frame where none has."""
    kept = [n for n, present in enumerate(frames_set) if present]
    return kept if kept else list(range(len(frames_set)))


def kept_frames_of(packed: PackedFrames, order: Sequence[int]) -> list[int]:
    """:func:`kept_frames` of a SEG whose frame ``n`` holds the mask's frame
    ``order[n]``."""
    has_segment = packed.frames_set()
    return kept_frames([bool(has_segment[i]) for i in order])


def omit_frames(ds: Dataset, kept: Sequence[int]) -> None:
    """Keep only frames ``kept`` (indices in frame order, ascending) of the SEG ``ds``
    built with one frame per source image and no Pixel Data yet (see the module); ``ds``
    is changed in place."""
    items = list(ds.PerFrameFunctionalGroupsSequence)
    _check_kept(kept, len(items))
    if len(kept) == len(items):
        return
    position = _position_index(
        [item.get("DimensionIndexPointer") for item in ds.get("DimensionIndexSequence", [])]
    )
    chosen = [items[n] for n in kept]
    if position is not None:
        old = [int(_index_values(item)[position]) for item in chosen]
        ranks = _ranks(old)
        for item, value in zip(chosen, old, strict=True):
            values = [int(v) for v in _index_values(item)]
            values[position] = ranks[value]
            item.FrameContentSequence[0].DimensionIndexValues = values
    ds.PerFrameFunctionalGroupsSequence = chosen
    ds.NumberOfFrames = len(kept)
    if "DimensionOrganizationType" in ds and not (
        position is not None and _evenly_spaced(sorted(set(old)))
    ):
        del ds.DimensionOrganizationType


@dataclass(frozen=True)
class FrameLayout:
    """Where the frame-dependent parts of a SEG's encoded header lie (offsets into it)."""

    number_of_frames: tuple[int, int]
    """The Number of Frames element: start and end."""
    organization_type: tuple[int, int] | None
    """The Dimension Organization Type element when it is "3D" (start, end)."""
    sequence: tuple[int, int, int]
    """The Per-frame Functional Groups Sequence element: start, the start of its first
    item (the end of its element header), and its end (after its delimiter, if any)."""
    undefined_length: bool
    """Whether that sequence has an undefined length (ends with a delimiter)."""
    items: tuple[tuple[int, int], ...]
    """Each frame's item: start and end."""
    positions: tuple[int, ...] | None
    """Each frame's plane position index: the offset of its Dimension Index Value
    (UL, 4 bytes) in the header; None where the SEG has no plane position dimension."""

    def to_json(self) -> dict[str, object]:
        return {
            "number_of_frames": list(self.number_of_frames),
            "organization_type": None
            if self.organization_type is None
            else list(self.organization_type),
            "sequence": list(self.sequence),
            "undefined_length": self.undefined_length,
            "items": [list(item) for item in self.items],
            "positions": None if self.positions is None else list(self.positions),
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> FrameLayout:
        """The layout :meth:`to_json` gave (raises :class:`LayoutUnknown` when ``raw`` is
        not one)."""
        try:
            organization = raw["organization_type"]
            positions = raw["positions"]
            return cls(
                _pair(raw["number_of_frames"]),
                None if organization is None else _pair(organization),
                _triple(raw["sequence"]),
                bool(raw["undefined_length"]),
                tuple(_pair(item) for item in cast(list[object], raw["items"])),
                None if positions is None else tuple(int(p) for p in cast(list[int], positions)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LayoutUnknown(f"not a frame layout ({type(exc).__name__})") from exc


def frame_layout(header: bytes) -> FrameLayout:
    """The layout of ``header``: a SEG's Part 10 bytes up to (without) Pixel Data, in
    Explicit VR Little Endian, one item per frame in its Per-frame Functional Groups
    Sequence. Raises :class:`LayoutUnknown` when it is not such a header (or holds an
    encoding this walk does not follow: a value of undefined length other than a
    sequence or item)."""
    if header[128:132] != b"DICM":
        raise LayoutUnknown("not a DICOM file")
    found: dict[int, _Element] = {}
    pointers: list[int] = []
    transfer_syntax = b""
    try:
        for element in _elements(header, _PART10_START, len(header)):
            if element.tag == 0x00020010:
                transfer_syntax = header[element.value_start : element.value_end]
            elif element.tag in (_NUMBER_OF_FRAMES, _ORGANIZATION_TYPE, _PER_FRAME):
                found[element.tag] = element
            elif element.tag == _DIMENSION_INDEX_SEQUENCE:
                pointers = _pointers(header, element)
            elif element.tag == _PIXEL_DATA:
                raise LayoutUnknown("the header holds Pixel Data")
        if transfer_syntax.rstrip(b"\0 ") != _EXPLICIT_LITTLE:
            raise LayoutUnknown("not Explicit VR Little Endian")
        if _NUMBER_OF_FRAMES not in found or _PER_FRAME not in found:
            raise LayoutUnknown("no frames")
        sequence = found[_PER_FRAME]
        position = _position_index(pointers)
        items, positions = [], []
        for start, content, end in _items(header, sequence):
            items.append((start, end))
            if position is not None:
                positions.append(_position_offset(header, content, end, position))
    except (struct.error, IndexError) as exc:
        raise LayoutUnknown(f"the header ends inside an element ({type(exc).__name__})") from exc
    frames = header[found[_NUMBER_OF_FRAMES].value_start : found[_NUMBER_OF_FRAMES].value_end]
    if int(frames.strip(b"\0 ") or b"0") != len(items):
        raise LayoutUnknown("Number of Frames is not the number of items")
    organization = found.get(_ORGANIZATION_TYPE)
    three_d = (
        organization is not None
        and header[organization.value_start : organization.value_end].strip(b"\0 ") == b"3D"
    )
    return FrameLayout(
        (found[_NUMBER_OF_FRAMES].start, found[_NUMBER_OF_FRAMES].end),
        (organization.start, organization.end) if three_d and organization else None,
        (sequence.start, sequence.value_start, sequence.end),
        sequence.length == _UNDEFINED,
        tuple(items),
        tuple(positions) if position is not None else None,
    )


def without_frames(header: bytes, layout: FrameLayout, kept: Sequence[int]) -> bytes:
    """``header`` (laid out as ``layout``) with only frames ``kept`` (indices in frame
    order, ascending): the bytes :func:`omit_frames` gives, encoded."""
    _check_kept(kept, len(layout.items))
    if len(kept) == len(layout.items):
        return header
    edits: list[tuple[int, int, bytes]] = []
    old: list[int] = []
    if layout.positions is not None:
        old = [_L.unpack_from(header, layout.positions[n])[0] for n in kept]
    ranks = _ranks(old)
    if layout.organization_type is not None and not (
        layout.positions is not None and _evenly_spaced(sorted(set(old)))
    ):
        edits.append((*layout.organization_type, b""))
    count = str(len(kept)).encode()
    count += b" " * (len(count) % 2)  # as pydicom pads an IS
    number = _HH.pack(0x0028, 0x0008) + b"IS" + _H.pack(len(count)) + count
    edits.append((*layout.number_of_frames, number))
    parts: list[bytes] = []
    for n in kept:
        start, end = layout.items[n]
        item = bytearray(header[start:end])
        if layout.positions is not None:
            offset = layout.positions[n] - start
            value = _L.unpack_from(item, offset)[0]
            _L.pack_into(item, offset, ranks[value])
        parts.append(bytes(item))
    body = b"".join(parts)
    begin, first_item, end = layout.sequence
    element_header = header[begin:first_item]
    if layout.undefined_length:
        sequence = element_header + body + header[end - 8 : end]
    else:
        sequence = element_header[:8] + _L.pack(len(body)) + body
    edits.append((begin, end, sequence))
    edits.sort()
    out, at = [], 0
    for start, stop, replacement in edits:
        out += [header[at:start], replacement]
        at = stop
    out.append(header[at:])
    return b"".join(out)


@dataclass(frozen=True)
class _Element:
    tag: int
    vr: bytes
    start: int
    value_start: int
    value_end: int
    end: int
    length: int


def _tag(data: bytes, pos: int) -> int:
    group, element = _HH.unpack_from(data, pos)
    return int(group) << 16 | int(element)


def _elements(data: bytes, pos: int, end: int | None) -> Iterator[_Element]:
    """The elements of the data set in ``data`` from ``pos`` up to ``end`` (None: up to
    and without its Item Delimitation Item)."""
    while end is None or pos < end:
        tag = _tag(data, pos)
        if end is None and tag == _ITEM_END:
            return
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            length, value_start = _L.unpack_from(data, pos + 8)[0], pos + 12
        else:
            length, value_start = _H.unpack_from(data, pos + 6)[0], pos + 8
        if length == _UNDEFINED:
            if vr != b"SQ":
                raise LayoutUnknown(f"a {vr!r} value of undefined length")
            value_end = _sequence_end(data, value_start)
            element_end = value_end + 8
        else:
            value_end = element_end = value_start + length
        yield _Element(tag, vr, pos, value_start, value_end, element_end, length)
        pos = element_end
    if pos != end:
        raise LayoutUnknown("an element runs past its data set")


def _items(data: bytes, sequence: _Element) -> Iterator[tuple[int, int, int]]:
    """Each item of ``sequence``: its start, its content's start and its end."""
    pos = sequence.value_start
    while pos < sequence.value_end:
        tag = _tag(data, pos)
        if tag != _ITEM:
            raise LayoutUnknown("a sequence holds something other than items")
        length = _L.unpack_from(data, pos + 4)[0]
        content = pos + 8
        end = _item_end(data, content) + 8 if length == _UNDEFINED else content + length
        yield pos, content, end
        pos = end


def _item_end(data: bytes, content: int) -> int:
    """Where the Item Delimitation Item of the item whose content starts at ``content``
    starts."""
    pos = content
    for element in _elements(data, content, None):
        pos = element.end
    return pos


def _sequence_end(data: bytes, pos: int) -> int:
    """Where the Sequence Delimitation Item of the sequence of undefined length whose
    value starts at ``pos`` starts."""
    while _tag(data, pos) != _SEQUENCE_END:
        if _tag(data, pos) != _ITEM:
            raise LayoutUnknown("a sequence holds something other than items")
        length = _L.unpack_from(data, pos + 4)[0]
        pos = _item_end(data, pos + 8) + 8 if length == _UNDEFINED else pos + 8 + length
    return pos


def _pointers(data: bytes, sequence: _Element) -> list[int]:
    """The Dimension Index Pointer of each item of the Dimension Index Sequence."""
    pointers = []
    for _, content, end in _items(data, sequence):
        pointer = 0
        for element in _elements(data, content, _content_end(data, content, end)):
            if element.tag == _DIMENSION_INDEX_POINTER:
                pointer = _tag(data, element.value_start)
        pointers.append(pointer)
    return pointers


def _content_end(data: bytes, content: int, end: int) -> int | None:
    """The end of an item's content for :func:`_elements` (None: it has a delimiter)."""
    return None if _L.unpack_from(data, content - 4)[0] == _UNDEFINED else end


def _position_offset(data: bytes, content: int, end: int, position: int) -> int:
    """The offset of the plane position's Dimension Index Value in a frame's item."""
    for element in _elements(data, content, _content_end(data, content, end)):
        if element.tag != _FRAME_CONTENT:
            continue
        for _, inner, inner_end in _items(data, element):
            for value in _elements(data, inner, _content_end(data, inner, inner_end)):
                if value.tag == _DIMENSION_INDEX_VALUES:
                    if value.vr != b"UL" or value.length < 4 * (position + 1):
                        raise LayoutUnknown("a frame's Dimension Index Values are too few")
                    return value.value_start + 4 * position
    raise LayoutUnknown("a frame without Dimension Index Values")


def _position_index(pointers: Sequence[object]) -> int | None:
    """Which Dimension Index Value is the plane position (its pointer is Image Position
    (Patient)), if any."""
    for n, pointer in enumerate(pointers):
        if pointer == _IMAGE_POSITION:
            return n
    return None


def _index_values(item: Dataset) -> list[int]:
    values = item.FrameContentSequence[0].DimensionIndexValues
    return [int(v) for v in values] if isinstance(values, MultiValue | list) else [int(values)]


def _ranks(values: Sequence[int]) -> dict[int, int]:
    """Each distinct value's place (1, 2, ...) among them in ascending order."""
    return {value: n for n, value in enumerate(sorted(set(values)), 1)}


def _evenly_spaced(indices: Sequence[int]) -> bool:
    """Whether more than one index is kept, all a same step apart (ascending)."""
    if len(indices) < 2:
        return False
    step = indices[1] - indices[0]
    return all(b - a == step for a, b in pairwise(indices))


def _check_kept(kept: Sequence[int], frames: int) -> None:
    if not kept or list(kept) != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= frames:
        raise ValueError(f"frames to keep must be distinct, ascending, of {frames}")


def _pair(raw: object) -> tuple[int, int]:
    first, second = cast(list[int], raw)
    return int(first), int(second)


def _triple(raw: object) -> tuple[int, int, int]:
    first, second, third = cast(list[int], raw)
    return int(first), int(second), int(third)
