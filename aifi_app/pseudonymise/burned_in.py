"""Images that may carry burned-in text: recognised here, refused unless a package accepts them.

Table E.1-1 cleans the header only. Text burned into the pixels (patient name on an
ultrasound screen, a scanned request form, a screenshot stored as secondary capture) passes
through untouched, and the appliance does not decode pixels to look for it. So an instance
is treated as possibly carrying burned-in text when any of these holds:

* Burned In Annotation (0028,0301) is YES;
* its SOP Class is a secondary capture (any of the five SC classes), an ultrasound image
  class (single or multi-frame, retired ones included) or an encapsulated document (PDF,
  CDA, STL, OBJ, MTL), or its Modality is US;
* its Conversion Type (0008,0064) says it was digitised from paper or film (SD scanned
  document, SI scanned image, DF digitised film) or drawn (DRW).

What happens to such an instance is declared by the algorithm package
(``[pseudonymisation] burned_in_annotation`` in ``manifest.toml``), see
:class:`BurnedInPolicy`. The default refuses it: the job is rejected with the reason in
words and nothing is sent.
"""

from __future__ import annotations

import enum
from typing import Final

from pydicom import Dataset

SECONDARY_CAPTURE_CLASSES: Final = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
    }
)
ULTRASOUND_CLASSES: Final = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6",
        "1.2.840.10008.5.1.4.1.1.6.1",
        "1.2.840.10008.5.1.4.1.1.6.2",
        "1.2.840.10008.5.1.4.1.1.3",
        "1.2.840.10008.5.1.4.1.1.3.1",
    }
)
ENCAPSULATED_DOCUMENT_CLASSES: Final = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.104.1",
        "1.2.840.10008.5.1.4.1.1.104.2",
        "1.2.840.10008.5.1.4.1.1.104.3",
        "1.2.840.10008.5.1.4.1.1.104.4",
        "1.2.840.10008.5.1.4.1.1.104.5",
    }
)
PAPER_OR_FILM_CONVERSION: Final = frozenset({"SD", "SI", "DF", "DRW"})


class BurnedInPolicy(enum.Enum):
    """How a package treats instances that may carry burned-in text (manifest values)."""

    REFUSE = "refuse"
    """Default: such an instance is never sent; the job is rejected with the reason."""
    ACCEPT_CLEANED_BY_VENDOR = "accept_cleaned_by_vendor"
    """The vendor's agreement covers burned-in text (the algorithm masks or never stores
    it); such instances are pseudonymised and sent with their pixels unchanged."""


class BurnedInAnnotationRefused(Exception):
    """An instance may carry burned-in text and the package refuses it (reason in words)."""


def burned_in_risk(ds: Dataset) -> str | None:
    """Return why ``ds`` may carry burned-in text, in words without values from it; else None."""
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return "Burned In Annotation is YES"
    sop_class = str(ds.get("SOPClassUID", "")).strip()
    if sop_class in SECONDARY_CAPTURE_CLASSES:
        return "a secondary capture image (may show screen text)"
    if sop_class in ENCAPSULATED_DOCUMENT_CLASSES:
        return "an encapsulated document (PDF, CDA or 3-D model)"
    if sop_class in ULTRASOUND_CLASSES or str(ds.get("Modality", "")).strip() == "US":
        return "an ultrasound image (screen text is usually burned in)"
    if str(ds.get("ConversionType", "")).strip().upper() in PAPER_OR_FILM_CONVERSION:
        return "scanned from paper or film"
    return None


def check_burned_in(ds: Dataset, policy: BurnedInPolicy) -> None:
    """Raise :class:`BurnedInAnnotationRefused` when ``ds`` is at risk and ``policy`` refuses."""
    if policy is BurnedInPolicy.REFUSE:
        reason = burned_in_risk(ds)
        if reason is not None:
            raise BurnedInAnnotationRefused(
                f"image may carry burned-in text ({reason}) and the algorithm package does"
                " not accept such images (burned_in_annotation = 'refuse')"
            )
