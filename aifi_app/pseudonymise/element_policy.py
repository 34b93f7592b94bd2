"""What happens to elements Table E.1-1 does not list: public non-table and private elements.

Table E.1-1 lists the attributes known to carry identifying information; DICOM has thousands
more, and new ones each edition. For a public element the table does not list, the appliance
decides by VR, with one explicit safe list:

* keyword in :data:`SAFE_NON_TABLE_KEYWORDS` -> kept (sequences: items processed);
* keyword in :data:`REMOVED_NON_TABLE_KEYWORDS` -> removed (encrypted original attributes and
  MACs over original values: opaque carriers of the identity being removed);
* group length (gggg,0000), Data Set Trailing Padding (FFFC,FFFC), repeating groups 50xx
  (curves) and 60xx (overlays), and the retired 7Fxx variable pixel data groups other than
  7FE0 -> removed, whatever the options:
  the table's C for curves and overlays under Clean Graphics would need their bitmaps and
  text cleaned, which the appliance cannot do;
* VR PN -> removed (names are identifying by nature);
* free-text and other human-readable VRs (LO, SH, LT, ST, UT, UC, UR, AE, AS) -> removed;
* DA and DT -> shifted under Modified Dates, kept under Full Dates, removed otherwise; TM
  kept under either dates option, removed otherwise;
* UI -> replaced by its keyed pseudonym (kept under Retain UIDs), unless its keyword is in
  :data:`WELL_KNOWN_UID_KEYWORDS` (class and coding-scheme UIDs, kept); well-known values in
  pydicom's UID dictionary are never replaced anyway;
* UN -> removed (its content cannot be inspected);
* SQ -> kept, and every item processed with these same rules;
* everything else (CS, numbers, AT, OB/OW/OF/OD/OL/OV bulk data such as Pixel Data and
  palettes) -> kept: these carry no free text.

Private elements (odd groups) are removed, unless Retain Safe Private is selected, the
(private creator, group, element byte) is in :data:`SAFE_PRIVATE_ATTRIBUTES`, and the value
is numeric (:func:`is_numeric_private`): a binary number VR, or DS/IS (or UN from an
implicit-VR file) holding only digits, signs, points, exponents, spaces and backslashes. So
even a wrong entry, or a vendor reusing a tag, can never carry text. The private creator
element of a block with a kept element is kept too.
"""

from __future__ import annotations

from typing import Final

from pydicom.datadict import keyword_for_tag

from aifi_app.pseudonymise.actions import Action
from aifi_app.pseudonymise.profile_options import ProfileOption

SAFE_NON_TABLE_KEYWORDS: Final = frozenset(
    {
        # Image interpretation: geometry, pixel description, acquisition technique.
        "ImageType",
        "Modality",
        "BodyPartExamined",
        "ViewPosition",
        "PixelSpacing",
        "ImagerPixelSpacing",
        "SliceThickness",
        "SpacingBetweenSlices",
        "SliceLocation",
        "ConvolutionKernel",
        "FilterType",
        "KVP",
        "XRayTubeCurrent",
        "Exposure",
        "ExposureTime",
        "ReconstructionDiameter",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "SamplesPerPixel",
        "PlanarConfiguration",
        "NumberOfFrames",
        "WindowCenter",
        "WindowWidth",
        "WindowCenterWidthExplanation",
        "VOILUTFunction",
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
        "PresentationLUTShape",
        "PatientOrientation",
        "PatientPosition",
        "Laterality",
        "ImageLaterality",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PositionReferenceIndicator",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        "PresentationIntentType",
        "ScanningSequence",
        "SequenceVariant",
        "ScanOptions",
        "MRAcquisitionType",
        "SequenceName",
        "ImagedNucleus",
        "MagneticFieldStrength",
        "RepetitionTime",
        "EchoTime",
        "InversionTime",
        "FlipAngle",
        # Equipment type (not identity: serial numbers and station names are in the table).
        "Manufacturer",
        "ManufacturerModelName",
        "SoftwareVersions",
        # Character set of the retained text (kept consistent with what is written).
        "SpecificCharacterSet",
        # Coded entries (Code Sequence Macro): needed to read any coded concept.
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "LongCodeValue",
        "URNCodeValue",
        "ContextIdentifier",
        "MappingResource",
        "MappingResourceName",
        # De-identification bookkeeping written by the pseudonymiser itself.
        "PatientIdentityRemoved",
        "LongitudinalTemporalInformationModified",
    }
)
"""Public keywords not in Table E.1-1 that are kept whatever their VR (no patient text)."""

REMOVED_NON_TABLE_KEYWORDS: Final = frozenset(
    {
        "EncryptedAttributesSequence",
        "EncryptedContent",
        "EncryptedContentTransferSyntaxUID",
        "MACParametersSequence",
    }
)
"""Public keywords not in Table E.1-1 that are always removed."""

WELL_KNOWN_UID_KEYWORDS: Final = frozenset(
    {
        "SOPClassUID",
        "ReferencedSOPClassUID",
        "ReferencedSOPClassUIDInFile",
        "MediaStorageSOPClassUID",
        "AffectedSOPClassUID",
        "RequestedSOPClassUID",
        "SOPClassesInStudy",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "CodingSchemeUID",
        "ContextUID",
        "MappingResourceUID",
        "ContextGroupExtensionCreatorUID",
        "PrivateInformationCreatorUID",
    }
)
"""UI keywords whose values name classes, syntaxes or coding schemes, never instances."""

SAFE_PRIVATE_ATTRIBUTES: Final[frozenset[tuple[str, int, int]]] = frozenset(
    {
        # Numeric acquisition and scaling parameters listed as safe private attributes in
        # DICOM PS3.15 Table E.3.10-1, cross-checked against the safe private list of the
        # PixelMed toolkit (com.pixelmed.dicom.ClinicalTrialsAttributes, D. Clunie). Only
        # numeric VRs are listed here; text entries of that table are deliberately left out.
        ("Philips PET Private Group", 0x7053, 0x00),  # DS SUV Factor
        ("Philips PET Private Group", 0x7053, 0x09),  # DS Activity Concentration Factor
        ("Philips MR Imaging DD 001", 0x2005, 0x0D),  # FL Scale Intercept
        ("Philips MR Imaging DD 001", 0x2005, 0x0E),  # FL Scale Slope
        ("PHILIPS MR IMAGING DD 001", 0x2005, 0x0D),  # (creator as some scanners write it)
        ("PHILIPS MR IMAGING DD 001", 0x2005, 0x0E),
        ("GEMS_ACQU_01", 0x0019, 0x23),  # DS Table Speed [mm/rotation]
        ("GEMS_ACQU_01", 0x0019, 0x24),  # DS Mid Scan Time [s]
        ("GEMS_ACQU_01", 0x0019, 0x27),  # DS Rotation Speed (gantry period)
        ("GEMS_PARM_01", 0x0043, 0x6F),  # DS Scanner Table Entry
        ("GEMS_HELIOS_01", 0x0045, 0x01),  # SS Number of Macro Rows in Detector
        ("GEMS_HELIOS_01", 0x0045, 0x02),  # FL Macro Width at ISO Center
        ("ELSCINT1", 0x00E1, 0x21),  # DS DLP
        ("ELSCINT1", 0x01F1, 0x07),  # DS Table Velocity
        ("ELSCINT1", 0x01F1, 0x26),  # DS Pitch
        ("ELSCINT1", 0x01F1, 0x27),  # DS Rotation Time
    }
)
"""(private creator, group, element byte) kept under Retain Safe Private, numeric only.

No Siemens entry: none could be verified from a public source in the time available."""

NUMERIC_PRIVATE_VRS: Final = frozenset({"FL", "FD", "SS", "US", "SL", "UL", "SV", "UV"})
_NUMBER_TEXT: Final = frozenset(b"0123456789+-.eE\\ ")

TEXT_VRS: Final = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "UR", "AE", "AS"})
DATE_VRS: Final = frozenset({"DA", "DT"})
TRAILING_PADDING: Final = 0xFFFCFFFC


def is_removed_group(tag: int) -> bool:
    """True for group lengths, trailing padding, curves (50xx), overlays (60xx), 7Fxx groups."""
    group = tag >> 16
    if tag & 0xFFFF == 0 or tag == TRAILING_PADDING:
        return True
    high = group & 0xFF00
    return high in (0x5000, 0x6000) or (high == 0x7F00 and group != 0x7FE0)


def is_numeric_private(vr: str, value: object) -> bool:
    """True when a private value can only be a number (see the module docstring)."""
    if vr in NUMERIC_PRIVATE_VRS:
        return True
    if vr in ("DS", "IS"):
        value = str(value).encode("ascii", "replace") if value is not None else b""
    elif vr != "UN":
        return False
    return isinstance(value, bytes) and all(byte in _NUMBER_TEXT for byte in value.rstrip(b"\0"))


def non_table_action(tag: int, vr: str, options: frozenset[ProfileOption]) -> Action:
    """Return the action for a public element Table E.1-1 does not list (module docstring)."""
    if is_removed_group(tag):
        return Action.REMOVE
    keyword = keyword_for_tag(tag)
    if not keyword:
        # not in the data dictionary: nothing says what it holds (a malformed stream can
        # make one out of other elements' bytes; found by the fuzz campaign)
        return Action.REMOVE
    if keyword in SAFE_NON_TABLE_KEYWORDS:
        return Action.KEEP
    if keyword in REMOVED_NON_TABLE_KEYWORDS:
        return Action.REMOVE
    if vr == "UI":
        if keyword in WELL_KNOWN_UID_KEYWORDS or ProfileOption.RETAIN_UIDS in options:
            return Action.KEEP
        return Action.REPLACE_UID
    if vr in DATE_VRS or vr == "TM":
        if ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in options:
            return Action.SHIFT_DATE if vr in DATE_VRS else Action.KEEP
        if ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES in options:
            return Action.KEEP
        return Action.REMOVE
    if vr == "PN" or vr in TEXT_VRS or vr == "UN":
        return Action.REMOVE
    return Action.KEEP


def kept_private_tags(
    private_creators: dict[tuple[int, int], str], options: frozenset[ProfileOption]
) -> frozenset[int]:
    """Return the private tags to keep at one dataset level, given its private creators.

    ``private_creators`` maps (group, block byte) to the creator string found in
    (gggg,00bb). Promises an empty set unless Retain Safe Private is selected; otherwise the
    tags of :data:`SAFE_PRIVATE_ATTRIBUTES` entries whose creator is present, plus the creator
    elements they need.
    """
    safe = SAFE_PRIVATE_ATTRIBUTES
    if ProfileOption.RETAIN_SAFE_PRIVATE not in options or not safe:
        return frozenset()
    kept: set[int] = set()
    for (group, block), creator in private_creators.items():
        for safe_creator, safe_group, element in safe:
            if safe_creator == creator and safe_group == group:
                kept.add((group << 16) | (block << 8) | element)
                kept.add((group << 16) | block)
    return frozenset(kept)
