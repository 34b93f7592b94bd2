"""Re-identify result objects built in the pseudonymised space before they go to the PACS.

An algorithm's result (an SR, a segmentation, a secondary capture) references pseudonymised
instances and carries pseudonymised patient and study attributes. :func:`reidentify` maps
every pseudonymised UID back through the caller's mapping table and restores the Patient and
General Study identifying attributes from the original header, so the PACS files the result
with the right patient and study.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Final

from pydicom import Dataset
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName

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


class ReidentificationError(Exception):
    """Re-identification failed; the message names at most an element tag, never a value."""


def reidentify(ds: Dataset, original_for: OriginalLookup, original_header: Dataset) -> Dataset:
    """Return a re-identified copy of the result ``ds``; ``ds`` is not modified.

    Promises: every UI value, at any depth, for which ``original_for`` returns a UID is
    replaced by it, other UIDs (the result's own) are unchanged; the attributes of
    :data:`RESTORED_KEYWORDS` are copied from ``original_header`` (Type 2 ones left zero
    length, others removed, when the original lacks them); :data:`REMOVED_KEYWORDS` are
    absent; Specific Character Set can encode the restored values; file meta (if ``ds``
    has it) names the result's SOP Instance UID. Raises :class:`ReidentificationError`.
    """
    current = [0]
    try:
        out = _rebuild(ds, original_for, current)
        current[0] = 0
        _restore_identity(out, original_header)
        for keyword in REMOVED_KEYWORDS:
            if keyword in out:
                del out[keyword]
        if hasattr(ds, "file_meta"):
            out.file_meta = new_file_meta(ds, out.get("SOPClassUID"), out.get("SOPInstanceUID"))
        copy_encoding(ds, out)
    except Exception as exc:
        where = f" at element {BaseTag(current[0])}" if current[0] else ""
        raise ReidentificationError(
            f"re-identification failed{where} ({type(exc).__name__})"
        ) from None
    return out


def _rebuild(source: Dataset, original_for: OriginalLookup, current: list[int]) -> Dataset:
    out = Dataset()
    for tag in list(source.keys()):
        current[0] = tag
        raw = source.get_item(tag)
        if raw is None:
            continue
        vr = element_vr(raw)
        element = source[tag]
        if vr == "SQ":
            items = [_rebuild(item, original_for, current) for item in element.value]
            out.add(DataElement(tag, "SQ", Sequence(items)))
        elif vr == "UI":
            out.add(_mapped_uids(element, original_for))
        else:
            out.add(copy_element(element))
    return out


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
