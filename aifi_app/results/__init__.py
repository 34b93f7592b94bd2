"""Result objects for the PACS, built with highdicom from the pseudonymised sources.

* :func:`build_secondary_capture`: the source image with the finding burned in.
* :func:`build_measurement_report`: a DICOM SR TID 1500 Measurement Report.
* :func:`build_segmentation`: a binary DICOM Segmentation of a mask.
* :func:`build_presentation_state`: a GSPS drawing the regions in switchable layers.
* :func:`build_key_object_selection`: a KOS selecting the key images.

The builders are loaded on first use (PEP 562): they import highdicom, which the service
would otherwise import before it accepts associations (0.2-0.4 s); ``aifi_app.results.catalog``
and the other light modules of the package import nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aifi_app.results.key_objects import build_key_object_selection, key_image_uids
    from aifi_app.results.presentation_state import (
        build_presentation_state,
        images_per_presentation_state,
    )
    from aifi_app.results.secondary_capture import build_secondary_capture
    from aifi_app.results.segmentation import build_segmentation
    from aifi_app.results.structured_report import build_measurement_report

_MODULE_OF = {
    "build_key_object_selection": "key_objects",
    "key_image_uids": "key_objects",
    "build_presentation_state": "presentation_state",
    "images_per_presentation_state": "presentation_state",
    "build_secondary_capture": "secondary_capture",
    "build_segmentation": "segmentation",
    "build_measurement_report": "structured_report",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "build_key_object_selection",
    "build_measurement_report",
    "build_presentation_state",
    "build_secondary_capture",
    "build_segmentation",
    "images_per_presentation_state",
    "key_image_uids",
]
