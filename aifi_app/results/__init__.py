"""Result objects for the PACS, built with highdicom from the pseudonymised sources.

* :func:`build_secondary_capture`: the source image with the finding burned in.
* :func:`build_measurement_report`: a DICOM SR TID 1500 Measurement Report.
* :func:`build_segmentation`: a binary DICOM Segmentation of a mask.
* :func:`build_presentation_state`: a GSPS drawing the regions in switchable layers.
* :func:`build_key_object_selection`: a KOS selecting the key images.
"""

from aifi_app.results.key_objects import build_key_object_selection, key_image_uids
from aifi_app.results.presentation_state import (
    build_presentation_state,
    images_per_presentation_state,
)
from aifi_app.results.secondary_capture import build_secondary_capture
from aifi_app.results.segmentation import build_segmentation
from aifi_app.results.structured_report import build_measurement_report

__all__ = [
    "build_key_object_selection",
    "build_measurement_report",
    "build_presentation_state",
    "build_secondary_capture",
    "build_segmentation",
    "images_per_presentation_state",
    "key_image_uids",
]
