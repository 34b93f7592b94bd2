"""The element memo's fast path: a series' later instances without pydicom's reader.

Once an instance of a context (see :mod:`.element_memo`) has been pseudonymised the full
way, the next instances of that context are handled here: the header's explicit-VR little
endian elements are walked in the file's bytes (tag, VR, length, value; no pydicom
objects), each element found in the memo takes its memoised output bytes, counts and
mappings, and only the others (SOP Instance UID, Instance Number, position ...) are
processed by the :class:`~aifi_app.pseudonymise.Pseudonymiser` (one small pydicom data set
of raw elements). The output is the bytes the full path writes: the same elements, the
same de-identification attributes and file meta, written as
:func:`~aifi_app.pseudonymise.batch.pseudonymise_file` writes them.

Whenever anything is not plain, :func:`plan_instance` returns None and the whole instance
takes the full path: a context not seen before, implicit VR, big endian, deflated, a
sequence, UN, an undefined length, a group length, elements out of order or repeated, a
de-identification attribute already present, a header longer than :data:`HEAD_BYTES`, a
character set that the output would change, a processed element whose written form is not
plain, any exception. The burned-in check runs on every instance. Nothing is reported,
counted or memoised before the plan is complete.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from typing import Final

from pydicom import Dataset, FileMetaDataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from aifi_app.pseudonymise.burned_in import BurnedInAnnotationRefused, check_burned_in
from aifi_app.pseudonymise.element_copy import new_file_meta
from aifi_app.pseudonymise.element_memo import (
    MAX_ENTRIES,
    MEMO_VRS,
    MISSES_BEFORE_GIVING_UP,
    UNDEFINED_LENGTH,
    ContextKey,
    ElementKey,
    ElementMemo,
    Mapping,
    MemoContext,
    Outcome,
    written_form,
)
from aifi_app.pseudonymise.pseudonymiser import DEIDENTIFICATION_TAGS, Pseudonymiser, RunFacts

HEAD_BYTES: Final = 65536
"""Bytes read from the start of a file; a longer header takes the full path."""
PIXEL_DATA: Final = 0x7FE00010
FIRST_PIXEL_TAG: Final = 0x7FE00008
"""pydicom's header read stops at Float/Double Float Pixel Data and Pixel Data."""
CHARSET: Final = 0x00080005
SOP_CLASS: Final = 0x00080016
SOP_INSTANCE: Final = 0x00080018
PATIENT_ID: Final = 0x00100020
TRANSFER_SYNTAX: Final = 0x00020010

_SHORT: Final = struct.Struct("<HH2sH")
_LONG: Final = struct.Struct("<HH2sHL")
_LONG_VRS: Final = frozenset(vr.encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)
_READ_VRS: Final = frozenset(vr.encode("ascii") for vr in [*MEMO_VRS, "UN"])
"""The VRs read here: the memo's, and UN (never memoised: processed on every instance;
an instance whose output keeps one takes the full path)."""

BURNED_IN_TAGS: Final = frozenset({0x00280301, SOP_CLASS, 0x00080060, 0x00080064})
"""What :func:`~aifi_app.pseudonymise.burned_in.burned_in_risk` reads: Burned In
Annotation, SOP Class, Modality, Conversion Type (their outcome is kept per context)."""
_CONTEXT_TAGS: Final = frozenset({SOP_CLASS, PATIENT_ID, CHARSET})

RawElement = tuple[int, bytes, bytes]
"""(tag, VR, value bytes) as read."""


@dataclass(frozen=True)
class RawHeader:
    """A file's header as read: its data set elements up to Pixel Data, in order."""

    transfer_syntax: bytes
    elements: list[RawElement]
    end: int
    """Where the data set's header ends (Pixel Data starts, or the file ends)."""
    at_pixel_data: bool


def read_raw_header(data: bytes, whole_file: bool) -> RawHeader | None:
    """Walk the preamble, file meta and data set header in ``data`` (the file's first
    bytes; ``whole_file``: all of it); None unless every element is plain explicit VR
    little endian (see the module)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    pos = 132
    size = len(data)
    syntax = None
    while pos + 8 <= size:  # the file meta: explicit VR little endian
        group, element, vr, length = _SHORT.unpack_from(data, pos)
        if group != 2:
            break
        if vr in _LONG_VRS:
            if pos + 12 > size:
                return None
            (length,) = struct.unpack_from("<L", data, pos + 8)
            pos += 12
        else:
            pos += 8
        if (group << 16) | element == TRANSFER_SYNTAX:
            syntax = data[pos : pos + length]
        pos += length
    if syntax is None or not _plain_syntax(syntax):
        return None
    elements: list[RawElement] = []
    previous = 0
    while pos + 8 <= size:
        group, element, vr, length = _SHORT.unpack_from(data, pos)
        tag = (group << 16) | element
        if tag >= FIRST_PIXEL_TAG:
            if tag != PIXEL_DATA:
                return None
            return RawHeader(syntax, elements, pos, True)
        if vr not in _READ_VRS or tag <= previous or element == 0 or group == 2:
            return None
        if vr in _LONG_VRS:
            if pos + 12 > size:
                return None
            (length,) = struct.unpack_from("<L", data, pos + 8)
            if length == UNDEFINED_LENGTH:
                return None
            start = pos + 12
        else:
            start = pos + 8
        end = start + length
        if end > size:
            return None
        elements.append((tag, vr, data[start:end]))
        previous = tag
        pos = end
    if not whole_file or pos != size:
        return None
    return RawHeader(syntax, elements, pos, False)


def _plain_syntax(raw: bytes) -> bool:
    try:
        syntax = UID(raw.decode("ascii").rstrip("\0 "))
    except UnicodeDecodeError:
        return False
    return bool(
        syntax.is_transfer_syntax
        and not syntax.is_implicit_VR
        and syntax.is_little_endian
        and not syntax.is_deflated
    )


def fast_key(pseudonymiser: Pseudonymiser, header: RawHeader) -> ContextKey:
    """The raw bytes that decide an instance's memo context (see
    :func:`~aifi_app.pseudonymise.element_memo.context_key`): the transfer syntax, SOP
    Class, Patient ID, character set and private creators, as read."""
    facts: list[object] = [pseudonymiser.memo_identity, header.transfer_syntax]
    for tag, vr, value in header.elements:
        if tag in _CONTEXT_TAGS or ((tag >> 16) % 2 == 1 and 0x10 <= (tag & 0xFFFF) <= 0xFF):
            facts.append((tag, vr, value))
    return tuple(facts)


@dataclass
class InstancePlan:
    """What the fast path writes and records for one instance."""

    meta: bytes
    """The output's file meta as written (group length first)."""
    body: bytes
    """The output's data set up to Pixel Data, as written."""
    labels: Counter[str]
    mappings: list[Mapping]
    looked_up: list[ElementKey]
    """The elements looked up in the memo (its statistics, as the full path keeps them)."""
    stores: list[tuple[ElementKey, Outcome]]
    context: MemoContext

    def apply(self, pseudonymiser: Pseudonymiser, counts: Counter[str] | None) -> None:
        """Record the plan: memo outcomes, counts and mappings (each reported once)."""
        for key in self.looked_up:
            self.context.outcome(key)
        for key, outcome in self.stores:
            self.context.store(key, outcome)
        self.context.owner.fast_instances += 1
        if counts is not None:
            counts.update(self.labels)
        pseudonymiser.report_mappings(self.mappings)


def plan_instance(
    pseudonymiser: Pseudonymiser, header: RawHeader, memo: ElementMemo
) -> InstancePlan | None:
    """The output of an instance whose context the memo knows, or None (full path).

    Raises :class:`~aifi_app.pseudonymise.burned_in.BurnedInAnnotationRefused` as the
    full path does; any other failure gives None (the full path then reports it).
    """
    if memo.size > MAX_ENTRIES:
        return None  # the full path empties the memo
    context = memo.fast_contexts.get(fast_key(pseudonymiser, header))
    if context is None:
        return None
    burned_in_key = tuple((t, vr, v) for t, vr, v in header.elements if t in BURNED_IN_TAGS)
    if burned_in_key not in context.burned_in_passed:
        try:
            check_burned_in(_source_dataset(header, None), pseudonymiser.burned_in)
        except BurnedInAnnotationRefused:
            raise
        except Exception:
            return None
        context.burned_in_passed.add(burned_in_key)
    try:
        return _plan(pseudonymiser, header, context)
    except Exception:
        return None


def _plan(
    pseudonymiser: Pseudonymiser, header: RawHeader, context: MemoContext
) -> InstancePlan | None:
    pieces: list[tuple[int, bytes]] = []
    out_raw: dict[int, RawDataElement] = {}
    labels: Counter[str] = Counter()
    mappings: list[Mapping] = []
    # per element: its outcome, or what it needs (its key, or None: not memoised)
    steps: list[tuple[int, Outcome | None, ElementKey | None]] = []
    key: ElementKey | None
    todo: list[BaseTag] = []
    tags = context.tags
    outcomes = context.outcomes
    for tag, vr_bytes, value in header.elements:
        if tag in DEIDENTIFICATION_TAGS:
            return None
        vr = vr_bytes.decode("ascii")
        stats = tags.get(tag)
        if vr == "UN" or (
            stats is not None and not stats.hits and stats.misses >= MISSES_BEFORE_GIVING_UP
        ):
            # not memoised: UN, and a value of its own in every instance (SOP Instance UID)
            steps.append((tag, None, None))
            todo.append(BaseTag(tag))
            continue
        key = (tag, vr, value)
        outcome = outcomes.get(key)
        steps.append((tag, outcome, key))
        if outcome is None:
            todo.append(BaseTag(tag))
    # the elements processed, and those they read: SOP Class, Patient ID, private creators
    source = _source_dataset(header, {int(t) for t in todo})
    out = None
    results: list[tuple[Counter[str], list[Mapping]]] = []
    if todo:
        facts = context.run_facts if isinstance(context.run_facts, RunFacts) else None
        out, results, context.run_facts = pseudonymiser.process_elements(source, todo, facts)
        _encoded_like(out, source, processed_charset=BaseTag(CHARSET) in todo)
    processed = iter(results)
    stores: list[tuple[ElementKey, Outcome]] = []
    for tag, outcome, key in steps:
        if outcome is None:
            element_labels, element_mappings = next(processed)
            assert out is not None
            element = out.get_item(tag) if tag in out else None
            written = None
            if element is not None:
                if tag == CHARSET and isinstance(element, RawDataElement):
                    element = convert_raw_data_element(element)  # as the full path has it
                written = written_form(element, out, True)
                if written is None:
                    return None
            outcome = Outcome(written, tuple(element_labels.elements()), tuple(element_mappings))
            if key is not None:
                stores.append((key, outcome))
        labels.update(outcome.labels)
        mappings.extend(outcome.mappings)
        if outcome.element is not None:
            raw = outcome.element
            if not isinstance(raw.value, bytes) or raw.VR not in MEMO_VRS or raw.is_implicit_VR:
                return None
            out_raw[tag] = raw
            pieces.append((tag, _encoded(tag, str(raw.VR), raw.value)))
    charset_in = next((v for t, _, v in header.elements if t == CHARSET), None)
    charset_out = out_raw.get(CHARSET)
    if (charset_out.value if charset_out is not None else None) != charset_in:
        return None  # the writer would convert the elements
    if SOP_CLASS not in out_raw or SOP_INSTANCE not in out_raw:
        return None  # not a complete instance: dcmwrite's path
    pieces.extend(_deidentification_pieces(pseudonymiser, source))
    pieces.sort()
    meta = _meta_bytes(source, out_raw[SOP_CLASS], out_raw[SOP_INSTANCE], header.transfer_syntax)
    if meta is None:
        return None
    body = b"".join(piece for _, piece in pieces)
    looked_up = [key for _, _, key in steps if key is not None]
    return InstancePlan(meta, body, labels, mappings, looked_up, stores, context)


def _source_dataset(header: RawHeader, only: set[int] | None) -> Dataset:
    """The header as pydicom reads it (raw elements, its encoding, its file meta): all of
    it, or ``only`` those elements, the context's (SOP Class, Patient ID, character set,
    private creators) and those the burned-in check reads."""
    elements: dict[BaseTag, DataElement | RawDataElement] = {
        BaseTag(tag): _raw(tag, vr, value)
        for tag, vr, value in header.elements
        if only is None
        or tag in only
        or tag in _CONTEXT_TAGS
        or tag in BURNED_IN_TAGS
        or ((tag >> 16) % 2 == 1 and 0x10 <= (tag & 0xFFFF) <= 0xFF)
    }
    source = Dataset(elements)
    encoding: str | list[str] = default_encoding
    charset = elements.get(BaseTag(CHARSET))
    if isinstance(charset, RawDataElement):
        encoding = convert_encodings(convert_raw_data_element(charset).value)
    source.set_original_encoding(False, True, encoding)
    meta = FileMetaDataset()
    meta[TRANSFER_SYNTAX] = _raw(TRANSFER_SYNTAX, b"UI", header.transfer_syntax)
    source.file_meta = meta
    return source


def _raw(tag: int, vr: bytes, value: bytes) -> RawDataElement:
    """A raw element as pydicom's reader makes it (explicit VR little endian)."""
    return RawDataElement(
        BaseTag(tag), vr.decode("ascii"), len(value), value, 0, False, True, True, False
    )


def _encoded_like(out: Dataset, source: Dataset, processed_charset: bool) -> None:
    """Give ``out`` (the processed elements) the output's character set and encoding, as
    the full path's output has them when it is written: the input's character set where
    the memo gave it (kept as read), else what processing it gave."""
    charset = source.get_item(BaseTag(CHARSET))
    if charset is not None and not processed_charset:
        out[CHARSET] = charset
    out.set_original_encoding(False, True, source.original_character_set)


def _encoded(tag: int, vr: str, value: bytes) -> bytes:
    if vr in EXPLICIT_VR_LENGTH_32:
        return _LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode("ascii"), 0, len(value)) + value
    return _SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode("ascii"), len(value)) + value


_DEIDENTIFICATION_CACHE: dict[tuple[object, ...], list[tuple[int, bytes]]] = {}


def _deidentification_pieces(
    pseudonymiser: Pseudonymiser, source: Dataset
) -> list[tuple[int, bytes]]:
    """The de-identification attributes as written in the source's character set."""
    charset = source.get("SpecificCharacterSet", default_encoding)
    key = (pseudonymiser.memo_identity, repr(charset))
    found = _DEIDENTIFICATION_CACHE.get(key)
    if found is None:
        found = []
        for element in pseudonymiser.deidentification_elements():
            buffer = DicomBytesIO()
            buffer.is_little_endian = True
            buffer.is_implicit_VR = False
            write_data_element(buffer, element, charset)
            found.append((int(element.tag), buffer.getvalue()))
        if len(_DEIDENTIFICATION_CACHE) > 64:
            _DEIDENTIFICATION_CACHE.clear()
        _DEIDENTIFICATION_CACHE[key] = found
    return found


_META_CACHE: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
_META_TAGS: Final = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013)


def _meta_bytes(
    source: Dataset, sop_class: RawDataElement, sop_instance: RawDataElement, syntax: bytes
) -> bytes | None:
    """The file meta of :func:`~aifi_app.pseudonymise.element_copy.new_file_meta` as
    ``batch`` writes it; the elements but Media Storage SOP Instance UID kept per SOP Class
    and transfer syntax. None when the output's SOP Class or Instance UID is empty."""
    uids = Dataset()
    uids[SOP_INSTANCE] = sop_instance
    instance = uids.get("SOPInstanceUID")
    if not instance or not isinstance(sop_class.value, bytes):
        return None
    key = (syntax, sop_class.value)
    found = _META_CACHE.get(key)
    if found is None:
        uids[SOP_CLASS] = sop_class
        sop_class_uid = uids.get("SOPClassUID")
        if not sop_class_uid:
            return None
        meta = new_file_meta(source, sop_class_uid, str(instance))
        if tuple(int(element.tag) for element in meta) != _META_TAGS:
            return None
        pieces = [_written(meta.get_item(tag)) for tag in _META_TAGS]
        found = (pieces[0] + pieces[1], b"".join(pieces[3:]))
        if len(_META_CACHE) > 64:
            _META_CACHE.clear()
        _META_CACHE[key] = found
    value = found[0] + _written_uid(0x00020003, str(instance)) + found[1]
    return struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(value)) + value


def _written_uid(tag: int, uid: str) -> bytes:
    """A UI element as pydicom writes it (padded with a NUL to an even length)."""
    if not uid.isascii() or "\\" in uid or len(uid) > 0xFFF0:
        return _written(DataElement(tag, "UI", uid))
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\0"
    return _SHORT.pack(tag >> 16, tag & 0xFFFF, b"UI", len(value)) + value


def _written(element: DataElement | RawDataElement | None) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    assert element is not None
    write_data_element(buffer, element, default_encoding)
    return buffer.getvalue()
