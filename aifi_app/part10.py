"""A data set as the bytes of a DICOM file (PS3.10: preamble, file meta, data set)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from pydicom import Dataset, dcmwrite

from aifi_app.dicom_node.spool import fsync_dir


def part10_bytes(ds: Dataset) -> bytes:
    """``ds`` as a DICOM file, file meta included (``enforce_file_format``)."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def write_part10_durably(dest: Path, ds: Dataset) -> None:
    """Write ``ds`` as a DICOM file to ``dest`` atomically and durably, as
    ``spool.durable_write`` writes bytes (a temporary file, fsync, rename, the folder
    flushed), but straight into the file: a large object (a 500-frame SEG) is not held in
    memory a second time as the file's bytes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("wb") as fh:
        dcmwrite(fh, ds, enforce_file_format=True)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(dest)
    fsync_dir(dest.parent)
