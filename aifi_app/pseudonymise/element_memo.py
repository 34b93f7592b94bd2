"""A memo of pseudonymised header elements, for the instances of a series.

The instances of one series repeat most of their header byte for byte (patient, study,
series, equipment, geometry); only a few elements differ per instance (SOP Instance UID,
Instance Number, position). Pseudonymising an element is a function of its tag, VR and
value bytes and of a few facts of its instance: the SOP Class (the action table), the
Patient ID (Patient's Name and the date shift follow it), the private blocks kept, the
character set and the encoding. :class:`ElementMemo` keeps, for each such context, what a
top-level element became: its output as it is written (value bytes, a raw element), the
counts it added and the pseudonym mappings it made. An element met again in the same
context takes that result instead of being decoded, processed and encoded again; the
file's bytes are the same (``tests/pseudonymise/test_element_memo.py`` compares them on
the planted-PHI corpus and on CT series).

Only plain top-level elements are memoised: explicit VR, a defined length, a VR whose
bytes are written as read (never SQ, UN or an ambiguous VR); sequences and everything
else go through the pseudonymiser as before, on every instance. The burned-in check runs
on every instance. A tag that is never met twice with the same value (SOP Instance UID)
stops being memoised after a few tries, so that it costs nothing extra.

One memo per thread of work (it is not locked); its size is bounded (:data:`MAX_ENTRIES`,
emptied when full).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pydicom import Dataset
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

Mapping = tuple[str, str, str]

MAX_ENTRIES: Final = 2_000
"""Elements kept at most; the memo is emptied when it holds more. A series needs tens to
a few hundred (its shared elements, and each per-instance tag until it is given up: 53
for a sample CT series of 60 slices); the pre-pseudonymiser's memo lives as long as its
process, across studies, and at 20,000 it was part of a growth of the appliance by 3.6 MB
a CT (see :data:`aifi_app.pipeline.image_reader.MEMO_ENTRIES`)."""
MISSES_BEFORE_GIVING_UP: Final = 4
"""A tag missed this many times without a single hit is no longer memoised."""
UNDEFINED_LENGTH: Final = 0xFFFFFFFF


@dataclass(frozen=True)
class Outcome:
    """What one element became: its written form (None: removed), counts and mappings."""

    element: RawDataElement | None
    labels: tuple[str, ...]
    mappings: tuple[Mapping, ...]


ElementKey = tuple[int, str, bytes]
ContextKey = tuple[object, ...]


@dataclass
class _TagStats:
    hits: int = 0
    misses: int = 0


@dataclass
class MemoContext:
    """The outcomes of one context, and per tag how often they were found."""

    owner: ElementMemo
    outcomes: dict[ElementKey, Outcome] = field(default_factory=dict)
    tags: dict[int, _TagStats] = field(default_factory=dict)
    burned_in_passed: set[tuple[object, ...]] = field(default_factory=set)
    """The burned-in check's inputs that passed it (:mod:`.memo_fast_path`)."""
    run_facts: object = None
    """What the pseudonymiser derives from the context's SOP Class and Patient ID."""

    def element_key(self, raw: RawDataElement) -> ElementKey | None:
        """The key of a memoisable element, or None."""
        if raw.is_implicit_VR or raw.VR not in MEMO_VRS or raw.length == UNDEFINED_LENGTH:
            return None
        value = raw.value
        if not isinstance(value, bytes):
            return None
        stats = self.tags.get(raw.tag)
        if stats is not None and not stats.hits and stats.misses >= MISSES_BEFORE_GIVING_UP:
            return None  # a value of its own in every instance (SOP Instance UID)
        return (int(raw.tag), str(raw.VR), value)

    def outcome(self, key: ElementKey) -> Outcome | None:
        found = self.outcomes.get(key)
        stats = self.tags.get(key[0])
        if stats is None:
            stats = self.tags[key[0]] = _TagStats()
        if found is None:
            stats.misses += 1
        else:
            stats.hits += 1
        return found

    def store(self, key: ElementKey, outcome: Outcome) -> None:
        self.outcomes[key] = outcome
        self.owner.size += 1


@dataclass
class ElementMemo:
    """Pseudonymised elements by context and (tag, VR, value bytes); see the module."""

    contexts: dict[ContextKey, MemoContext] = field(default_factory=dict)
    size: int = 0
    fast_contexts: dict[ContextKey, MemoContext] = field(default_factory=dict)
    """The contexts by the raw bytes that decide them (:mod:`.memo_fast_path`)."""
    last_context: MemoContext | None = None
    fast_instances: int = 0
    """Instances written by the fast path (:mod:`.memo_fast_path`)."""
    """The context of the latest instance pseudonymised with this memo (None: not memoised)."""

    def context(self, key: ContextKey) -> MemoContext:
        """The outcomes of one context (made on first use)."""
        if self.size > MAX_ENTRIES:
            self.contexts.clear()
            self.fast_contexts.clear()
            self.size = 0
        found = self.contexts.get(key)
        if found is None:
            found = self.contexts[key] = MemoContext(self)
        return found


MEMO_VRS: Final = frozenset(
    {
        "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD",
        "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SS", "ST", "SV", "TM", "UC", "UI", "UL",
        "UR", "US", "UT", "UV",
    }
)  # fmt: skip
"""The VRs of elements that may be memoised: those whose bytes are written as read (the
pseudonymiser's raw-copy VRs): never SQ, UN or an ambiguous VR."""


def context_key(source: Dataset, transfer_syntax: object) -> ContextKey | None:
    """What besides its own bytes decides an element's outcome in ``source`` (read from a
    file, nothing converted yet), or None when its elements are not memoised (implicit VR,
    or an encoding that the writer would convert)."""
    is_implicit, is_little = source.original_encoding
    if is_implicit is not False or is_little is None or transfer_syntax is None:
        return None
    syntax = UID(str(transfer_syntax))
    if (
        not syntax.is_transfer_syntax
        or syntax.is_implicit_VR
        or syntax.is_little_endian != is_little
        or syntax.is_deflated
    ):
        return None
    facts: list[object] = [str(syntax), is_little, repr(source.original_character_set)]
    context_tags = [0x00080016, 0x00100020, 0x00080005]  # SOP Class, Patient ID, charset
    # the private creators decide which private elements are kept
    tags = list(source.keys())  # iterating a Dataset yields its elements, not tags
    context_tags += [t for t in tags if t.is_private and 0x10 <= t.element <= 0xFF]
    for tag in context_tags:
        raw = source.get_item(tag)
        if raw is None:
            facts.append(None)
        elif isinstance(raw, RawDataElement):
            facts.append((int(tag), raw.VR, raw.value))
        elif tag == 0x00080005:  # pydicom converts the character set as it reads
            facts.append((int(tag), raw.VR, repr(raw.value)))
        else:
            return None  # already converted: its read bytes are not known
    return tuple(facts)


def written_form(
    element: DataElement | RawDataElement, out: Dataset, little_endian: bool
) -> RawDataElement | None:
    """``element`` as the writer writes it into ``out`` (explicit VR), as a raw element
    whose value bytes are written as they are; None where that form would not be the
    same (a sequence, an undefined length, a value too long for its VR's length field),
    or when the writer would convert ``out``'s elements (its character set changed)."""
    if isinstance(element, RawDataElement):
        return element if not element.is_implicit_VR else None
    if element.VR not in MEMO_VRS or element.is_undefined_length:
        return None
    if out.original_character_set != out._character_set:
        return None
    buffer = DicomBytesIO()
    buffer.is_little_endian = little_endian
    buffer.is_implicit_VR = False
    write_data_element(buffer, element, out.get("SpecificCharacterSet", default_encoding))
    data = buffer.getvalue()
    vr = data[4:6].decode("ascii")
    if vr != element.VR:
        return None  # written as UN (too long)
    start = 12 if vr in EXPLICIT_VR_LENGTH_32 else 8
    value = data[start:]
    return RawDataElement(element.tag, vr, len(value), value, 0, False, little_endian, True, False)
