"""What a series must be for an algorithm (or a route) to take it, and why not, in words.

One set of rules serves both the routing rules of the settings file and the input
conformance a package manifest declares, so that a study is judged by the same words
wherever it is judged. Pure functions on pydicom headers; any thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from pydicom import Dataset
from pydicom.multival import MultiValue

HEADER_TAGS = (
    "Modality",
    "BodyPartExamined",
    "StudyDescription",
    "SeriesDescription",
    "PatientAge",
    "PatientBirthDate",
    "StudyDate",
    "SliceThickness",
    "ConvolutionKernel",
    "ViewPosition",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "ContrastBolusAgent",
    "ContrastBolusAgentPhase",
    "SeriesInstanceUID",
)
"""The header attributes the rules read (for ``dcmread(specific_tags=...)``)."""


@dataclass(frozen=True)
class Range:
    """A closed interval; either end may be open (``None``)."""

    low: float | None = None
    high: float | None = None

    @property
    def is_set(self) -> bool:
        return self.low is not None or self.high is not None

    def why_not(self, what: str, value: float | None, unit: str, needs: str) -> str:
        """Empty when ``value`` lies inside, else why not in words, e.g.
        "slice thickness 5 mm, algorithm needs at most 2.5 mm"."""
        if not self.is_set:
            return ""
        if value is None:
            short = what.split()[-1]
            article = "an" if short[0] in "aeiou" else "a"
            return f"{what} unknown, {needs.replace('needs', 'has')} {article} {short} range"
        shown = f"{value:.1f}" if unit == "y" else f"{value:g}"
        if self.low is not None and value < self.low:
            return f"{what} {shown} {unit}, {needs} at least {self.low:g} {unit}"
        if self.high is not None and value > self.high:
            return f"{what} {shown} {unit}, {needs} at most {self.high:g} {unit}"
        return ""


@dataclass(frozen=True)
class SeriesRules:
    """Criteria on one series' header; every criterion left empty matches anything."""

    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    study_description: str = ""
    series_description: str = ""
    patient_age_years: Range = Range()
    slice_thickness_mm: Range = Range()
    pixel_spacing_mm: Range = Range()
    convolution_kernels: tuple[str, ...] = ()
    contrast: str = "any"
    """any, with (Contrast/Bolus Agent present) or without."""
    contrast_phases: tuple[str, ...] = ()
    """Accepted Contrast/Bolus Agent Phase (0018,9344) values, e.g. ARTERIAL, PORTAL_VENOUS."""


def patient_age_years(ds: Dataset) -> float | None:
    """Age from Patient's Age ("045Y", "006M", "010W", "003D") or birth and study date."""
    age = str(ds.get("PatientAge") or "")
    match = re.fullmatch(r"(\d{3})([DWMY])", age)
    if match:
        n = int(match.group(1))
        return {"D": n / 365.25, "W": n * 7 / 365.25, "M": n / 12, "Y": float(n)}[match.group(2)]
    birth, when = str(ds.get("PatientBirthDate") or ""), str(ds.get("StudyDate") or "")
    try:
        b = date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
        s = date(int(when[:4]), int(when[4:6]), int(when[6:8]))
    except ValueError:
        return None
    return (s - b).days / 365.25


def number(ds: Dataset, keyword: str) -> float | None:
    """A numeric attribute's (first) value, ``None`` when absent or not a number."""
    try:
        value = ds.get(keyword)
        if isinstance(value, MultiValue | list):
            value = value[0] if value else None
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def values(ds: Dataset, keyword: str) -> list[str]:
    """A (possibly multi-valued) string attribute's non-empty values."""
    raw = ds.get(keyword)
    return [str(v) for v in (raw if isinstance(raw, MultiValue | list) else [raw]) if v]


def pixel_spacing_mm(ds: Dataset) -> float | None:
    """Row spacing from Pixel Spacing, else Imager Pixel Spacing (projection radiography)."""
    spacing = number(ds, "PixelSpacing")
    return spacing if spacing is not None else number(ds, "ImagerPixelSpacing")


def series_mismatch(rules: SeriesRules, ds: Dataset, needs: str = "needs") -> str:
    """Why the series whose header is ``ds`` breaks ``rules`` ("" when it conforms).

    ``needs`` starts the requirement ("route needs", "needs"), so a person reads e.g.
    "slice thickness 5 mm, needs at most 2.5 mm".
    """
    modality = str(ds.get("Modality") or "")
    if rules.modalities and modality not in rules.modalities:
        return f"modality {modality or 'missing'}, {needs} {'/'.join(rules.modalities)}"
    body_part = str(ds.get("BodyPartExamined") or "").upper()
    if rules.body_parts and body_part and body_part not in {b.upper() for b in rules.body_parts}:
        return f"body part {body_part}, {needs} {'/'.join(rules.body_parts)}"
    if rules.study_description and not re.search(
        rules.study_description, str(ds.get("StudyDescription") or ""), re.IGNORECASE
    ):
        return "study description does not match the route's pattern"
    if rules.series_description and not re.search(
        rules.series_description, str(ds.get("SeriesDescription") or ""), re.IGNORECASE
    ):
        return "series description does not match the route's pattern"
    why = (
        rules.patient_age_years.why_not("patient age", patient_age_years(ds), "y", needs)
        if rules.patient_age_years.is_set
        else ""
    )
    why = why or rules.slice_thickness_mm.why_not(
        "slice thickness", number(ds, "SliceThickness"), "mm", needs
    )
    why = why or rules.pixel_spacing_mm.why_not("pixel spacing", pixel_spacing_mm(ds), "mm", needs)
    if why:
        return why
    if rules.convolution_kernels:
        kernels = values(ds, "ConvolutionKernel")
        if not {k.upper() for k in kernels} & {k.upper() for k in rules.convolution_kernels}:
            return (
                f"convolution kernel {'/'.join(kernels) or 'missing'},"
                f" {needs} {'/'.join(rules.convolution_kernels)}"
            )
    has_contrast = bool(str(ds.get("ContrastBolusAgent") or "").strip())
    if rules.contrast == "with" and not has_contrast:
        return f"no contrast agent recorded, {needs} a contrast-enhanced series"
    if rules.contrast == "without" and has_contrast:
        return f"contrast-enhanced series, {needs} one without contrast"
    if rules.contrast_phases:
        phases = values(ds, "ContrastBolusAgentPhase")
        if not {p.upper() for p in phases} & {p.upper() for p in rules.contrast_phases}:
            return (
                f"contrast phase {'/'.join(phases) or 'not recorded'},"
                f" {needs} {'/'.join(rules.contrast_phases)}"
            )
    return ""


def image_count_mismatch(count: int, images: Range, needs: str = "needs") -> str:
    """Why a series of ``count`` images is too short or too long ("" when it is not)."""
    if images.low is not None and count < images.low:
        return f"{count} image(s) in the series, {needs} at least {images.low:g}"
    if images.high is not None and count > images.high:
        return f"{count} image(s) in the series, {needs} at most {images.high:g}"
    return ""


def view_mismatch(views: tuple[str, ...], ds: Dataset, needs: str = "needs") -> str:
    """Why an image's View Position is not one of ``views`` ("" when it is, or none set)."""
    if not views:
        return ""
    view = str(ds.get("ViewPosition") or "").upper()
    if view in {v.upper() for v in views}:
        return ""
    return f"view {view or 'not recorded'}, {needs} {'/'.join(views)}"
