"""A data set as the bytes of a DICOM file (PS3.10: preamble, file meta, data set)."""

from __future__ import annotations

import io

from pydicom import Dataset, dcmwrite


def part10_bytes(ds: Dataset) -> bytes:
    """``ds`` as a DICOM file, file meta included (``enforce_file_format``)."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
