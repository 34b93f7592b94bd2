"""Re-identify result objects built in the pseudonymised space before they go to the PACS.

An algorithm's result (an SR, a segmentation, a secondary capture) references pseudonymised
instances and carries pseudonymised patient and study attributes. :func:`reidentify` maps
every pseudonymised UID back through the caller's mapping table and restores the Patient and
General Study identifying attributes from the original header, so the PACS files the result
with the right patient and study.

With a :class:`ResultScope` (as the pipeline always passes) re-identification is strict:

* every UID, at any depth, must be well-known (pydicom's UID dictionary), in the mapping,
  or the result's own (:data:`OWN_UID_KEYWORDS` at the top level, :data:`OWN_UID_ANYWHERE`
  at any depth, when the mapping does not know them); anything else is refused with
  :class:`UnknownReferenceError`;
* every mapped Study Instance UID must be the job's study, and every mapped referenced
  instance must belong to it (``scope.study_of_instance``), else
  :class:`PatientMixError`; a referenced instance the store does not know is unknown;
* a UID the mapping does not know may be one of ``scope.sibling_uids``: the SOP Instance
  and Series Instance UIDs of the other result objects re-identified with this one (an SR
  referencing the SEG made for the same result); it is kept, not mapped (the sibling is
  checked itself, and is refused with it);
* Patient ID at any depth must be empty or the job's patient pseudonym, and Accession
  Number / Study ID must map back to the job's originals, else :class:`PatientMixError`;
* dates (DA, DT) other than the restored ones and the result's own creation dates
  (:data:`OWN_DATE_KEYWORDS`) are shifted forward by the patient's offset when the
  pseudonymiser shifted them back; one that cannot be parsed is refused.

The exceptions name an element tag and what was wrong, never a value.

:func:`reidentify` returns a re-identified copy; :func:`reidentify_in_place` changes the
result itself (the pipeline's way: a 400-frame SEG is not copied element by element),
after checking all of it, so a refused result is left as it was; both give the same
bytes. Each looks a UID up once however often the result names it (a SEG names its Frame
of Reference and Series in every frame).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pydicom import Dataset
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName

from aifi_app.pseudonymise.date_shift import shift_da, shift_dt
from aifi_app.pseudonymise.element_copy import (
    copy_element,
    copy_encoding,
    element_vr,
    new_file_meta,
)

OriginalLookup = Callable[[str], str | None]
"""``original_for(pseudonymised_uid)``: the original UID, or None for a UID of the result."""

RESTORED_KEYWORDS: Final = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "StudyDescription",
    "IssuerOfAccessionNumberSequence",
)
"""Patient and General Study attributes copied from the original header."""

TYPE_2_RESTORED: Final = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
    }
)
"""Restored attributes that are Type 2: left zero length when the original lacks them."""

REMOVED_KEYWORDS: Final = (
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified",
)
"""Attributes a re-identified result never carries."""

UNIVERSAL_CHARACTER_SET: Final = "ISO_IR 192"


OWN_UID_KEYWORDS: Final = frozenset({"SOPInstanceUID", "SeriesInstanceUID"})
"""Top-level UIDs that identify the result itself (made by the result builder)."""
OWN_UID_ANYWHERE: Final = frozenset(
    {
        "TrackingUID",
        "DeviceObserverUID",
        "InstanceCreatorUID",
        "UID",
        # a Segmentation's own dimension organisation and concatenation (highdicom makes them)
        "DimensionOrganizationUID",
        "ConcatenationUID",
    }
)
"""UIDs the result builder may make wherever they occur (SR observation context, tracking
identifiers as UIDREF content items). Like :data:`OWN_UID_KEYWORDS`, they are mapped back
when the mapping knows them and kept as the result's own otherwise."""
OWN_DATE_KEYWORDS: Final = frozenset(
    {
        "ContentDate",
        "InstanceCreationDate",
        "SeriesDate",
        "ObservationDateTime",
        "ContributionDateTime",
        # a presentation state's own creation date (GSPS)
        "PresentationCreationDate",
    }
)
"""Dates the result builder sets to the time the result was made (never shifted)."""
REFERENCE_KEYWORDS: Final = frozenset({"ReferencedSOPInstanceUID"})
"""UIDs that reference an instance, which must belong to the job's study."""

InstanceStudy = Callable[[str], str | None]
"""``study_of_instance(original_sop_instance_uid)``: its original Study Instance UID, or None."""


@dataclass(frozen=True)
class ResultScope:
    """What a result of one job may reference (originals, except ``patient_pseudonym``).

    ``date_offset_days`` is the number of days the pseudonymiser shifted this patient's dates
    back, or None when dates were not shifted.
    """

    study_uid: str
    patient_pseudonym: str
    accession_number: str
    study_id: str
    study_of_instance: InstanceStudy
    date_offset_days: int | None
    sibling_uids: frozenset[str] = frozenset()
    """The own SOP Instance and Series Instance UIDs of the results re-identified together
    with this one, which it may reference."""


class ReidentificationError(Exception):
    """Re-identification failed; the message names at most an element tag, never a value."""


class UnknownReferenceError(ReidentificationError):
    """The result references a UID or identifier the mapping does not know."""


class PatientMixError(ReidentificationError):
    """The result references another study or patient than the job's."""


def reidentify(
    ds: Dataset,
    original_for: OriginalLookup,
    original_header: Dataset,
    scope: ResultScope | None = None,
) -> Dataset:
    """Return a re-identified copy of the result ``ds``; ``ds`` is not modified.

    Promises: every UI value, at any depth, for which ``original_for`` returns a UID is
    replaced by it, other UIDs (the result's own) are unchanged; the attributes of
    :data:`RESTORED_KEYWORDS` are copied from ``original_header`` (Type 2 ones left zero
    length, others removed, when the original lacks them); :data:`REMOVED_KEYWORDS` are
    absent; Specific Character Set can encode the restored values; file meta (if ``ds``
    has it) names the result's SOP Instance UID. With ``scope``, the strict checks of the
    module docstring apply. Raises :class:`ReidentificationError` (or its subclasses
    :class:`UnknownReferenceError` and :class:`PatientMixError`).
    """
    current = [0]
    try:
        out = _Rebuild(original_for, scope, current).dataset(ds, top=True)
        current[0] = 0
        _finish(ds, out, original_header)
        copy_encoding(ds, out)
    except ReidentificationError:
        raise
    except Exception as exc:
        raise _failed(exc, current[0]) from None
    return out


def reidentify_in_place(
    ds: Dataset,
    original_for: OriginalLookup,
    original_header: Dataset,
    scope: ResultScope | None = None,
) -> Dataset:
    """Re-identify the result ``ds`` itself and return it: what :func:`reidentify` does,
    without copying the elements that do not change.

    Every element is checked before any is changed: when the checks refuse the result
    (:class:`ReidentificationError` and its subclasses, as :func:`reidentify` raises them),
    ``ds`` is left exactly as it was, so the caller can keep the pseudonymised result (in
    quarantine). The elements that change (UIs, checked identifiers and dates, the
    restored and removed attributes, file meta) are replaced by the same elements
    :func:`reidentify` puts in its copy, so written out both give the same bytes.
    """
    return check_reidentification(ds, original_for, original_header, scope).apply()


@dataclass(frozen=True, eq=False)
class CheckedResult:
    """A result that passed the checks, and the elements that re-identify it (from
    :func:`check_reidentification`); nothing is changed until :meth:`apply`."""

    ds: Dataset
    original_header: Dataset
    changes: tuple[tuple[Dataset, DataElement], ...]

    def apply(self) -> Dataset:
        """Re-identify ``ds`` in place (see :func:`reidentify_in_place`) and return it."""
        try:
            for target, element in self.changes:
                target[element.tag] = element
            _finish(self.ds, self.ds, self.original_header)
        except Exception as exc:  # pragma: no cover - assigning checked elements does not fail
            raise _failed(exc, 0) from None
        return self.ds


def check_reidentification(
    ds: Dataset,
    original_for: OriginalLookup,
    original_header: Dataset,
    scope: ResultScope | None = None,
) -> CheckedResult:
    """Check the result ``ds`` as :func:`reidentify` does and work out its re-identified
    elements, changing nothing; raises what :func:`reidentify` raises.

    Several results of one job are all checked before any is applied: a nested item that
    two of them share (the same Python object) is then re-identified once, from its
    pseudonymised values, and a refused result leaves the others pseudonymised too.
    """
    current = [0]
    try:
        changes = _Rebuild(original_for, scope, current).changes(ds, top=True)
    except ReidentificationError:
        raise
    except Exception as exc:
        raise _failed(exc, current[0]) from None
    return CheckedResult(ds, original_header, tuple(changes))


def _finish(source: Dataset, out: Dataset, original_header: Dataset) -> None:
    """Restore the identity, drop :data:`REMOVED_KEYWORDS`, renew the file meta."""
    _restore_identity(out, original_header)
    for keyword in REMOVED_KEYWORDS:
        if keyword in out:
            del out[keyword]
    if hasattr(source, "file_meta"):
        out.file_meta = new_file_meta(source, out.get("SOPClassUID"), out.get("SOPInstanceUID"))


def _failed(exc: Exception, tag: int) -> ReidentificationError:
    where = f" at element {BaseTag(tag)}" if tag else ""
    return ReidentificationError(f"re-identification failed{where} ({type(exc).__name__})")


class _Rebuild:
    """One re-identification: walks the result, maps UIDs, checks the scope."""

    def __init__(
        self, original_for: OriginalLookup, scope: ResultScope | None, current: list[int]
    ) -> None:
        self._lookup = original_for
        self.scope = scope
        self.current = current
        self._originals: dict[str, str | None] = {}
        self._studies: dict[str, str | None] = {}

    def original_for(self, uid: str) -> str | None:
        """The caller's lookup, once per UID."""
        try:
            return self._originals[uid]
        except KeyError:
            original = self._originals[uid] = self._lookup(uid)
            return original

    def study_of_instance(self, original_uid: str) -> str | None:
        """The scope's lookup, once per instance."""
        assert self.scope is not None
        try:
            return self._studies[original_uid]
        except KeyError:
            study = self._studies[original_uid] = self.scope.study_of_instance(original_uid)
            return study

    def _where(self, tag: int) -> str:
        return f"at element {BaseTag(tag)}"

    def dataset(self, source: Dataset, *, top: bool = False) -> Dataset:
        out = Dataset()
        for tag in list(source.keys()):
            self.current[0] = tag
            raw = source.get_item(tag)
            if raw is None:
                continue
            vr = element_vr(raw)
            element = source[tag]
            if vr == "SQ":
                items = [self.dataset(item) for item in element.value]
                self.current[0] = tag
                out.add(DataElement(tag, "SQ", Sequence(items)))
            elif vr == "UI":
                if self.scope is None:
                    out.add(_mapped_uids(element, self.original_for))
                else:
                    checked = self._checked_uids(element, top)
                    out.add(copy_element(element) if checked is None else checked)
            elif self.scope is not None and (vr in ("DA", "DT") or tag in _CHECKED_ID_TAGS):
                out.add(self._checked_value(element, vr, top))
            else:
                out.add(copy_element(element))
        return out

    def changes(self, source: Dataset, *, top: bool = False) -> list[tuple[Dataset, DataElement]]:
        """The elements of ``source``, at any depth, that :meth:`dataset` would not copy
        as they are, each with the dataset that holds it; changes nothing."""
        found: list[tuple[Dataset, DataElement]] = []
        self._changes(source, top, found)
        return found

    def _changes(
        self, source: Dataset, top: bool, found: list[tuple[Dataset, DataElement]]
    ) -> None:
        # the elements in any order (each is looked at alone), without sorting the tags
        # of each of a SEG's ~3,600 data sets as ``Dataset.elements()`` does
        checked = self.scope is not None
        for raw in list(source.values()):
            tag = raw.tag
            vr = element_vr(raw)
            if vr == "SQ":
                self.current[0] = tag
                for item in source[tag].value:
                    self._changes(item, False, found)
            elif vr == "UI":
                self.current[0] = tag
                element = source[tag]
                if checked:
                    change = self._checked_uids(element, top)
                    if change is not None:
                        found.append((source, change))
                else:
                    found.append((source, _mapped_uids(element, self.original_for)))
            elif checked and (vr in ("DA", "DT") or tag in _CHECKED_ID_TAGS):
                self.current[0] = tag
                found.append((source, self._checked_value(source[tag], vr, top)))

    def _checked_uids(self, element: DataElement, top: bool) -> DataElement | None:
        """The element re-identified, or None when it stays exactly as it is (a single
        value that maps to itself: a well-known UID, the result's own)."""
        tag = element.tag
        own = tag in _OWN_ANYWHERE_TAGS or (top and tag in _OWN_TOP_LEVEL_TAGS)
        value = element.value
        values = [value] if isinstance(value, str) else [str(v) for v in value or []]
        mapped = [
            v if own and self.original_for(v) is None else self._checked_uid(v, element)
            for v in (v.strip("\0 ") for v in values)
        ]
        if isinstance(value, str):
            if mapped[0] == value:
                return None
            return DataElement(tag, "UI", mapped[0])
        return DataElement(tag, "UI", mapped)

    def _checked_uid(self, uid: str, element: DataElement) -> str:
        assert self.scope is not None
        if not uid or uid in UID_dictionary:
            return uid
        original = self.original_for(uid)
        if original is None and uid in self.scope.sibling_uids:
            return uid
        where = self._where(element.tag)
        if original is None:
            raise UnknownReferenceError(f"result references a UID unknown to the mapping {where}")
        if element.tag == _STUDY_INSTANCE_UID and original != self.scope.study_uid:
            raise PatientMixError(f"result references another study {where}")
        if element.tag in _REFERENCE_TAGS:
            study = self.study_of_instance(original)
            if study is None:
                raise UnknownReferenceError(f"result references an instance not received {where}")
            if study != self.scope.study_uid:
                raise PatientMixError(f"result references an instance of another study {where}")
        return original

    def _checked_value(self, element: DataElement, vr: str, top: bool) -> DataElement:
        assert self.scope is not None
        scope = self.scope
        where = self._where(element.tag)
        value = element.value
        text = value.strip() if isinstance(value, str) else ""
        if element.tag in _CHECKED_ID_TAGS:
            if not isinstance(value, str | PersonName | None):
                raise PatientMixError(f"result carries a multi-valued identifier {where}")
            text = str(value or "").strip()
            if not text:
                return copy_element(element)
            if element.tag in (_PATIENT_ID, _PATIENT_NAME):
                if text.rstrip("^") != scope.patient_pseudonym:
                    raise PatientMixError(f"result names another patient {where}")
                return copy_element(element)
            expected = (
                scope.accession_number if element.tag == _ACCESSION_NUMBER else scope.study_id
            )
            original = self.original_for(text)
            if original is None:
                raise UnknownReferenceError(
                    f"result carries an identifier unknown to the mapping {where}"
                )
            if original != expected:
                raise PatientMixError(f"result carries another study's identifier {where}")
            return DataElement(element.tag, vr, original)
        if (
            scope.date_offset_days is None
            or element.keyword in OWN_DATE_KEYWORDS
            or (top and element.keyword in RESTORED_KEYWORDS)
        ):
            return copy_element(element)
        is_multi = isinstance(value, MultiValue | list)
        values = list(value) if is_multi else [value]
        shift = shift_da if vr == "DA" else shift_dt
        restored: list[str] = []
        for item in values:
            item_text = str(getattr(item, "original_string", None) or item or "").strip()
            if not item_text:
                restored.append("")
                continue
            new = shift(item_text, -scope.date_offset_days)
            if new is None:
                raise UnknownReferenceError(f"result carries a date that cannot be mapped {where}")
            restored.append(new)
        return DataElement(element.tag, vr, restored if is_multi else restored[0])


def _tags(keywords: frozenset[str]) -> frozenset[BaseTag]:
    found = {tag_for_keyword(keyword) for keyword in keywords}
    return frozenset(BaseTag(tag) for tag in found if tag is not None)


_OWN_ANYWHERE_TAGS: Final = _tags(OWN_UID_ANYWHERE)
_OWN_TOP_LEVEL_TAGS: Final = _tags(OWN_UID_KEYWORDS)
_REFERENCE_TAGS: Final = _tags(REFERENCE_KEYWORDS)
_STUDY_INSTANCE_UID: Final = BaseTag(0x0020000D)
_PATIENT_ID: Final = BaseTag(0x00100020)
_PATIENT_NAME: Final = BaseTag(0x00100010)
_ACCESSION_NUMBER: Final = BaseTag(0x00080050)
_STUDY_ID: Final = BaseTag(0x00200010)
_CHECKED_ID_TAGS: Final = frozenset({_PATIENT_ID, _PATIENT_NAME, _ACCESSION_NUMBER, _STUDY_ID})


def _original_uid(value: str, original_for: OriginalLookup) -> str:
    if not value or value in UID_dictionary:
        return value
    original = original_for(value)
    return value if original is None else original


def _mapped_uids(element: DataElement, original_for: OriginalLookup) -> DataElement:
    value = element.value
    if isinstance(value, str):
        return DataElement(element.tag, "UI", _original_uid(value, original_for))
    if isinstance(value, MultiValue | list):
        mapped = [_original_uid(str(v), original_for) for v in value]
        return DataElement(element.tag, "UI", mapped)
    return copy_element(element)


def _restore_identity(out: Dataset, original: Dataset) -> None:
    restored: list[DataElement] = []
    for keyword in RESTORED_KEYWORDS:
        tag = tag_for_keyword(keyword)
        assert tag is not None
        if keyword in original:
            element = copy.deepcopy(original[tag])
            out.add(element)
            restored.append(element)
        elif keyword in TYPE_2_RESTORED:
            vr = dictionary_VR(tag)
            out.add(DataElement(tag, vr, empty_value_for_VR(vr)))
        elif keyword in out:
            del out[keyword]
    if any(_has_non_ascii(element) for element in restored):
        _make_character_set_fit(out, original)


def _make_character_set_fit(out: Dataset, original: Dataset) -> None:
    """Choose a Specific Character Set that encodes both the restored and the result's text."""
    original_set = original.get("SpecificCharacterSet")
    result_set = out.get("SpecificCharacterSet")
    if not original_set:
        out.SpecificCharacterSet = UNIVERSAL_CHARACTER_SET
    elif not result_set or result_set in ("ISO_IR 6", ["ISO_IR 6"]) or result_set == original_set:
        out.SpecificCharacterSet = copy.deepcopy(original_set)
    elif result_set != UNIVERSAL_CHARACTER_SET:
        own_text = (
            element
            for element in out
            if element.keyword not in RESTORED_KEYWORDS and _has_non_ascii(element)
        )
        if any(own_text):
            out.SpecificCharacterSet = UNIVERSAL_CHARACTER_SET
        else:
            out.SpecificCharacterSet = copy.deepcopy(original_set)


def _has_non_ascii(element: DataElement) -> bool:
    value = element.value
    if element.VR == "SQ":
        return any(_has_non_ascii(item_element) for item in value for item_element in item)
    values = value if isinstance(value, MultiValue | list) else [value]
    for item in values:
        if isinstance(item, PersonName) and not str(item).isascii():
            return True
        if isinstance(item, str) and not item.isascii():
            return True
    return False
