"""Result objects for the PACS, built with highdicom from the pseudonymised sources.

* :func:`build_secondary_capture`: the source image with the finding burned in.
* :func:`build_measurement_report`: a DICOM SR TID 1500 Measurement Report.
* :func:`build_segmentation`: a binary DICOM Segmentation of a mask.
"""

from aifi_app.results.secondary_capture import build_secondary_capture
from aifi_app.results.segmentation import build_segmentation
from aifi_app.results.structured_report import build_measurement_report

__all__ = [
    "build_measurement_report",
    "build_secondary_capture",
    "build_segmentation",
]
