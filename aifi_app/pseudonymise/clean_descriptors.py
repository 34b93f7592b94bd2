"""Clean Descriptors (PS3.15 Annex E, option 113105): keep only words known to be safe.

Where the Clean Descriptors option is selected and Table E.1-1 says C for a free-text
attribute (LO, SH, LT, ST, UT: Study Description, Series Description, Protocol Name,
comments ...), the appliance cleans the text instead of removing it, by an allow-list rather
than by trying to recognise names:

* the text is split into tokens at anything that is not an ASCII letter, digit, ``.`` or
  ``/``; a token with ``/`` that is not itself a safe word (``w/o`` is, so that "without"
  never turns into "with") is split again at each ``/``;
* a token is kept when, lower-cased, it is in :data:`SAFE_WORDS` (modalities, anatomy,
  laterality, technique, contrast and reconstruction words, units), or is a plain number of
  at most three digits with an optional decimal part and an optional unit from
  :data:`UNITS` (``5mm``, ``1.25``, ``120kv``);
* every other token is dropped: names, identifiers, dates, long numbers, words in any
  other script or character set, misspellings. Nothing of a dropped token survives, so no
  byte of a name can reach the output in any encoding;
* kept tokens are joined by one space, in their original order, and words that do not fit
  the VR's maximum length are dropped. The result is pure ASCII.

The vocabulary deliberately avoids words that are also common given names (no "may",
"will", "grace"). Cleaning can only lose information, never add it: an empty result is a
valid outcome and is written as a zero-length value.
"""

from __future__ import annotations

import re
from typing import Final

from pydicom.multival import MultiValue

CLEANED_VRS: Final = frozenset({"LO", "SH", "LT", "ST", "UT"})
"""Free-text VRs that Clean Descriptors cleans (others fall back to the Basic Profile)."""

MAX_LENGTH: Final = {"SH": 16, "LO": 64, "ST": 1024, "LT": 10240, "UT": 65536}

UNITS: Final = frozenset({"mm", "cm", "ms", "s", "kv", "kvp", "mas", "ma", "t", "mgy", "deg"})

SAFE_WORDS: Final = frozenset(
    """
    ct mr mri cr dx us xa rf mg nm pt pet spect ot sc sr seg
    x ray xray radiograph radiography fluoro fluoroscopy angio angiography tomosynthesis
    scout topogram localizer localiser survey
    head brain skull neck cervical thoracic lumbar sacral spine chest thorax lung lungs
    heart cardiac coronary aorta abdomen abdominal pelvis pelvic liver kidney kidneys renal
    pancreas spleen bladder prostate breast mammo mammography shoulder elbow wrist hand
    finger hip knee ankle foot extremity extremities sinus sinuses orbit orbits temporal
    face facial mandible dental whole body wb bone bones joint
    left right bilateral l r lt rt both
    ap pa lat lateral oblique axial ax coronal cor sagittal sag transverse frontal view views
    pre post with without w wo w/ w/o contrast iv oral arterial venous portal delayed phase
    native noncontrast non enhanced
    routine standard protocol series study exam examination scan image images
    helical spiral sequential volume recon reconstruction mpr mip minip 3d 2d thin thick
    soft tissue lung window bone mediastinum mediastinal kernel sharp smooth
    low dose high resolution hr hrct ldct ultra
    t1 t2 pd flair dwi adc dti swi gre se fse tse epi stir fat sat fs gad gd perfusion
    diffusion localizer mra mrv cta ctv
    screening diagnostic follow up followup
    and of the to in on
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
"""Lower-case words kept by Clean Descriptors (module docstring)."""

_TOKEN: Final = re.compile(r"[A-Za-z0-9./]+")
_NUMBER_WITH_UNIT: Final = re.compile(r"(\d{1,3}(?:\.\d{1,3})?)([a-z]*)")


def _is_safe(token: str) -> bool:
    lower = token.lower().strip(".")
    if lower in SAFE_WORDS:
        return True
    number = _NUMBER_WITH_UNIT.fullmatch(lower)
    return number is not None and (not number.group(2) or number.group(2) in UNITS)


def clean_descriptor(text: str, vr: str) -> str:
    """Return ``text`` reduced to its safe tokens (module docstring); pure ASCII."""
    kept: list[str] = []
    for token in _TOKEN.findall(text):
        parts = [token] if token.lower() in SAFE_WORDS else token.split("/")
        kept.extend(part.strip(".") for part in parts if _is_safe(part))
    limit = MAX_LENGTH.get(vr, 64)
    text = ""
    for word in kept:
        joined = f"{text} {word}" if text else word
        if len(joined) > limit:
            break
        text = joined
    return text


def clean_value(value: object, vr: str) -> str | list[str]:
    """Clean a str or multi-valued text value (each value separately); others become ""."""
    if isinstance(value, str):
        return clean_descriptor(value, vr)
    if isinstance(value, MultiValue | list | tuple):
        return [clean_descriptor(v, vr) if isinstance(v, str) else "" for v in value]
    return ""
