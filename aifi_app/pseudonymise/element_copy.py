"""Cheap element copies and file meta construction shared by pseudonymiser and re-identifier.

Copies share immutable values (str, bytes, numbers, person names) with the source: in
particular Pixel Data bytes are never copied, decoded or re-encoded. Mutable multi-values are
copied so that changing the output never changes the input.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from aifi_app import __version__

IMPLEMENTATION_VERSION_NAME: Final = f"AIFI_{__version__}"[:16]


def element_vr(raw: DataElement | RawDataElement) -> str:
    """Return the element's VR, from the dictionary for implicit-VR raw elements ("UN" if none)."""
    if raw.VR:
        return str(raw.VR)
    try:
        return str(dictionary_VR(raw.tag))
    except KeyError:
        return "UN"


def copy_element(element: DataElement) -> DataElement:
    """Return a new element with the same tag, VR and value, without converting the value.

    Immutable values are shared (Pixel Data bytes included); lists are deep-copied.
    Not for sequences (the callers rebuild their items).
    """
    value = element.value
    if isinstance(value, MultiValue):
        value = _copy_multivalue(value)
    elif isinstance(value, list):
        value = list(value)
    return DataElement(
        element.tag,
        element.VR,
        value,
        is_undefined_length=element.is_undefined_length,
        already_converted=True,
    )


def _copy_multivalue(value: MultiValue[Any]) -> MultiValue[Any]:
    """A new MultiValue with the same (immutable) items: 15x cheaper than deepcopy."""
    new = copy.copy(value)
    new._list = list(value._list)
    return new


def new_file_meta(
    source: Dataset, sop_class_uid: str | None, sop_instance_uid: str | None
) -> FileMetaDataset:
    """Return fresh file meta for an output instance.

    Keeps the source's Transfer Syntax UID (see :func:`_transfer_syntax` when it has none)
    and its Media Storage SOP Class UID when the dataset has no SOP Class UID; sets Media
    Storage SOP Instance UID to ``sop_instance_uid`` and names this implementation; drops
    everything else (source AE titles, private information).
    """
    old = getattr(source, "file_meta", None)
    meta = FileMetaDataset()
    meta.add(DataElement(0x00020001, "OB", b"\x00\x01"))
    if not sop_class_uid and old is not None:
        sop_class_uid = old.get("MediaStorageSOPClassUID")
    if sop_class_uid:
        meta.add(DataElement(0x00020002, "UI", str(sop_class_uid)))
    if sop_instance_uid:
        meta.add(DataElement(0x00020003, "UI", str(sop_instance_uid)))
    transfer_syntax = _transfer_syntax(source)
    if transfer_syntax:
        meta.add(DataElement(0x00020010, "UI", transfer_syntax))
    meta.add(DataElement(0x00020012, "UI", PYDICOM_IMPLEMENTATION_UID))
    meta.add(DataElement(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME))
    return meta


def _transfer_syntax(source: Dataset) -> str | None:
    """Return the source's Transfer Syntax UID, else the one matching how it was read.

    A dataset built in memory gets Explicit VR Little Endian, or None when its pixels are
    encapsulated (the compressed syntax cannot be known).
    """
    old = getattr(source, "file_meta", None)
    if old is not None and old.get("TransferSyntaxUID"):
        return str(old.TransferSyntaxUID)
    is_implicit, is_little = source.original_encoding
    if is_implicit is not None:
        if is_implicit:
            return ImplicitVRLittleEndian
        return ExplicitVRLittleEndian if is_little else ExplicitVRBigEndian
    pixels = source.get_item(0x7FE00010)
    if pixels is not None and pixels.is_undefined_length:
        return None
    return ExplicitVRLittleEndian


def copy_encoding(source: Dataset, target: Dataset) -> None:
    """Give ``target`` the original transfer-syntax encoding and character set of ``source``."""
    is_implicit, is_little = source.original_encoding
    target.set_original_encoding(is_implicit, is_little, source.original_character_set)
