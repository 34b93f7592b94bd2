"""Attribute types (1, 2 or 3) that decide how combined Table E.1-1 action codes resolve.

PS3.15 E.1.1 gives some attributes a choice of actions (X/Z, X/D, Z/D, X/Z/D, X/Z/U*): the
stricter action applies unless the IOD needs the attribute present (Type 2, then Z) or present
with a value (Type 1, then D or U). The appliance has no full module table, so this module
lists, for exactly the attributes that carry a combined code, the type they have in the IODs
the appliance receives or creates (CT, MR, CR, DX, MG, SC, their enhanced and legacy
converted forms, SR, KOS, presentation states and SEG). An attribute not listed here is
treated as Type 3 for that SOP Class, so it gets the strictest action of its code.

Where the type depends on the IOD, the entry names the SOP Classes in which it is Type 1 or
2; everywhere else it is Type 3. Type 1C/2C attributes are listed with their unconditional
type, because when they are present their condition is normally met.
"""

from __future__ import annotations

from typing import Final

from pydicom import uid

ENHANCED_IMAGE_CLASSES: Final = frozenset(
    {
        uid.EnhancedCTImageStorage,
        uid.EnhancedMRImageStorage,
        uid.EnhancedMRColorImageStorage,
        uid.LegacyConvertedEnhancedCTImageStorage,
        uid.LegacyConvertedEnhancedMRImageStorage,
        uid.EnhancedPETImageStorage,
        uid.EnhancedXAImageStorage,
        uid.BreastTomosynthesisImageStorage,
    }
)
SR_CLASSES: Final = frozenset(
    {
        uid.BasicTextSRStorage,
        uid.EnhancedSRStorage,
        uid.ComprehensiveSRStorage,
        uid.Comprehensive3DSRStorage,
        uid.ExtensibleSRStorage,
        uid.KeyObjectSelectionDocumentStorage,
        uid.XRayRadiationDoseSRStorage,
    }
)
PRESENTATION_STATE_CLASSES: Final = frozenset(
    {uid.GrayscaleSoftcopyPresentationStateStorage, uid.ColorSoftcopyPresentationStateStorage}
)
SEGMENTATION_CLASSES: Final = frozenset({uid.SegmentationStorage})

ALL_CLASSES: Final = None
"""Marker: the type holds in every IOD that contains the attribute."""

# keyword -> ((type, SOP Classes where it holds or ALL_CLASSES), ...), most demanding first.
REQUIRED_TYPES: Final[dict[str, tuple[tuple[int, frozenset[str] | None], ...]]] = {
    # Acquisition Context Module, Type 2 (DX, MG, IO, enhanced CT/MR ...).
    "AcquisitionContextSequence": ((2, ALL_CLASSES),),
    # Enhanced CT/MR/PET/XA Image Modules: Type 1C (ORIGINAL or MIXED images).
    "AcquisitionDateTime": ((1, ENHANCED_IMAGE_CLASSES),),
    # Enhanced General Equipment Module, Type 1 (enhanced images and SEG).
    "DeviceSerialNumber": ((1, ENHANCED_IMAGE_CLASSES | SEGMENTATION_CLASSES),),
    # SR Document General / Key Object Document / SEG: Type 1; General Image: Type 2C.
    "ContentDate": ((1, SR_CLASSES | SEGMENTATION_CLASSES), (2, ALL_CLASSES)),
    "ContentTime": ((1, SR_CLASSES | SEGMENTATION_CLASSES), (2, ALL_CLASSES)),
    # SR Document Content: Type 1C, when it differs from the Content Date/Time.
    "ObservationDateTime": ((1, SR_CLASSES),),
    # Presentation State Identification / Content Identification Macro: Type 2.
    "ContentCreatorName": ((2, ALL_CLASSES),),
    # Contrast/Bolus Module: Type 2.
    "ContrastBolusAgent": ((2, ALL_CLASSES),),
    # Patient Module: Type 2C (animals); when present the condition holds.
    "PatientSexNeutered": ((2, ALL_CLASSES),),
    # Patient Module: Type 2 (the pseudonymiser writes a keyed pseudonym anyway).
    "PatientID": ((2, ALL_CLASSES),),
    # Presentation State Relationship Module: Referenced Image Sequence Type 1.
    "ReferencedImageSequence": ((1, PRESENTATION_STATE_CLASSES),),
    # Derivation Image Functional Group in SEG: Source Image Sequence Type 1.
    "SourceImageSequence": ((1, SEGMENTATION_CLASSES),),
}


def required_type(keyword: str, sop_class_uid: str | None) -> int:
    """Return 1, 2 or 3: the type of ``keyword`` in the IOD of ``sop_class_uid``.

    Returns 3 (optional) for any attribute or SOP Class not covered by
    :data:`REQUIRED_TYPES`, so that the caller falls back to the strictest action.
    """
    for attribute_type, classes in REQUIRED_TYPES.get(keyword, ()):
        if classes is ALL_CLASSES or (sop_class_uid is not None and sop_class_uid in classes):
            return attribute_type
    return 3
