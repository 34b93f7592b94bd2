"""Secondary Capture result image: the source image with the AI finding burned in.

The image is meant for a radiologist who only has a PACS viewer: it shows the source
image (windowed as the modality intended, always MONOCHROME2, 8 bits) under a banner
that says in Dutch and English that this is an AI result and not a diagnosis, which
algorithm (name, version) produced it, and the finding with its score and threshold.

The object is built from the pseudonymised source the algorithm saw and goes into the
source's study (patient and study modules copied from the source), in a new series
whose UIDs the caller passes in. No UID and no patient data is burned into the pixels
or written into free text, so the re-identifier only has to map coded attributes.

The helpers :func:`copy_study_context` and :func:`character_set_for` are shared with
:mod:`aifi_app.results.structured_report`.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut, apply_voi, apply_windowing
from pydicom.pixels.utils import pixel_array
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from aifi_app.algorithms.findings import AlgorithmIdentity, AlgorithmResult, Finding
from aifi_app.results import module_attributes

module_attributes.install()  # highdicom reads its largest table a module at a time

__all__ = [
    "DISCLAIMER",
    "build_secondary_capture",
    "character_set_for",
    "copy_study_context",
    "render_for_display",
]

DISCLAIMER = "AI-RESULTAAT - GEEN DIAGNOSE / AI RESULT - NOT A DIAGNOSIS"
"""The words every burned-in result carries, first line of the banner."""

MIN_SHORT_SIDE = 512
"""Images are upscaled until their shorter side has at least this many pixels ..."""
MAX_LONG_SIDE = 2048
"""... unless that would make the longer side exceed this; large images are downscaled."""
MIN_CANVAS_WIDTH = 512
"""The banner is never narrower than this (narrow images are padded left and right)."""

_LO_MAX = 64  # Long String (LO) value length limit
_ST_MAX = 1024  # Short Text (ST) value length limit
_BANNER_BACKGROUND = 0
_BANNER_TEXT = 255
_BANNER_RULE = 160

# Patient (C.7.1.1), Patient Study (C.7.2.2) and General Study (C.7.2.1) module
# attributes that are copied from the source when present: a result must not make the
# PACS see two versions of the same patient or study. highdicom already copies the
# attributes it needs itself; those are left as highdicom set them.
_STUDY_CONTEXT_KEYWORDS: tuple[str, ...] = (
    # Patient module
    "ReferencedPatientSequence",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "TypeOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "SourcePatientGroupIdentificationSequence",
    "GroupOfPatientsIdentificationSequence",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientBirthDateInAlternativeCalendar",
    "PatientDeathDateInAlternativeCalendar",
    "PatientAlternativeCalendar",
    "PatientSex",
    "QualityControlSubject",
    "StrainDescription",
    "StrainNomenclature",
    "StrainStockSequence",
    "StrainAdditionalInformation",
    "StrainCodeSequence",
    "GeneticModificationsSequence",
    "OtherPatientNames",
    "OtherPatientIDsSequence",
    "ReferencedPatientPhotoSequence",
    "EthnicGroupCodeSequence",
    "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence",
    "PatientBreedDescription",
    "PatientBreedCodeSequence",
    "BreedRegistrationSequence",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "PatientComments",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    # Patient Study module
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientSexNeutered",
    "PregnancyStatus",
    "AdditionalPatientHistory",
    # General Study module
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "ReferringPhysicianName",
    "StudyDescription",
    "ProcedureCodeSequence",
    "StudyID",
)

# What the pydicom LUT helpers read; they are given a private view holding only these so
# that they can never modify the caller's source dataset.
_LUT_KEYWORDS: tuple[str, ...] = (
    "PhotometricInterpretation",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
)


def build_secondary_capture(
    source: Dataset,
    result: AlgorithmResult,
    finding: Finding,
    *,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    instance_number: int,
    manufacturer: str = "AIFI Appliance",
    software_version: str,
) -> Dataset:
    """Build a Secondary Capture image showing ``finding`` burned into ``source``.

    Promises: the result is a highdicom ``SCImage`` (Secondary Capture Image Storage,
    Explicit VR Little Endian, MONOCHROME2, 8 bits) in ``source``'s study with the given
    series/SOP UIDs and numbers; its pixels are the rendered source (modality LUT, first
    VOI LUT or window, MONOCHROME1 inverted; shorter side >= 512 px, longer side <= 2048
    px) under a banner with :data:`DISCLAIMER`, the algorithm name and version and the
    finding with score and threshold; BurnedInAnnotation is YES, SourceImageSequence
    references ``source``. The same arguments always give the same UIDs (only creation
    dates and times differ). ``source`` is not modified.

    Raises ``ValueError`` when ``finding`` was not computed on ``source`` or the source's
    pixels are not MONOCHROME1/2 or RGB/YBR.

    Thread: any thread; CPU bound (a few hundred ms for a large radiograph), so run it on
    a worker thread, not on an event loop or GUI thread.
    """
    _check_finding_source(source, finding)
    algorithm = result.algorithm
    display = render_for_display(source)
    image = _fit_size(display)
    pixels = _with_banner(image, _banner_lines(algorithm, finding))

    series_description = lo_value(f"AI result: {algorithm.name}")
    image_comments = f"{DISCLAIMER}. {_finding_sentence(algorithm, finding)}"
    inverted = ", inverted" if source.get("PhotometricInterpretation") == "MONOCHROME1" else ""
    derivation = _st(
        f"Rendered from the {source.get('Modality', 'source')} image referenced in Source "
        f"Image Sequence (modality LUT, VOI LUT or window{inverted}, resized to "
        f"{image.shape[1]}x{image.shape[0]} px) with a burned-in banner showing the "
        f"result of the AI algorithm {algorithm.name} {algorithm.version} "
        f"({algorithm.vendor}). {DISCLAIMER}."
    )
    software_versions = [
        lo_value(software_version),
        lo_value(f"{algorithm.name} {algorithm.version}"),
    ]
    algorithm_equipment = algorithm_contributing_equipment(algorithm)
    charset = character_set_for(
        source,
        [series_description, image_comments, derivation, manufacturer, *software_versions],
        [algorithm_equipment],
    )

    orientation = _patient_orientation(source)
    laterality = image_laterality(source)
    kwargs: dict[str, Any] = {}
    if charset is not None:
        kwargs["specific_character_set"] = charset
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.MONOCHROME2,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=lo_value(manufacturer),
        laterality=laterality,
        # highdicom wants single letters here; the exact (possibly oblique, or unknown
        # and then empty: type 2 in the SC IOD) orientation is set below.
        patient_orientation=_dominant_letters(orientation),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        contributing_equipment=[algorithm_equipment],
        series_description=series_description,
        software_versions=software_versions,
        **kwargs,
    )
    sc["PatientOrientation"].value = list(orientation) if orientation is not None else None
    body_part = str(source.get("BodyPartExamined", "") or "")
    if body_part:
        sc.BodyPartExamined = body_part
    elif "Laterality" not in sc:
        # Type 2C; without a body part a validator cannot tell whether it is paired.
        sc.add_new("Laterality", "CS", None)
    copy_study_context(source, sc)

    sc.ConversionType = "WSD"
    sc.SecondaryCaptureDeviceManufacturer = lo_value(manufacturer)
    sc.SecondaryCaptureDeviceSoftwareVersions = software_versions
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = image_comments
    sc.DerivationDescription = derivation
    sc.SourceImageSequence = [_source_image_item(source)]
    if source.get("LossyImageCompression") == "01":
        # PS3.3 C.7.6.1.1.5: once lossy, derived images stay marked lossy.
        sc.LossyImageCompression = "01"
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in source:
                sc[keyword] = copy.deepcopy(source[keyword])
    return sc


def render_for_display(source: Dataset) -> npt.NDArray[np.uint8]:
    """Render the first frame of ``source`` to 8-bit grey values, 0 black, 255 white.

    Promises: the modality LUT (or rescale) and the first VOI LUT (or the first window,
    LINEAR, LINEAR_EXACT or SIGMOID) are applied as pydicom implements them and mapped
    linearly onto 0..255; without VOI the output spans the image's own range; MONOCHROME1
    is inverted; RGB/YBR sources are converted to luminance. ``source`` is not modified.

    Raises ``ValueError`` for other photometric interpretations (e.g. PALETTE COLOR).

    Thread: any thread.
    """
    photometric = str(source.PhotometricInterpretation).strip()
    stored = pixel_array(source, index=0)
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422"):
        # pydicom converts YBR to RGB; Pillow's "L" conversion is ITU-R 601-2 luma.
        rgb = Image.fromarray(np.ascontiguousarray(stored, dtype=np.uint8))
        return np.asarray(rgb.convert("L"), dtype=np.uint8)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"cannot render photometric interpretation {photometric!r}")

    view = _lut_view(source)
    values: npt.NDArray[Any] = apply_modality_lut(stored, view)
    voi = _apply_first_voi(values, view)
    if voi is None:
        low, high = float(np.min(values)), float(np.max(values))
        shown = values.astype(np.float64)
    else:
        shown, low, high = voi
    if high > low:
        scaled = (shown - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros(shown.shape, dtype=np.float64)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if photometric == "MONOCHROME1":
        grey = np.subtract(255, grey, dtype=np.uint8)
    return grey


def algorithm_contributing_equipment(algorithm: AlgorithmIdentity) -> hd.ContributingEquipment:
    """Describe the AI algorithm as processing equipment (Contributing Equipment item).

    Thread: any thread.
    """
    return hd.ContributingEquipment(
        manufacturer=lo_value(algorithm.vendor) or "unknown",
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=lo_value(algorithm.name),
        software_versions=lo_value(algorithm.version),
        device_serial_number=lo_value(algorithm.algorithm_id),
        contribution_description=_st(
            f"AI algorithm {algorithm.name} {algorithm.version} that produced this result"
        ),
    )


def copy_study_context(source: Dataset, target: Dataset) -> None:
    """Copy the Patient, Patient Study and General Study attributes of ``source`` that
    ``target`` lacks (deep copies; values highdicom already set are kept).

    Thread: any thread; modifies ``target`` only.
    """
    for keyword in _STUDY_CONTEXT_KEYWORDS:
        if keyword in source and keyword not in target:
            target[keyword] = copy.deepcopy(source[keyword])


def character_set_for(
    source: Dataset, texts: Iterable[str], datasets: Iterable[Dataset] = ()
) -> str | list[str] | None:
    """Specific Character Set for a result derived from ``source`` that adds ``texts``.

    Promises: ``None`` (keep the source's, as highdicom does) when every added text and
    every string value in ``datasets`` is ASCII, which every character set can encode;
    otherwise ``"ISO_IR 192"`` (UTF-8), which can encode anything, including the
    patient values copied from the source (pydicom holds them decoded).

    Thread: any thread.
    """
    added = list(texts)
    for dataset in datasets:
        added.extend(_string_values(dataset))
    if all(text.isascii() for text in added):
        return None
    return "ISO_IR 192"


def _string_values(dataset: Dataset) -> list[str]:
    values: list[str] = []
    for element in dataset.iterall():
        value = element.value
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, MultiValue | list):
            values.extend(v for v in value if isinstance(v, str))
    return values


def _check_finding_source(source: Dataset, finding: Finding) -> None:
    if finding.source_sop_instance_uid != source.SOPInstanceUID:
        raise ValueError(
            "finding was computed on SOP instance "
            f"{finding.source_sop_instance_uid}, not on the given source "
            f"{source.SOPInstanceUID}"
        )


def _lut_view(source: Dataset) -> Dataset:
    """A new dataset sharing only the LUT-relevant elements (and encoding) of ``source``."""
    view = Dataset()
    for keyword in _LUT_KEYWORDS:
        if keyword in source:
            view[keyword] = source[keyword]
    if hasattr(source, "file_meta"):
        view.file_meta = source.file_meta
    view.set_original_encoding(*source.original_encoding)
    return view


def _first(value: Any) -> float:
    if isinstance(value, MultiValue | list | tuple):
        return float(value[0])
    return float(value)


def _apply_first_voi(
    values: npt.NDArray[Any], view: Dataset
) -> tuple[npt.NDArray[np.float64], float, float] | None:
    """Apply the first VOI transform; return the output and its full output range."""
    lut_sequence = view.get("VOILUTSequence")
    if lut_sequence and "LUTDescriptor" in lut_sequence[0] and "LUTData" in lut_sequence[0]:
        descriptor = lut_sequence[0].LUTDescriptor
        entries = int(descriptor[0]) or 2**16
        first_mapped = int(descriptor[1])
        domain = np.arange(first_mapped, first_mapped + entries, dtype=np.int64)
        lut_out = apply_voi(domain, view)
        indices = np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values
        shown = apply_voi(indices, view).astype(np.float64)
        return shown, float(np.min(lut_out)), float(np.max(lut_out))
    center_value = view.get("WindowCenter")
    width_value = view.get("WindowWidth")
    if center_value is None or width_value is None or center_value == "" or width_value == "":
        return None
    center, width = _first(center_value), abs(_first(width_value))
    # Far outside the window every VOI function (also SIGMOID) reaches its limits.
    probes = np.array([center - 16 * width - 1, center + 16 * width + 1], dtype=np.float64)
    limits = apply_windowing(probes, view)
    shown = apply_windowing(values, view).astype(np.float64)
    return shown, float(np.min(limits)), float(np.max(limits))


def _fit_size(grey: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Resize so that the shorter side is >= MIN_SHORT_SIDE and the longer <= MAX_LONG_SIDE."""
    rows, columns = grey.shape
    scale = max(1.0, MIN_SHORT_SIDE / min(rows, columns))
    scale = min(scale, MAX_LONG_SIDE / max(rows, columns))
    if scale == 1.0:
        return grey
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    resample = Image.Resampling.BICUBIC if scale > 1.0 else Image.Resampling.LANCZOS
    resized = Image.fromarray(grey).resize(size, resample=resample)
    return np.asarray(resized, dtype=np.uint8)


def _finding_sentence(algorithm: AlgorithmIdentity, finding: Finding) -> str:
    return (
        f"{algorithm.name} {algorithm.version}: {finding.label} "
        f"(score {finding.score:.2f}, threshold {finding.threshold:.2f})"
    )


def _banner_lines(algorithm: AlgorithmIdentity, finding: Finding) -> list[str]:
    return [
        DISCLAIMER,
        f"{algorithm.name} {algorithm.version} ({algorithm.vendor})",
        f"{finding.label} (score {finding.score:.2f}, threshold {finding.threshold:.2f})",
    ]


Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


def _fitting_font(lines: Sequence[str], width: int) -> Font:
    """The largest default font (12..48 px, about 1/30 of the width) in which the
    disclaimer fits on one line; longer lines are wrapped afterwards."""
    size = max(12, min(48, width // 30))
    while True:
        font = ImageFont.load_default(size=size)
        if size <= 10 or font.getlength(lines[0]) <= width:
            return font
        size -= 1


def _wrap(line: str, font: Font, width: int) -> list[str]:
    if font.getlength(line) <= width:
        return [line]
    average = max(1.0, font.getlength(line) / max(1, len(line)))
    chars = max(8, int(width / average))
    while chars > 8:
        wrapped = textwrap.wrap(line, width=chars, break_long_words=True)
        if all(font.getlength(part) <= width for part in wrapped):
            return wrapped
        chars -= 1
    return textwrap.wrap(line, width=chars, break_long_words=True)


def _with_banner(image: npt.NDArray[np.uint8], lines: Sequence[str]) -> npt.NDArray[np.uint8]:
    """Put a black banner with white text above ``image`` (padded to MIN_CANVAS_WIDTH)."""
    rows, columns = image.shape
    canvas_width = max(columns, MIN_CANVAS_WIDTH)
    margin = max(8, canvas_width // 64)
    text_width = canvas_width - 2 * margin
    font = _fitting_font(lines, text_width)
    wrapped = [part for line in lines for part in _wrap(line, font, text_width)]
    line_height = round(font.getbbox("ÅgjpqyH")[3] * 1.3)
    rule = max(2, canvas_width // 512)
    banner_height = 2 * margin + line_height * len(wrapped) + rule

    canvas = Image.new("L", (canvas_width, banner_height + rows), _BANNER_BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for index, text in enumerate(wrapped):
        draw.text((margin, margin + index * line_height), text, fill=_BANNER_TEXT, font=font)
    draw.rectangle(
        (0, banner_height - rule, canvas_width - 1, banner_height - 1), fill=_BANNER_RULE
    )
    canvas.paste(Image.fromarray(image), ((canvas_width - columns) // 2, banner_height))
    return np.asarray(canvas, dtype=np.uint8)


def _patient_orientation(source: Dataset) -> tuple[str, str] | None:
    """Row and column direction letters of the source, exact when the source has them."""
    orientation = source.get("PatientOrientation")
    if orientation is not None and isinstance(orientation, MultiValue | list):
        values = [str(v).strip().upper() for v in orientation]
        if len(values) == 2 and all(values) and all(set(v) <= set("APLRHF") for v in values):
            return values[0], values[1]
    cosines = source.get("ImageOrientationPatient")
    if cosines is not None and len(cosines) == 6:
        row = np.array([float(v) for v in cosines[:3]])
        column = np.array([float(v) for v in cosines[3:]])
        matrix = np.stack([row, column, np.cross(row, column)], axis=1)
        try:
            closest = hd.spatial.get_closest_patient_orientation(matrix)
        except ValueError:
            return None
        return closest[0].value, closest[1].value
    return None


def _dominant_letters(orientation: tuple[str, str] | None) -> tuple[str, str]:
    # The first letter of an oblique value is its dominant direction (PS3.3 C.7.6.1.1.1).
    if orientation is None:
        return ("L", "F")  # placeholder only; replaced by an empty value afterwards
    return orientation[0][0], orientation[1][0]


def image_laterality(source: Dataset) -> str | None:
    """L or R from the image's (or series') laterality; None otherwise."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(source.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return None


def _source_image_item(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if int(source.get("NumberOfFrames", 1) or 1) > 1:
        item.ReferencedFrameNumber = 1
    purpose = hd.sr.CodedConcept.from_code(codes.DCM.SourceImageForImageProcessingOperation)
    item.PurposeOfReferenceCodeSequence = [purpose]
    return item


def lo_value(text: str) -> str:
    """``text`` as a Long String (LO) value: no backslash (the value separator), 64 characters."""
    return text.replace("\\", "/").strip()[:_LO_MAX]


def _st(text: str) -> str:
    return text.replace("\\", "/")[:_ST_MAX]
