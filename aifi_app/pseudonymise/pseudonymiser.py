"""Keyed, recursive DICOM PS3.15 Annex E pseudonymisation of whole instances.

:class:`Pseudonymiser` applies Table E.1-1 as resolved by :mod:`.actions` for the selected
options, the non-table and private policy of :mod:`.element_policy`, and these choices:

* **Keyed identifiers.** Patient ID (Z/D) always gets a keyed pseudonym "AIFI-" + 16 base32
  characters (HMAC of the Patient ID), and Patient's Name (Z) the same string, so that a
  vendor can tell patients apart and the same patient always gets the same pseudonym.
  Accession Number and Study ID (Z in the table) get a keyed pseudonym ("AIFI" + 12 base32
  characters, SH allows 16) when present instead of zero length. This is permitted: the
  value is not derived from identifying information in a way anyone without the key can
  reverse or link, and it keeps results traceable to their request. Clinical trial and
  specimen/container identifiers listed in :data:`KEYED_OTHER_ID_KEYWORDS` get keyed
  pseudonyms when their action is D. Other Patient IDs (and the sequence) are removed (X).
* **UIDs (U)** become ``2.25.<int>`` from HMAC-SHA256(secret, UID); well-known UIDs (in
  pydicom's UID dictionary: SOP Classes, Transfer Syntaxes, coding schemes ...) are kept.
* **Dates** under Modified Dates are shifted back by the same per-patient number of days
  (365..3650, keyed on the top-level Patient ID; instances without one share the offset of
  the empty ID) everywhere in the instance; times are kept; a value that cannot be parsed
  is removed.
* **Burned-in text**: an instance that may carry text in its pixels is refused unless the
  burned-in policy accepts it (:mod:`.burned_in`); pixel bytes are never decoded.
* **Sequences** with K, D or U keep their items and every item is processed with the same
  rules at any depth; Z gives an empty sequence, X removes it.

Every mapping created is reported through ``on_pseudonym(kind, original, pseudonym)``
(kinds "uid", "patient_id", "accession", "study_id", "other_id"), once per pseudonymise
call per (kind, original); the caller stores them for re-identification.

No original value is ever logged or put in an exception message: failures raise
:class:`PseudonymisationError` naming only the element tag.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pydicom import Dataset
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from aifi_app.pseudonymise.actions import Action, action_table
from aifi_app.pseudonymise.burned_in import (
    BurnedInAnnotationRefused,
    BurnedInPolicy,
    check_burned_in,
)
from aifi_app.pseudonymise.clean_descriptors import CLEANED_VRS, clean_value
from aifi_app.pseudonymise.date_shift import shift_da, shift_dt
from aifi_app.pseudonymise.dummy_values import MAX_LENGTH_BY_VR, dummy_value
from aifi_app.pseudonymise.element_copy import (
    copy_element,
    copy_encoding,
    element_vr,
    new_file_meta,
)
from aifi_app.pseudonymise.element_memo import (
    ElementKey,
    ElementMemo,
    MemoContext,
    Outcome,
    context_key,
    written_form,
)
from aifi_app.pseudonymise.element_policy import (
    is_numeric_private,
    kept_private_tags,
    non_table_action,
)
from aifi_app.pseudonymise.keyed_pseudonyms import date_offset_days, text_pseudonym, uid_pseudonym
from aifi_app.pseudonymise.profile_options import (
    BASIC_PROFILE,
    CODING_SCHEME,
    ProfileOption,
    sorted_options,
)
from aifi_app.pseudonymise.value_checks import malformed_text

PseudonymCallback = Callable[[str, str, str], None]
"""``on_pseudonym(kind, original, pseudonym)``."""
Mapping = tuple[str, str, str]
"""(kind, original, pseudonym), as reported."""

PATIENT_ID: Final = BaseTag(0x00100020)
PATIENT_NAME: Final = BaseTag(0x00100010)
ACCESSION_NUMBER: Final = BaseTag(0x00080050)
STUDY_ID: Final = BaseTag(0x00200010)

KEYED_TEXT_KINDS: Final[dict[int, str]] = {
    PATIENT_ID: "patient_id",
    ACCESSION_NUMBER: "accession",
    STUDY_ID: "study_id",
}
KEYED_OTHER_ID_KEYWORDS: Final = frozenset(
    {
        "ClinicalTrialSubjectID",
        "ClinicalTrialSubjectReadingID",
        "ClinicalTrialProtocolID",
        "ContainerIdentifier",
        "SpecimenIdentifier",
    }
)
"""Identifiers with action D that get a keyed "other_id" pseudonym instead of a dummy."""
_KEYED_OTHER_ID_TAGS: Final = frozenset(
    tag for keyword in KEYED_OTHER_ID_KEYWORDS if (tag := tag_for_keyword(keyword)) is not None
)

RAW_COPY_VRS: Final = frozenset(
    {
        "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD",
        "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SS", "ST", "SV", "TM", "UC", "UI", "UL",
        "UR", "US", "UT", "UV",
    }
)  # fmt: skip
"""VRs whose kept raw elements (explicit VR only: an implicit-VR element may be written in
another encoding than it was read) are copied without decoding: never SQ (items must be
processed), UN (may hide a sequence) or an ambiguous VR (resolved by conversion)."""

MAX_SEQUENCE_DEPTH: Final = 64
"""Deeper nesting is refused: real objects (SR trees included) stay far below it, and a
data set nested thousands deep exhausted the stack and memory when written (found by the
fuzz campaign in ``tests/pseudonymise/test_fuzz_pseudonymiser.py``)."""

METHOD_DESCRIPTION: Final = "AIFI Appliance PS3.15 Annex E Basic Profile"
DEIDENTIFICATION_TAGS: Final = frozenset({0x00120062, 0x00120063, 0x00120064, 0x00280303})
"""The elements every output gets from :meth:`Pseudonymiser._add_deidentification_attributes`."""


class PseudonymisationError(Exception):
    """Pseudonymisation of an instance failed; the message names at most an element tag."""


class Pseudonymiser:
    """Pseudonymise instances with a secret key and a fixed set of profile options.

    Thread-safe for concurrent :meth:`pseudonymise` calls (per-call state is local); the
    lookup tables are built once in the constructor.
    """

    def __init__(
        self,
        secret: bytes,
        options: frozenset[ProfileOption],
        on_pseudonym: PseudonymCallback | None = None,
        burned_in: BurnedInPolicy = BurnedInPolicy.REFUSE,
    ) -> None:
        if not secret:
            raise ValueError("the pseudonymisation secret must not be empty")
        self._secret: Final = bytes(secret)
        self.options: Final = frozenset(options)
        self._on_pseudonym = on_pseudonym
        self.burned_in: Final = burned_in
        self._table: Final = action_table(self.options)
        self._non_table: dict[tuple[int, str], Action] = {}
        selected = sorted_options(self.options)
        self._method_codes: Final = [BASIC_PROFILE] + [option.code for option in selected]
        self._deidentification_values: Final = (
            (0x00120062, "CS", "YES"),  # Patient Identity Removed
            (0x00120063, "LO", [METHOD_DESCRIPTION] + [o.code.meaning for o in selected]),
            (0x00280303, "CS", _temporal_information(self.options)),
        )
        self._memo_identity: Final = (id(self), self._secret, self.options, self.burned_in)
        """Keys a memo's contexts: a memo shared by two pseudonymisers keeps their
        outcomes apart."""

    def uid_pseudonym(self, uid: str) -> str:
        """Return the keyed pseudonym of ``uid`` (well-known UIDs returned unchanged)."""
        uid = uid.strip("\0 ")
        return uid if not uid or uid in UID_dictionary else uid_pseudonym(self._secret, uid)

    def patient_pseudonym(self, patient_id: str) -> str:
        """Return the keyed pseudonym used as Patient ID and Patient's Name."""
        return text_pseudonym(self._secret, "patient_id", patient_id, 64)

    def date_offset_days(self, patient_id: str) -> int:
        """Return the number of days this patient's dates are shifted back (365..3650)."""
        return date_offset_days(self._secret, patient_id)

    def pseudonymise(
        self,
        ds: Dataset,
        counts: Counter[str] | None = None,
        memo: ElementMemo | None = None,
    ) -> Dataset:
        """Return a new, pseudonymised dataset (with new file meta); ``ds`` is not modified.

        ``memo`` (for a dataset just read from a file, none of its elements accessed yet):
        top-level elements met before in the same context take their earlier outcome
        instead of being processed again; the written bytes are the same (see
        :mod:`.element_memo`).

        When ``counts`` is given, one count per element handled is added under its action
        (``"keep"``, ``"remove"``, ``"replace_uid"`` ...) or category (``"private removed"``,
        ``"keyed identifier"``); no value is recorded.

        Raises :class:`BurnedInAnnotationRefused` (reason in words) when ``ds`` may carry
        burned-in text and the burned-in policy refuses it (see :mod:`.burned_in`), and
        :class:`PseudonymisationError` (naming only an element tag) on any other failure.
        """
        context = None
        snapshot: dict[BaseTag, DataElement | RawDataElement] = {}
        if memo is not None:
            meta = getattr(ds, "file_meta", None)
            key = context_key(ds, None if meta is None else meta.get("TransferSyntaxUID"))
            if key is not None:
                context = memo.context((self._memo_identity, *key))
                # the elements as read, before anything here converts them
                snapshot = {tag: ds.get_item(tag) for tag in list(ds.keys())}
            memo.last_context = context
        try:
            check_burned_in(ds, self.burned_in)
        except BurnedInAnnotationRefused:
            raise
        except Exception as exc:  # a malformed header (found by the fuzz campaign)
            raise PseudonymisationError(
                f"pseudonymisation failed reading the header ({type(exc).__name__})"
            ) from None
        run = _Run(self, ds, counts)
        if context is not None:
            run.use_memo(context, snapshot, bool(ds.original_encoding[1]))
        try:
            out = run.dataset(ds)
            run.current_tag = 0
            self._add_deidentification_attributes(out)
            copy_encoding(ds, out)
            run.remember(out)  # before the file meta converts SOP Class and Instance UIDs
            out.file_meta = new_file_meta(ds, out.get("SOPClassUID"), out.get("SOPInstanceUID"))
        except Exception as exc:
            where = f" at element {BaseTag(run.current_tag)}" if run.current_tag else ""
            raise PseudonymisationError(
                f"pseudonymisation failed{where} ({type(exc).__name__})"
            ) from None
        return out

    @property
    def memo_identity(self) -> tuple[object, ...]:
        """What of this pseudonymiser decides an element's outcome (part of a memo key)."""
        return self._memo_identity

    def process_elements(
        self, source: Dataset, tags: list[BaseTag], facts: RunFacts | None = None
    ) -> tuple[Dataset, list[tuple[Counter[str], list[Mapping]]], RunFacts]:
        """Process the top-level elements ``tags`` of ``source`` as :meth:`pseudonymise`
        does, into a new data set, reporting nothing; per element the counts it added and
        the mappings it made, in order (for the memo's fast path, :mod:`.memo_fast_path`).
        ``source``: the header's elements that these read besides their own (SOP Class,
        Patient ID, private creators); ``facts``: what an earlier call of the same memo
        context returned (the same SOP Class and Patient ID)."""
        run = _Run(self, source, Counter(), facts)
        run.on_pseudonym = None
        out = Dataset()
        private_kept = run._private_kept(source)
        results: list[tuple[Counter[str], list[Mapping]]] = []
        for tag in tags:
            run.current_tag = tag
            labels: Counter[str] = Counter()
            mappings: list[Mapping] = []
            run.counts, run.captured = labels, mappings
            raw = source.get_item(tag)
            if raw is not None:
                run._element(source, tag, raw, private_kept, out)
            results.append((labels, mappings))
        return out, results, RunFacts(run.lookup, run.patient_id, run.offset_days)

    def report_mappings(self, mappings: list[Mapping]) -> None:
        """Report ``mappings`` in order, each (kind, original) once, as one
        :meth:`pseudonymise` call reports them."""
        callback = self._on_pseudonym
        if callback is None:
            return
        reported: set[tuple[str, str]] = set()
        for kind, original, pseudonym in mappings:
            if (kind, original) not in reported:
                reported.add((kind, original))
                callback(kind, original, pseudonym)

    def deidentification_elements(self) -> list[DataElement]:
        """The elements every output gets (:data:`DEIDENTIFICATION_TAGS`), in tag order."""
        out = Dataset()
        self._add_deidentification_attributes(out)
        return [out[tag] for tag in sorted(out.keys())]

    def _non_table_action(self, tag: int, vr: str) -> Action:
        key = (tag, vr)
        action = self._non_table.get(key)
        if action is None:
            action = non_table_action(tag, vr, self.options)
            self._non_table[key] = action
        return action

    def _add_deidentification_attributes(self, out: Dataset) -> None:
        for tag, vr, value in self._deidentification_values:
            out.add(DataElement(tag, vr, value))
        items = []
        for code_value, meaning in self._method_codes:
            item = Dataset()
            item.add(DataElement(0x00080100, "SH", code_value))
            item.add(DataElement(0x00080102, "SH", CODING_SCHEME))
            item.add(DataElement(0x00080104, "LO", meaning))
            items.append(item)
        out.add(DataElement(0x00120064, "SQ", Sequence(items)))


def _temporal_information(options: frozenset[ProfileOption]) -> str:
    """Longitudinal Temporal Information Modified (0028,0303) for the selected options."""
    if ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in options:
        return "MODIFIED"
    if ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES in options:
        return "UNMODIFIED"
    return "REMOVED"


@dataclass(frozen=True)
class RunFacts:
    """What a pseudonymise call derives from the SOP Class and Patient ID."""

    lookup: dict[int, Action]
    patient_id: str
    offset_days: int


class _Run:
    """State of one pseudonymise call: SOP Class lookup, patient offset, reported mappings."""

    def __init__(
        self,
        owner: Pseudonymiser,
        ds: Dataset,
        counts: Counter[str] | None,
        facts: RunFacts | None = None,
    ) -> None:
        self.owner = owner
        self.counts = counts
        self.current_tag = 0
        self.depth = 0
        self.reported: set[tuple[str, str]] = set()
        if facts is None:
            sop_class = ds.get("SOPClassUID")
            lookup = owner._table.for_sop_class(str(sop_class) if sop_class else None)
            patient_id = ds.get("PatientID")
            patient = str(patient_id) if isinstance(patient_id, str) else ""
            facts = RunFacts(lookup, patient, owner.date_offset_days(patient))
        self.lookup = facts.lookup
        self.patient_id = facts.patient_id
        self.offset_days = facts.offset_days
        self.memo: MemoContext | None = None
        self.snapshot: dict[BaseTag, DataElement | RawDataElement] = {}
        self.little_endian = True
        self.captured: list[Mapping] | None = None
        self.on_pseudonym: PseudonymCallback | None = owner._on_pseudonym
        self.pending: list[tuple[ElementKey, BaseTag, Counter[str], list[Mapping]]] = []

    # --- the memo (see .element_memo) -------------------------------------------------------

    def use_memo(
        self,
        memo: MemoContext,
        snapshot: dict[BaseTag, DataElement | RawDataElement],
        little_endian: bool,
    ) -> None:
        self.memo = memo
        self.snapshot = snapshot
        self.little_endian = little_endian

    def _replay(self, tag: BaseTag, outcome: Outcome, out: Dataset) -> None:
        if outcome.element is not None:
            out[tag] = outcome.element
        if self.counts is not None:
            self.counts.update(outcome.labels)
        for mapping in outcome.mappings:
            self._report(*mapping)

    def remember(self, out: Dataset) -> None:
        """Keep the outcomes of the elements processed in this call (``out`` complete)."""
        if self.memo is None:
            return
        for key, tag, labels, mappings in self.pending:
            if tag in DEIDENTIFICATION_TAGS:
                continue  # replaced by ours, whatever it was
            element = out.get_item(tag) if tag in out else None
            written = None
            if element is not None:
                written = written_form(element, out, self.little_endian)
                if written is None:
                    continue  # not memoisable: processed on every instance
            self.memo.store(key, Outcome(written, tuple(labels.elements()), tuple(mappings)))

    # --- mappings -------------------------------------------------------------------------

    def _report(self, kind: str, original: str, pseudonym: str) -> None:
        if self.captured is not None:
            self.captured.append((kind, original, pseudonym))
        callback = self.on_pseudonym
        if callback is not None and (kind, original) not in self.reported:
            self.reported.add((kind, original))
            callback(kind, original, pseudonym)

    def uid(self, original: str) -> str:
        original = original.strip("\0 ")
        if not original or original in UID_dictionary:
            return original
        pseudonym = uid_pseudonym(self.owner._secret, original)
        self._report("uid", original, pseudonym)
        return pseudonym

    def text(self, kind: str, original: str, max_length: int) -> str:
        pseudonym = text_pseudonym(self.owner._secret, kind, original, max_length)
        self._report(kind, original, pseudonym)
        return pseudonym

    # --- datasets -------------------------------------------------------------------------

    def dataset(self, source: Dataset) -> Dataset:
        out = Dataset()
        private_kept = self._private_kept(source)
        memo = self.memo if self.depth == 0 else None
        for tag in list(source.keys()):
            self.current_tag = tag
            raw = source.get_item(tag)
            if raw is None:
                continue
            read = self.snapshot.get(tag) if memo is not None else None
            key = memo.element_key(read) if memo and isinstance(read, RawDataElement) else None
            if key is None:
                self._element(source, tag, raw, private_kept, out)
                continue
            assert memo is not None
            outcome = memo.outcome(key)
            if outcome is not None:
                self._replay(tag, outcome, out)
                continue
            counts, self.counts = self.counts, Counter()
            self.captured = []
            try:
                self._element(source, tag, raw, private_kept, out)
                self.pending.append((key, tag, self.counts, self.captured))
            finally:
                labels, self.counts, self.captured = self.counts, counts, None
            if counts is not None:
                counts.update(labels)
        return out

    def _element(
        self,
        source: Dataset,
        tag: BaseTag,
        raw: DataElement | RawDataElement,
        private_kept: frozenset[int],
        out: Dataset,
    ) -> None:
        """Process one element of ``source`` into ``out``."""
        if tag.is_private:
            kept = tag in private_kept and self._safe_private(source, tag)
            if kept:
                out.add(copy_element(source[tag]))
            if self.counts is not None:
                self.counts["private kept" if kept else "private removed"] += 1
            return
        vr = element_vr(raw)
        action = self.lookup.get(tag)
        if action is None:
            action = self.owner._table.wildcard_action(tag)
        if action is None:
            action = self.owner._non_table_action(tag, vr)
        new = self._keyed_identifier(source, tag, vr, action)
        label = "keyed identifier" if new is not None else action.name.lower()
        if new is None and action is Action.KEEP and malformed_text(raw, vr):
            # its value runs on into other elements' bytes: never copy it
            if self.counts is not None:
                self.counts["malformed removed"] += 1
            return
        if (
            new is None
            and action is Action.KEEP
            and isinstance(raw, RawDataElement)
            and raw.VR in RAW_COPY_VRS
            and tag not in KEYED_TEXT_KINDS
        ):
            # kept as read: written byte for byte, never decoded (same encoding)
            out[tag] = raw
            if self.counts is not None:
                self.counts[label] += 1
            return
        if new is None and action is not Action.REMOVE and tag not in KEYED_TEXT_KINDS:
            element = source[tag]  # converted: ambiguous VRs (US or SS ...) resolved
            new = self._apply(action, element, str(element.VR))
        if new is not None:
            out.add(new)
        elif self.counts is not None:
            label = "remove"
        if self.counts is not None:
            self.counts[label] += 1

    @staticmethod
    def _safe_private(source: Dataset, tag: BaseTag) -> bool:
        if 0x10 <= tag.element <= 0xFF:
            return True  # the private creator of a block with a kept element
        element = source[tag]
        return is_numeric_private(str(element.VR), element.value)

    def _private_kept(self, source: Dataset) -> frozenset[int]:
        if ProfileOption.RETAIN_SAFE_PRIVATE not in self.owner.options:
            return frozenset()
        creators: dict[tuple[int, int], str] = {}
        for tag in list(source.keys()):  # Dataset iteration yields elements, not tags
            if tag.is_private and 0x10 <= tag.element <= 0xFF:
                value = source[tag].value
                if isinstance(value, str):
                    creators[(tag.group, tag.element)] = value
        return kept_private_tags(creators, self.owner.options)

    def _keyed_identifier(
        self, source: Dataset, tag: int, vr: str, action: Action
    ) -> DataElement | None:
        """Patient ID/Name, Accession Number, Study ID and other keyed IDs; else None.

        Patient's Name becomes the pseudonym of the Patient ID at the same level (zero
        length when there is none), whatever the name was.
        """
        if tag == PATIENT_NAME:
            patient_id = source.get(PATIENT_ID)
            value = patient_id.value if patient_id is not None else None
            if isinstance(value, str) and value.strip():
                # the pseudonym as the family name: a trailing '^' marks a one-component
                # person name (PS3.5 6.2.1.2), which receiving systems read unambiguously
                return DataElement(tag, "PN", self.text("patient_id", value, 63) + "^")
            return DataElement(tag, "PN", "")
        kind = KEYED_TEXT_KINDS.get(tag)
        if kind is None:
            if action is not Action.DUMMY or tag not in _KEYED_OTHER_ID_TAGS:
                return None
            kind = "other_id"
        value = source[tag].value
        if not isinstance(value, str) or not value.strip():
            return DataElement(tag, vr, "") if vr in MAX_LENGTH_BY_VR else None
        length = MAX_LENGTH_BY_VR.get(vr, 16)
        return DataElement(tag, vr, self.text(kind, value, length))

    # --- actions --------------------------------------------------------------------------

    def _apply(self, action: Action, element: DataElement, vr: str) -> DataElement | None:
        tag = element.tag
        if vr == "SQ":
            if action is Action.EMPTY:
                return DataElement(tag, "SQ", Sequence())
            self.depth += 1
            if self.depth > MAX_SEQUENCE_DEPTH:
                raise ValueError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH}")
            items = [self.dataset(item) for item in element.value]
            self.depth -= 1
            self.current_tag = tag
            return DataElement(tag, "SQ", Sequence(items))
        if action is Action.KEEP:
            return None if malformed_text(element, vr) else copy_element(element)
        if action is Action.EMPTY:
            return DataElement(tag, vr, empty_value_for_VR(vr))
        if action is Action.SHIFT_DATE:
            return self._shifted(element, vr)
        if action is Action.CLEAN_TEXT:
            if vr not in CLEANED_VRS:
                return None
            return DataElement(tag, vr, clean_value(element.value, vr))
        if action is Action.REPLACE_UID or (action is Action.DUMMY and vr == "UI"):
            return self._replaced_uids(element, vr)
        if action is Action.DUMMY:
            return DataElement(tag, vr, dummy_value(vr))
        return None

    def _replaced_uids(self, element: DataElement, vr: str) -> DataElement | None:
        if vr != "UI":
            return None
        value = element.value
        if value is None or value == "":
            return DataElement(element.tag, vr, value)
        if isinstance(value, str):
            return DataElement(element.tag, vr, self.uid(value))
        if isinstance(value, MultiValue | list) and all(isinstance(v, str) for v in value):
            return DataElement(element.tag, vr, [self.uid(v) for v in value])
        return None

    def _shifted(self, element: DataElement, vr: str) -> DataElement | None:
        if vr == "TM":
            return copy_element(element)
        if vr not in ("DA", "DT"):
            return None
        shift = shift_da if vr == "DA" else shift_dt
        value = element.value
        if value is None:
            return DataElement(element.tag, vr, None)
        values = [value] if isinstance(value, str) else list(value)
        shifted: list[str] = []
        for item in values:
            new = shift(item, self.offset_days) if isinstance(item, str) else None
            if new is None:
                return None
            shifted.append(new)
        return DataElement(element.tag, vr, shifted[0] if len(shifted) == 1 else shifted)
